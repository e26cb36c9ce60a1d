"""Real links, on one local nginx: a bandwidth cap, and an origin that throttles each connection.

    .venv/bin/python bench/links.py [--rounds 3]

cap        2 x 256 MiB at a cap of 32 MiB/s for the whole run: the target is 16 s (+-5 %).
           bulkfetch --limit-rate 32M; aria2c --max-overall-download-limit=32M; curl caps each
           transfer (--limit-rate), so it gets 16M each for two; wget2 1.99 has no cap.
throttled  2 x 64 MiB from a server allowing 4 MiB/s per connection (nginx `limit_rate 4m`),
           as a far-away or throttling server does: one connection per file gets 8 MiB/s in
           all; aria2c -x16 -s16 -k1M opens 16 per file, bulkfetch --split 16
           --min-split-size 1M as many (both tools' default piece, 20M, would allow 3).

Needs nginx, curl, wget2 and aria2c (./bench/run installs them). Output goes to /dev/shm, the
median wall time of the rounds is printed and appended to bench/RESULTS.md. A benchmark, not a
test: CI does not run it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path("/dev/shm/bulkfetch-links")
PORT, THROTTLED_PORT = 18091, 18092
MIB = 1 << 20


def fixtures() -> None:
    for name, count, size in (("cap", 2, 256 * MIB), ("throttled", 2, 64 * MIB)):
        folder = WORK / "www" / name
        folder.mkdir(parents=True, exist_ok=True)
        for n in range(count):
            path = folder / f"{n}.bin"
            if not path.exists() or path.stat().st_size != size:
                with path.open("wb") as f:
                    for _ in range(size // MIB):
                        f.write(os.urandom(MIB))


def nginx(action: str) -> None:
    conf = WORK / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon on;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  sendfile on;
  server {{ listen 127.0.0.1:{PORT}; root {WORK}/www; }}
  server {{ listen 127.0.0.1:{THROTTLED_PORT}; root {WORK}/www; limit_rate 4m; }}
}}
""")
    if action == "start":
        subprocess.run(["nginx", "-c", str(conf)], check=True)
        time.sleep(0.3)
    elif (WORK / "nginx.pid").exists():
        subprocess.run(["nginx", "-c", str(conf), "-s", "stop"], check=False)


def commands(scenario: str, urls: list[str], out: Path) -> dict[str, list[str]]:
    """Each tool's command; wget2 (1.99) has no bandwidth cap, so it sits the cap out."""
    out.parent.mkdir(parents=True, exist_ok=True)
    listed = out.parent / f"{scenario}.txt"
    listed.write_text("".join(f"{u}\n" for u in urls))
    cap = scenario == "cap"
    return {
        "bulkfetch": [sys.executable, "-m", "bulkfetch", str(listed), "-o", str(out / "b"),
                      "-q", "--no-progress",
                      *(["--limit-rate", "32M"] if cap else ["--split", "16",
                                                             "--min-split-size", "1M"])],
        "aria2c": ["aria2c", "-q", "-d", str(out / "a"), "-i", str(listed), "-j", "2",
                   "--allow-overwrite=true", "--file-allocation=none",
                   *(["--max-overall-download-limit=32M"] if cap else ["-x16", "-s16", "-k1M"])],
        "curl": ["curl", "--parallel", "--silent", "--no-progress-meter", "--create-dirs",
                 "--output-dir",
                 str(out / "c"), "--remote-name-all", *(["--limit-rate", "16M"] if cap else []),
                 *urls],
        **({} if cap else {"wget2": ["wget2", "--quiet", "--max-threads=2", "-P",
                                     str(out / "w"), "--no-robots", *urls]}),
    }


def once(command: list[str], out: Path) -> float:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    started = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    fixtures()
    nginx("start")
    lines = [f"\n## links ({datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
             f"{args.rounds} rounds, median wall time)\n",
             "| scenario | bulkfetch | aria2c | curl | wget2 | target |",
             "|---|---|---|---|---|---|"]
    try:
        for scenario, port, count, target in (("cap", PORT, 2, "16 s"),
                                              ("throttled", THROTTLED_PORT, 2, "aria2c")):
            urls = [f"http://127.0.0.1:{port}/{scenario}/{n}.bin" for n in range(count)]
            out = WORK / "out" / scenario
            times: dict[str, list[float]] = {}
            for round_ in range(args.rounds):
                tools = list(commands(scenario, urls, out).items())
                shift = round_ % len(tools)  # rotate the order: drift hits every tool alike
                for tool, command in tools[shift:] + tools[:shift]:
                    times.setdefault(tool, []).append(once(command, out))
            med = {tool: statistics.median(ts) for tool, ts in times.items()}
            lines.append(f"| {scenario} | " + " | ".join(
                f"{med[t]:.1f} s" if t in med else "no cap" for t in
                ("bulkfetch", "aria2c", "curl", "wget2"))
                + f" | {target} |")
            print(lines[-1], flush=True)
    finally:
        nginx("stop")
        shutil.rmtree(WORK / "out", ignore_errors=True)
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
