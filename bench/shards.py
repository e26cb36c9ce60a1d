"""Shards against one process: `--shard I/2 --workers 1` twice at once vs one run `-w 2`.

    .venv/bin/python bench/shards.py [--rounds 3]

Uses bench.py's nginx and fixtures: small (20,000 x 4 KiB from one host: the shards split it
with --shard-by url) and hosts20 (20 hosts, 20 ms each, --per-host 4: split by host). Rounds
alternate A/B. Prints median wall seconds and the ratio (> 1: the shards are faster).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench


def small_list() -> Path:
    folder = bench.make_fixtures("small", *bench.SCENARIOS["small"])
    path = bench.WORK / "small.txt"
    path.write_text("".join(f"http://127.0.0.1:{bench.PORT}/small/{n}\n"
                            for n in sorted(os.listdir(folder))))
    return path


def hosts20_list() -> Path:
    files = sorted(os.listdir(bench.make_fixtures("small", *bench.SCENARIOS["small"])))
    return bench.delayed_list("hosts20", bench.DELAYED["hosts20"], files)


CASES = {
    "small": (small_list, ("--shard-by", "url"), ()),
    "hosts20": (hosts20_list, (), ("--per-host", "4", "-c", "80")),
}


def one(args: list[str], out: Path) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "bulkfetch", *args, "-o", str(out), "-q"],
                   check=False, stderr=subprocess.DEVNULL)
    return time.monotonic() - started


def shards(args: list[str], out: Path) -> float:
    started = time.monotonic()
    procs = [subprocess.Popen([sys.executable, "-m", "bulkfetch", *args, "-o", str(out), "-q",
                               "-w", "1", "--shard", f"{i}/2"], stderr=subprocess.DEVNULL)
             for i in range(2)]
    for proc in procs:
        proc.wait()
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds
    bench.WORK.mkdir(parents=True, exist_ok=True)
    bench.start_nginx()
    try:
        for name, (make_list, shard_args, common) in CASES.items():
            urls = make_list()
            times: dict[str, list[float]] = {"one -w 2": [], "2 shards -w 1": []}
            for _ in range(rounds):
                for label in times:
                    out = bench.WORK / "out-shards"
                    shutil.rmtree(out, ignore_errors=True)
                    if label == "one -w 2":
                        times[label].append(one([str(urls), *common, "-w", "2"], out))
                    else:
                        times[label].append(shards([str(urls), *common, *shard_args], out))
            med = {label: statistics.median(t) for label, t in times.items()}
            print(f"{name}: " + ", ".join(f"{k} {v:.2f} s ({min(times[k]):.2f}-"
                                          f"{max(times[k]):.2f})" for k, v in med.items())
                  + f"; shards / one = {med['one -w 2'] / med['2 shards -w 1']:.2f}x")
    finally:
        bench.stop_nginx()


if __name__ == "__main__":
    main()
