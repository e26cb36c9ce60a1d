"""bulkfetch against curl, wget2 and aria2c on one local nginx, in one run, as ratios.

    ./bench/run [--rounds 3] [--scenarios small,medium,large] [--targets tmpfs,disk]

Fixtures (random bytes, generated once under /dev/shm and served by nginx from there):
small 20,000 x 4 KiB, medium 2,000 x 256 KiB, large 4 x 256 MiB. Every tool runs at
concurrency 50 and writes every file; rounds rotate the order of the tools so drift hits all
alike; after each run the files are counted and sized. Figures: median wall time, files/s, MB/s,
client CPU seconds (user + sys), peak RSS, and speed relative to the best peer (> 1: faster).
Results are printed and appended to bench/RESULTS.md. This is a benchmark, not a test: CI
does not run it.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path("/dev/shm/bulkfetch-bench")
DISK = Path("/var/tmp/bulkfetch-bench")
PORT = 18080
CONCURRENCY = 50

SCENARIOS = {"small": (20_000, 4 * 1024), "medium": (2_000, 256 * 1024), "large": (4, 256 << 20)}
TOOLS = ("bulkfetch", "curl", "wget2", "aria2c")


@dataclass(frozen=True)
class Run:
    tool: str
    wall_s: float
    cpu_s: float
    rss_mb: float


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=False).stdout


def make_fixtures(name: str, count: int, size: int) -> Path:
    folder = WORK / "www" / name
    if folder.is_dir() and len(os.listdir(folder)) == count:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i in range(count):
        with (folder / f"f{i:05d}.bin").open("wb") as f:
            for _ in range(0, size, 1 << 20):  # a MiB at a time: keep this process small
                f.write(os.urandom(min(size, 1 << 20)))
    return folder


def start_nginx() -> None:
    conf = WORK / "nginx.conf"
    conf.write_text(f"""
worker_processes 1;
daemon on;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  keepalive_timeout 120;
  server {{ listen 127.0.0.1:{PORT}; root {WORK}/www; }}
}}
""")
    stop_nginx()
    subprocess.run(["nginx", "-c", str(conf)], check=True)
    time.sleep(0.3)


def stop_nginx() -> None:
    pid_file = WORK / "nginx.pid"
    if pid_file.exists():
        subprocess.run(["nginx", "-c", str(WORK / "nginx.conf"), "-s", "stop"], check=False,
                       capture_output=True)
        time.sleep(0.3)


def command(tool: str, urls: Path, out: Path) -> list[str]:
    if tool == "bulkfetch":
        return [sys.executable, "-m", "bulkfetch", str(urls), "-o", str(out),
                "-c", str(CONCURRENCY), "-q", "--no-progress"]
    if tool == "curl":
        return ["curl", "--parallel", "--parallel-max", str(CONCURRENCY), "--silent",
                "--remote-name-all", "--output-dir", str(out), "--config", f"{urls}.curl"]
    if tool == "wget2":
        return ["wget2", f"--max-threads={CONCURRENCY}", "--quiet", "--no-robots",
                "--no-host-directories", "-P", str(out), "-i", str(urls)]
    if tool == "aria2c":
        return ["aria2c", "-j", str(CONCURRENCY), "-x1", "-s1", "-q", "--file-allocation=none",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out),
                "-i", str(urls)]
    raise ValueError(tool)


def run_once(tool: str, urls: Path, out: Path) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    # GNU time measures the tool: a child of this (large) process would report this
    # process's memory at fork time as its own peak.
    stats = WORK / "time.txt"
    began = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", str(stats),
                           *command(tool, urls, out)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"{tool} exited {proc.returncode}")
    user, system, rss_kb = stats.read_text().split()[-3:]
    return Run(tool, wall, float(user) + float(system), int(rss_kb) / 1024)


def verify(out: Path, count: int, size: int) -> None:
    files = [p for p in out.rglob("*") if p.is_file() and ".bulkfetch" not in p.parts]
    if len(files) != count or any(p.stat().st_size != size for p in files):
        raise SystemExit(f"verification failed in {out}: {len(files)} files")


def table(name: str, target: str, count: int, size: int, runs: list[Run]) -> list[str]:
    by_tool: dict[str, list[Run]] = {}
    for run in runs:
        by_tool.setdefault(run.tool, []).append(run)
    med = {t: statistics.median(r.wall_s for r in rs) for t, rs in by_tool.items()}
    best_peer = min(v for t, v in med.items() if t != "bulkfetch")
    lines = [
        f"### {name} ({count:,} x {size // 1024:,} KiB), output on {target}",
        "",
        "| tool | median wall s | files/s | MB/s | CPU s | peak RSS MB | speed vs best peer |",
        "|---|---|---|---|---|---|---|",
    ]
    for tool in TOOLS:
        if tool not in by_tool:
            continue
        rs = by_tool[tool]
        wall = med[tool]
        lines.append(
            f"| {tool} | {wall:.2f} | {count / wall:,.0f} | {count * size / 1e6 / wall:,.0f} | "
            f"{statistics.median(r.cpu_s for r in rs):.2f} | "
            f"{max(r.rss_mb for r in rs):.0f} | {best_peer / wall:.2f}x |"
        )
    return [*lines, ""]


def versions() -> list[str]:
    first = {
        "curl": sh("curl", "--version").splitlines()[:1],
        "wget2": sh("wget2", "--version").splitlines()[:1],
        "aria2c": sh("aria2c", "--version").splitlines()[:1],
        "nginx": [subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()],
        "bulkfetch": [sh(sys.executable, "-c",
                         "import importlib.metadata as m; print(m.version('bulkfetch'))").strip()],
        "python": [platform.python_version()],
    }
    return [f"{tool}: {(lines or ['?'])[0]}" for tool, lines in first.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default="small,medium,large")
    parser.add_argument("--targets", default="tmpfs,disk")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    report = [
        f"## {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; "
        f"nginx 1 worker on 127.0.0.1, concurrency {CONCURRENCY}, {args.rounds} rounds, "
        "tools rotated each round.",
        "",
        *[f"- {line}" for line in versions()],
        "",
    ]
    try:
        fixtures = {}
        for name in args.scenarios.split(","):
            count, size = SCENARIOS[name]
            folder = make_fixtures(name, count, size)
            urls = WORK / f"{name}.txt"
            names = sorted(os.listdir(folder))
            urls.write_text("".join(f"http://127.0.0.1:{PORT}/{name}/{n}\n" for n in names))
            Path(f"{urls}.curl").write_text(
                "".join(f'url = "http://127.0.0.1:{PORT}/{name}/{n}"\n' for n in names))
            fixtures[name] = (urls, count, size)
        start_nginx()
        for target in args.targets.split(","):
            base = WORK / "out" if target == "tmpfs" else DISK
            for name, (urls, count, size) in fixtures.items():
                runs = []
                for round_no in range(args.rounds):
                    order = TOOLS[round_no % 4:] + TOOLS[: round_no % 4]
                    for tool in order:
                        out = base / tool
                        runs.append(run_once(tool, urls, out))
                        verify(out, count, size)
                        shutil.rmtree(out, ignore_errors=True)
                lines = table(name, target, count, size, runs)
                print("\n".join(lines), flush=True)
                report += lines
    finally:
        stop_nginx()
        shutil.rmtree(DISK, ignore_errors=True)
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
