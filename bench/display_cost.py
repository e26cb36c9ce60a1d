"""Cost of the live display: the same list fetched with --progress and with --no-progress,
alternating, output on tmpfs; prints the median wall time of each and their ratio.

    python bench/display_cost.py LIST [--rounds 5] [--out /dev/shm/bulkfetch-bench]

LIST should point at a local server that is not the bottleneck (e.g. nginx serving 20,000
files of 4 KiB). The display writes to a pipe that is read and discarded, as a terminal would.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time


def once(urls: str, out: str, flag: str) -> float:
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "bulkfetch", urls, "-o", out, flag],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False,
    )
    took = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"bulkfetch {flag} exited {proc.returncode}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("urls")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default="/dev/shm/bulkfetch-bench")
    args = parser.parse_args()
    times: dict[str, list[float]] = {"--progress": [], "--no-progress": []}
    for round_no in range(args.rounds):
        order = list(times) if round_no % 2 == 0 else list(reversed(times))
        for flag in order:
            times[flag].append(once(args.urls, args.out, flag))
    shutil.rmtree(args.out, ignore_errors=True)
    medians = {flag: statistics.median(ts) for flag, ts in times.items()}
    for flag, ts in times.items():
        print(f"{flag:14} median {medians[flag]:.2f}s  runs {', '.join(f'{t:.2f}' for t in ts)}")
    print(f"--progress / --no-progress = {medians['--progress'] / medians['--no-progress']:.3f}")


if __name__ == "__main__":
    main()
