"""bulkfetch into a local S3-compatible server (moto, server mode) against into tmpfs.

    .venv/bin/python bench/s3.py [--rounds 3] [--scenarios small,large,memory]

Uses bench.py's nginx and fixtures. small: 2,000 x 4 KiB; large: 4 x 256 MiB; rounds
alternate tmpfs / bucket, each into a new prefix with a fresh state (no conditional requests).
memory: 8 bodies of 1 GiB at once (-c 8) into the bucket: the peak memory of bulkfetch's
processes together (PSS, sampled) and of the largest one (RSS). moto runs on the same two cores
and keeps what it is sent on its own disk: its CPU is reported beside; there is no target.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench
from tests.s3server import MotoServer

SMALL = (2_000, 4 * 1024)
HUGE_BYTES = 1 << 30
HUGE_COUNT = 8


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def lists() -> dict[str, tuple[Path, int, int]]:
    small = bench.make_fixtures("s3small", *SMALL)
    large = bench.make_fixtures("large", *bench.SCENARIOS["large"])
    huge = bench.make_fixtures("huge", 1, HUGE_BYTES)
    found = {}
    for name, folder, names in (
        ("small", "s3small", sorted(os.listdir(small))),
        ("large", "large", sorted(os.listdir(large))),
        ("memory", "huge", [f"{os.listdir(huge)[0]}?copy={i}" for i in range(HUGE_COUNT)]),
    ):
        path = bench.WORK / f"s3-{name}.txt"
        path.write_text("".join(f"http://127.0.0.1:{bench.PORT}/{folder}/{n}\n" for n in names))
        count, size = {"small": SMALL, "large": bench.SCENARIOS["large"],
                       "memory": (HUGE_COUNT, HUGE_BYTES)}[name]
        found[name] = (path, count, size)
    return found


def run(urls: Path, out: str, env: dict[str, str], *args: str) -> bench.Run:
    return bench.timed(out.split(":")[0], [sys.executable, "-m", "bulkfetch", str(urls), "-o",
                                            out, "-q", "--no-progress", *args], env)


def empty(moto: MotoServer, prefix: str) -> None:
    """moto keeps every object it is sent: drop a round's before the next."""
    client = moto.client()
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            client.delete_objects(Bucket="bench", Delete={"Objects": keys})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="small,large,memory")
    args = parser.parse_args()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    bench.start_nginx()
    moto = MotoServer().start()
    store = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-s3-"))
    env = moto.env(TMPDIR=str(store))
    moto.bucket("bench")
    report = [f"## s3 {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
              "", "| scenario | into | wall s (median) | files/s | MB/s | CPU s bulkfetch | "
              "CPU s moto | peak PSS MB (all) | peak RSS MB (largest) |",
              "|---|---|---|---|---|---|---|---|---|"]
    try:
        found = lists()
        for scenario in args.scenarios.split(","):
            urls, count, size = found[scenario]
            runs: dict[str, list[tuple[bench.Run, float]]] = {"tmpfs": [], "bucket": []}
            targets = ("bucket",) if scenario == "memory" else ("tmpfs", "bucket")
            for n in range(1 if scenario == "memory" else args.rounds):
                for target in bench.rotated(targets, n):
                    before = cpu_s(moto.pid)
                    state = store / f"state-{scenario}-{n}"
                    if target == "tmpfs":
                        out = bench.WORK / "s3-tmpfs-out"
                        shutil.rmtree(out, ignore_errors=True)
                        got = run(urls, str(out), env, "-c", "50")
                        shutil.rmtree(out, ignore_errors=True)
                    else:
                        c = "8" if scenario == "memory" else "50"
                        got = run(urls, f"s3://bench/{scenario}-{n}", env, "-c", c,
                                  "--state", str(state))
                        empty(moto, f"{scenario}-{n}/")
                    runs[target].append((got, cpu_s(moto.pid) - before))
            for target, results in runs.items():
                if not results:
                    continue
                wall = statistics.median(r.wall_s for r, _ in results)
                report.append(
                    f"| {scenario} {count:,} x {size:,} B | {target} | {wall:.2f} | "
                    f"{count / wall:,.0f} | {count * size / wall / 1e6:,.0f} | "
                    f"{statistics.median(r.cpu_s for r, _ in results):.2f} | "
                    f"{statistics.median(m for _, m in results):.2f} | "
                    f"{max(r.pss_mb for r, _ in results):.0f} | "
                    f"{max(r.rss_mb for r, _ in results):.0f} |")
                print(report[-1], flush=True)
    finally:
        moto.stop()
        bench.stop_nginx()
        shutil.rmtree(store, ignore_errors=True)
    print("\n".join(report))


if __name__ == "__main__":
    main()
