"""bulkfetch into a local S3-compatible server (moto, server mode) against into tmpfs.

    .venv/bin/python bench/s3.py [--rounds 3] [--scenarios small,large,memory]

Uses bench.py's nginx and fixtures. small: 2,000 x 4 KiB; large: 4 x 256 MiB; rounds
rotate the targets, each run into a new prefix with a fresh state (no conditional requests).
small goes into four: the folder; moto itself, whose werkzeug server closes each connection;
moto behind nginx, which keeps them alive as S3 does; and a null store (nginx with Lua answering
PUT, HEAD and GET as S3 would, keeping nothing), where bulkfetch's CPU is its own cost alone,
at a store's full speed. The figure to read is CPU per file against the folder's.
memory: 8 bodies of 1 GiB at once (-c 8) into the bucket: the peak memory of bulkfetch's
processes together (PSS, sampled) and of the largest one (RSS). moto runs on the same two cores
and keeps what it is sent on its own disk: its CPU is reported beside; there is no target.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import statistics
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench
from tests.s3server import MotoServer

SMALL = (2_000, 4 * 1024)
PACED = bench.DELAYED["latency100"]  # nginx holding each answer 100 ms
PACED_C = 35  # 350 files/s at most: about what moto takes
FRONT_PORT = 18090  # nginx before moto: connections kept alive, as S3 keeps them
NULL_PORT = 18091  # nginx answering as S3 does and keeping nothing: what the client costs
NULL_STORE = """
    content_by_lua_block {
      local method = ngx.req.get_method()
      ngx.req.discard_body()
      if method == "GET" then
        ngx.status = 404
        ngx.header["Content-Type"] = "application/xml"
        ngx.print("<Error><Code>NoSuchKey</Code></Error>")
        return ngx.exit(404)
      end
      if method == "POST" then  -- CreateMultipartUpload, CompleteMultipartUpload
        ngx.header["Content-Type"] = "application/xml"
        ngx.print("<R><UploadId>u</UploadId><ETag>&quot;e&quot;</ETag></R>")
        return
      end
      ngx.req.clear_header("If-None-Match")  -- else nginx itself answers it with 304
      ngx.header["Content-Length"] = 0
      return ngx.exit(200)
    }"""


def servers(moto_port: int) -> str:
    """The keep-alive front of moto and the null store, as nginx server blocks."""
    return (f"  server {{ listen 127.0.0.1:{FRONT_PORT}; client_max_body_size 0; location / {{"
            f" proxy_pass http://127.0.0.1:{moto_port}; proxy_set_header Host $http_host;"
            f" proxy_http_version 1.1; }} }}\n"
            f"  server {{ listen 127.0.0.1:{NULL_PORT}; client_max_body_size 0;"
            f" location / {{ {NULL_STORE} }} }}\n")
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


@dataclass(frozen=True)
class Target:
    """Where a round writes: a folder, or a bucket behind an endpoint."""

    name: str
    endpoint: str | None  # None: the folder on tmpfs
    says: str
    moto: bool = True  # moto keeps what it is sent: emptied after each round
    paced: bool = False  # from the origin that holds each answer, at moto's pace


def targets(moto: MotoServer, scenario: str) -> list[Target]:
    folder = Target("tmpfs", None, "a folder on tmpfs")
    bucket = Target("moto", moto.endpoint, "moto itself (werkzeug: a connection per request)")
    if scenario != "small":
        return [bucket] if scenario == "memory" else [folder, bucket]
    paced = Target("tmpfs, paced", None, "a folder on tmpfs, from an origin holding each answer"
                   f" {PACED.delay_s * 1000:.0f} ms at -c {PACED_C}: about moto's pace",
                   moto=False, paced=True)
    return [folder, paced, bucket,
            Target("moto, kept alive", f"http://127.0.0.1:{FRONT_PORT}",
                   "moto behind nginx, connections kept alive as S3 keeps them"),
            Target("null store", f"http://127.0.0.1:{NULL_PORT}",
                   "nginx answering as S3 does, keeping nothing: the client's own cost",
                   moto=False)]


def one_round(target: Target, scenario: str, urls: Path, n: int, moto: MotoServer,
              store: Path) -> tuple[bench.Run, float]:
    """One run into `target`; its result and moto's CPU meanwhile."""
    before = cpu_s(moto.pid)
    if target.endpoint is None:
        out = bench.WORK / "s3-tmpfs-out"
        shutil.rmtree(out, ignore_errors=True)
        if target.paced:
            slow = urls.with_name(f"{urls.stem}-paced.txt")
            slow.write_text(urls.read_text().replace(f":{bench.PORT}/", f":{PACED.port}/"))
            got = run(slow, str(out), moto.env(TMPDIR=str(store)), "-c", str(PACED_C))
        else:
            got = run(urls, str(out), moto.env(TMPDIR=str(store)), "-c", "50")
        shutil.rmtree(out, ignore_errors=True)
        return got, cpu_s(moto.pid) - before
    prefix = f"{scenario}-{n}-{re.sub('[^a-z]+', '-', target.name)}"  # a fresh state each
    got = run(urls, f"s3://bench/{prefix}", moto.env(TMPDIR=str(store),
                                                      AWS_ENDPOINT_URL=target.endpoint),
              "-c", "8" if scenario == "memory" else "50", "--state", str(store / prefix))
    if target.moto:
        empty(moto, f"{prefix}/")
    return got, cpu_s(moto.pid) - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="small,large,memory")
    args = parser.parse_args()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    moto = MotoServer().start()
    bench.start_nginx(servers(moto.port))
    store = Path(tempfile.mkdtemp(prefix="bulkfetch-bench-s3-"))
    moto.bucket("bench")
    report = [f"## s3 {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC", "",
              "| scenario | into | wall s (median) | files/s | MB/s | CPU s bulkfetch | "
              "CPU ms / file | x the folder's CPU | CPU s moto | peak PSS MB (all) | "
              "peak RSS MB (largest) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    try:
        found = lists()
        for scenario in args.scenarios.split(","):
            urls, count, size = found[scenario]
            where = targets(moto, scenario)
            runs: dict[str, list[tuple[bench.Run, float]]] = {t.name: [] for t in where}
            for n in range(1 if scenario == "memory" else args.rounds):
                for target in where[n % len(where):] + where[:n % len(where)]:
                    runs[target.name].append(one_round(target, scenario, urls, n, moto, store))
            folder = (statistics.median(r.cpu_s for r, _ in runs["tmpfs"])
                      if "tmpfs" in runs else None)
            for name, results in runs.items():
                report.append(row(scenario, name, count, size, results, folder))
                print(report[-1], flush=True)
        report += ["", *(f"- {t.name}: {t.says}" for t in targets(moto, "small"))]
    finally:
        moto.stop()
        bench.stop_nginx()
        shutil.rmtree(store, ignore_errors=True)
    print("\n".join(report))


def row(scenario: str, name: str, count: int, size: int,
        results: list[tuple[bench.Run, float]], folder_cpu_s: float | None) -> str:
    wall = statistics.median(r.wall_s for r, _ in results)
    cpu = statistics.median(r.cpu_s for r, _ in results)
    times = f"{cpu / folder_cpu_s:.2f}" if folder_cpu_s else "-"
    return (f"| {scenario} {count:,} x {size:,} B | {name} | {wall:.2f} | {count / wall:,.0f} | "
            f"{count * size / wall / 1e6:,.0f} | {cpu:.2f} | {cpu / count * 1e3:.3f} | {times} | "
            f"{statistics.median(m for _, m in results):.2f} | "
            f"{max(r.pss_mb for r, _ in results):.0f} | {max(r.rss_mb for r, _ in results):.0f} |")


if __name__ == "__main__":
    main()
