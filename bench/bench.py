"""bulkfetch against curl, wget2 and aria2c on one local nginx, in one run, as ratios.

    ./bench/run [--rounds 3] [--scenarios small,medium,large,latency20,latency100,hosts20]
                [--targets tmpfs,disk]
                [--tools bulkfetch,curl,wget2,aria2c,aiohttp-floor,contract-floor]

Fixtures (random bytes, generated once under /dev/shm and served by nginx from there):
small 20,000 x 4 KiB, medium 2,000 x 256 KiB, large 4 x 256 MiB. Every tool runs at
concurrency 50 and writes every file; rounds rotate the order of the tools so drift hits all
alike; after each run the files are counted and sized. Beside them runs the floor of any
aiohttp-based fetcher (bench/aiohttp_floor.py: one session per core, every body streamed and
dropped, nothing written), which is not a peer: it shows how far Python and aiohttp alone can
go on this machine. Beside it, the contract floor (bench/contract_floor.py: the same, but each
body hashed, written by a writer thread to a temp file beside its path, renamed, and a manifest
line): the least a fetcher can do that keeps bulkfetch's promises. Figures: median wall time,
files/s, MB/s, CPU seconds per 1,000 files and per GiB,
client CPU seconds (user + sys, the tool's processes together), peak memory (the largest single
process's RSS, and the peak sum of PSS over all the tool's processes, sampled every 50 ms), and
speed relative to the best peer (> 1: faster).

The latency scenarios fetch 10,000 of the small files from the same nginx, which holds every
answer for a fixed time before serving it (`access_by_lua_block { ngx.sleep(D) }`, from
libnginx-mod-http-lua: a timer, no CPU taken from the tools): latency20 (20 ms, concurrency 50),
latency100 (100 ms, concurrency 200), and hosts20: 20 hosts (127.0.0.1-127.0.0.20), 500 files
each, the list sorted by host, 20 ms, concurrency 80, bulkfetch with --per-host 4 (the peers
have no per-host limit at all). Each is reported against its ceiling, concurrency / delay.
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
import threading
import time
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORK = Path("/dev/shm/bulkfetch-bench")
DISK = Path("/var/tmp/bulkfetch-bench")
PORT = 18080
CONCURRENCY = 50

SCENARIOS = {"small": (20_000, 4 * 1024), "medium": (2_000, 256 * 1024), "large": (4, 256 << 20)}
TOOLS = ("bulkfetch", "curl", "wget2", "aria2c", "aiohttp-floor", "contract-floor")
FLOOR = "aiohttp-floor"  # bench/aiohttp_floor.py: reads every body, writes nothing; not a peer
CONTRACT = "contract-floor"  # bench/contract_floor.py: temp file, sha256, rename, a manifest line
FLOORS = (FLOOR, CONTRACT)
LATENCY_FILES = 10_000
LUA_MODULES = ("ndk_http_module.so", "ngx_http_lua_module.so")


@dataclass(frozen=True)
class Delayed:
    """A latency scenario: the origin holds each answer `delay_s`."""

    delay_s: float
    port: int
    concurrency: int
    hosts: int = 1
    bulkfetch_args: tuple[str, ...] = ()

    @property
    def ceiling_files_per_s(self) -> float:
        return self.concurrency / self.delay_s


DELAYED = {
    "latency20": Delayed(0.020, 18083, 50),
    "latency100": Delayed(0.100, 18084, 200),
    "hosts20": Delayed(0.020, 18083, 80, hosts=20, bulkfetch_args=("--per-host", "4")),
}


@dataclass(frozen=True)
class Run:
    tool: str
    wall_s: float
    cpu_s: float
    rss_mb: float  # the largest single process
    pss_mb: float  # all the tool's processes together, sampled


class TreeMemory:
    """Samples the summed PSS of a process's descendants until told to stop."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kb / 1024

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            tool = _tree(self.pid)[1:]  # without GNU time itself
            self.peak_kb = max(self.peak_kb, sum(_pss_kb(p) for p in tool))


def _tree(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                children = Path(f"/proc/{p}/task/{task}/children").read_text()
                todo += [int(c) for c in children.split()]
        except OSError:
            pass
    return found


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


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


def start_nginx(extra: str = "") -> None:
    """nginx with the origins of the scenarios, and `extra` server blocks of the caller's."""
    conf = WORK / "nginx.conf"
    modules = "".join(f"load_module /usr/lib/nginx/modules/{m};\n" for m in LUA_MODULES)
    delayed = ""
    for port, delay in sorted({(d.port, d.delay_s) for d in DELAYED.values()}):
        hosts = max(d.hosts for d in DELAYED.values() if d.port == port)
        listens = " ".join(f"listen 127.0.0.{h}:{port};" for h in range(1, hosts + 1))
        delayed += (f"  server {{ {listens} root {WORK}/www; "
                    f"location / {{ access_by_lua_block {{ ngx.sleep({delay}) }} }} }}\n")
    conf.write_text(modules + f"""
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
{delayed}{extra}}}
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


def command(tool: str, urls: Path, out: Path, concurrency: int = CONCURRENCY,
            bulkfetch_args: tuple[str, ...] = (), cacert: Path | None = None) -> list[str]:
    """The tool's command for the list; with `cacert`, each tool trusts that CA (a private
    one) in its own words."""
    if cacert is not None:
        flag = {"bulkfetch": ["--cacert", str(cacert)], "curl": ["--cacert", str(cacert)],
                "wget2": [f"--ca-certificate={cacert}"], "aria2c": [f"--ca-certificate={cacert}"],
                }.get(tool, [])
        return [*command(tool, urls, out, concurrency, bulkfetch_args), *flag]
    if tool == "bulkfetch":
        return [sys.executable, "-m", "bulkfetch", str(urls), "-o", str(out),
                "-c", str(concurrency), "-q", "--no-progress", *bulkfetch_args]
    if tool == "curl":
        return ["curl", "--parallel", "--parallel-max", str(concurrency), "--silent",
                "--remote-name-all", "--output-dir", str(out), "--config", f"{urls}.curl"]
    if tool == "wget2":
        return ["wget2", f"--max-threads={concurrency}", "--quiet", "--no-robots",
                "--no-host-directories", "-P", str(out), "-i", str(urls)]
    if tool == FLOOR:
        return [sys.executable, str(HERE / "aiohttp_floor.py"), str(urls), str(concurrency)]
    if tool == CONTRACT:
        return [sys.executable, str(HERE / "contract_floor.py"), str(urls), str(out),
                str(concurrency)]
    if tool == "aria2c":
        return ["aria2c", "-j", str(concurrency), "-x1", "-s1", "-q", "--file-allocation=none",
                "--allow-overwrite=true", "--auto-file-renaming=false", "-d", str(out),
                "-i", str(urls)]
    raise ValueError(tool)


def run_once(tool: str, urls: Path, out: Path, **options: object) -> Run:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    return timed(tool, command(tool, urls, out, **options))  # type: ignore[arg-type]


def timed(name: str, cmd: list[str], env: dict[str, str] | None = None) -> Run:
    """Run `cmd` to its end under GNU time, sampling its processes' memory meanwhile.

    GNU time measures the tool: a child forked from this (large) process would report this
    process's memory at fork time as its own peak. Its %M is the largest single process;
    %U and %S include the processes the tool waited for (bulkfetch's workers).
    """
    stats = WORK / "time.txt"
    began = time.perf_counter()
    proc = subprocess.Popen(["/usr/bin/time", "-f", "%U %S %M", "-o", str(stats), *cmd],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    memory = TreeMemory(proc.pid)
    proc.wait()
    wall = time.perf_counter() - began
    pss = memory.stop()
    if proc.returncode != 0:
        raise SystemExit(f"{name} exited {proc.returncode}")
    user, system, rss_kb = stats.read_text().split()[-3:]
    return Run(name, wall, float(user) + float(system), int(rss_kb) / 1024, pss)


def verify(out: Path, count: int, size: int) -> None:
    files = [p for p in out.rglob("*") if p.is_file() and ".bulkfetch" not in p.parts]
    if len(files) != count or any(p.stat().st_size != size for p in files):
        raise SystemExit(f"verification failed in {out}: {len(files)} files")


def table(title: str, count: int, size: int, runs: list[Run],
          ceiling_s: float | None = None) -> list[str]:
    by_tool: dict[str, list[Run]] = {}
    for run in runs:
        by_tool.setdefault(run.tool, []).append(run)
    med = {t: statistics.median(r.wall_s for r in rs) for t, rs in by_tool.items()}
    peers = [v for t, v in med.items() if t not in ("bulkfetch", *FLOORS)]
    best_peer = min(peers) if peers else None
    extra = " | share of the ceiling" if ceiling_s else ""
    lines = [
        f"### {title}",
        "",
        "| tool | median wall s | files/s | MB/s | CPU s | CPU s / 1k files | CPU s / GiB "
        "| peak RSS MB (largest process) | peak PSS MB (all processes) | speed vs best peer "
        f"| vs no-write floor | vs contract floor{extra} |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if ceiling_s else ""),
    ]
    for tool in TOOLS:
        if tool not in by_tool:
            continue
        rs = by_tool[tool]
        wall = med[tool]
        ratio = f"{best_peer / wall:.2f}x" if best_peer else "-"
        floors = " | ".join(f"{med[f] / wall:.2f}x" if f in med else "-" for f in FLOORS)
        share = f" | {ceiling_s / wall:.0%}" if ceiling_s else ""
        name = f"{tool} (reads only, writes nothing)" if tool == FLOOR else tool
        cpu = statistics.median(r.cpu_s for r in rs)
        lines.append(
            f"| {name} | {wall:.2f} | {count / wall:,.0f} | {count * size / 1e6 / wall:,.0f} | "
            f"{cpu:.2f} | {cpu / count * 1000:.3f} | {cpu / (count * size / 2**30):.2f} | "
            f"{max(r.rss_mb for r in rs):.0f} | {max(r.pss_mb for r in rs):.0f} | "
            f"{ratio} | {floors}{share} |"
        )
    return [*lines, ""]


def delayed_list(name: str, scenario: Delayed, files: list[str]) -> Path:
    """The scenario's URL list (and curl's config): 10,000 small files, sorted by host."""
    per_host = LATENCY_FILES // scenario.hosts
    urls = [f"http://127.0.0.{1 + i // per_host}:{scenario.port}/small/{n}"
            for i, n in enumerate(files[:LATENCY_FILES])]
    path = WORK / f"{name}.txt"
    path.write_text("".join(f"{u}\n" for u in urls))
    Path(f"{path}.curl").write_text("".join(f'url = "{u}"\n' for u in urls))
    return path


def rotated(tools: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    return tools[round_no % len(tools):] + tools[: round_no % len(tools)]


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


def measure(tools: tuple[str, ...], urls: Path, base: Path, count: int, size: int,
            rounds_n: int, **options: object) -> list[Run]:
    runs = []
    for round_no in range(rounds_n):
        for tool in rotated(tools, round_no):
            out = base / tool
            runs.append(run_once(tool, urls, out, **options))
            if tool != FLOOR:
                verify(out, count, size)
            shutil.rmtree(out, ignore_errors=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios",
                        default="small,medium,large,latency20,latency100,hosts20")
    parser.add_argument("--targets", default="tmpfs,disk")
    parser.add_argument("--tools", default=",".join(TOOLS))
    args = parser.parse_args()
    tools = tuple(t for t in TOOLS if t in args.tools.split(","))
    scenarios = args.scenarios.split(",")
    WORK.mkdir(parents=True, exist_ok=True)
    report = [
        f"## {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"Machine: {os.cpu_count()} cores, {platform.machine()}, Linux {platform.release()}; "
        f"nginx 1 worker on 127.0.0.1, concurrency {CONCURRENCY} unless said, "
        f"{args.rounds} rounds, "
        "tools rotated each round; bulkfetch with its defaults (workers: one per core).",
        "",
        *[f"- {line}" for line in versions()],
        "",
    ]
    try:
        fixtures = {}
        needed = {*scenarios, *(["small"] if set(scenarios) & set(DELAYED) else [])}
        for name in [n for n in SCENARIOS if n in needed]:
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
                if name not in scenarios:
                    continue
                runs = measure(tools, urls, base, count, size, args.rounds)
                title = f"{name} ({count:,} x {size // 1024:,} KiB), output on {target}"
                lines = table(title, count, size, runs)
                print("\n".join(lines), flush=True)
                report += lines
        files = sorted(os.listdir(WORK / "www" / "small"))
        for name, scenario in DELAYED.items():
            if name not in scenarios:
                continue
            urls = delayed_list(name, scenario, files)
            count, size = LATENCY_FILES, SCENARIOS["small"][1]
            runs = measure(tools, urls, WORK / "out", count, size, args.rounds,
                           concurrency=scenario.concurrency,
                           bulkfetch_args=scenario.bulkfetch_args)
            ceiling_s = count / scenario.ceiling_files_per_s
            hosts = f"{scenario.hosts} hosts sorted, " if scenario.hosts > 1 else ""
            extra = f", bulkfetch {' '.join(scenario.bulkfetch_args)}" if (
                scenario.bulkfetch_args) else ""
            title = (f"{name} ({count:,} x 4 KiB, {hosts}answers held "
                     f"{scenario.delay_s * 1000:.0f} ms by the origin, c={scenario.concurrency}"
                     f"{extra}; ceiling {scenario.ceiling_files_per_s:,.0f} files/s = "
                     f"{ceiling_s:.1f} s), output on tmpfs")
            lines = table(title, count, size, runs, ceiling_s)
            print("\n".join(lines), flush=True)
            report += lines
    finally:
        stop_nginx()
        shutil.rmtree(DISK, ignore_errors=True)
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
