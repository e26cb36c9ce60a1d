"""What people and logs see: a live table on a terminal, plain lines elsewhere, -q, -v."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from tests.helpers import MANIFEST, bulkfetch_cmd, cli_env, read_manifest, run_cli, write_list
from tests.server import Server

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOR = re.compile(r"\x1b\[[0-9;]*3[0-7]m")


def slow_list(server: Server, path: Path, n: int = 40) -> Path:
    """About 1.5 s of work at -c 4: long enough for several refreshes and status lines."""
    urls = [server.url(f"/bytes/{1000 + i}?delay=0.15") for i in range(n)]
    return write_list(path, [*urls, server.url("/status/404")])


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 30,
               eof_after_s: float | None = None) -> tuple[int, str]:
    """Run the CLI with a pseudo-terminal as stdin, stdout and stderr; returns code and output.
    `eof_after_s`: type Ctrl-D (end of input) after that long."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: become bulkfetch
        os.environ.clear()
        os.environ.update(env)
        cmd = bulkfetch_cmd(*args)
        os.execv(cmd[0], cmd)
    chunks = []
    started = time.monotonic()
    deadline = started + timeout
    while time.monotonic() < deadline:
        if eof_after_s is not None and time.monotonic() - started > eof_after_s:
            os.write(fd, b"\x04")
            eof_after_s = None
        ready, _, _ = select.select([fd], [], [], 0.2)
        if not ready:
            continue
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


def test_terminal_gets_a_live_table_and_a_summary_that_stays(
    server: Server, tmp_path: Path
) -> None:
    env = {**cli_env(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    code, out = run_in_pty(
        [str(slow_list(server, tmp_path / "u")), "-o", str(tmp_path / "out"), "-c", "4"], env
    )
    assert code == 1
    frames = out.count("in flight")
    assert frames >= 3, out  # refreshed several times while the run went on
    assert "\x1b[" in out and COLOR.search(out)
    assert "failed: " in out and "HTTP 404 Not Found" in out
    # After the live view is cleared, the summary table is what stays on the screen.
    tail = ANSI.sub("", out[out.rfind("in flight"):])
    assert "bulkfetch summary" in tail and re.search(r"│ ok +│ 40 ", tail)
    assert "Traceback" not in out


def test_no_color_is_honoured_on_a_terminal(server: Server, tmp_path: Path) -> None:
    env = {**cli_env(), "COLUMNS": "120", "TERM": "xterm-256color", "NO_COLOR": "1"}
    code, out = run_in_pty(
        [str(slow_list(server, tmp_path / "u", n=8)), "-o", str(tmp_path / "out")], env
    )
    assert code == 1
    assert "in flight" in out and not COLOR.search(out)


def test_logs_get_plain_status_lines_at_the_interval(server: Server, tmp_path: Path) -> None:
    """stderr to a file: no escape sequences, no carriage returns, a line every interval."""
    src = slow_list(server, tmp_path / "u")
    began = time.monotonic()
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "-c", "4", "--status-interval", "0.3")
    took = time.monotonic() - began
    assert proc.returncode == 1
    assert "\x1b" not in proc.stderr and "\r" not in proc.stderr
    status = [line for line in proc.stderr.splitlines() if " done: " in line]
    assert len(status) >= 3
    assert len(status) <= took / 0.3 + 1
    when = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ "  # ISO-8601, UTC: appended logs part
    shape = when + r"bulkfetch: [\d,]+/(≥ [\d,]+( \(≈ [\d,]+\))?|[\d,]+) done: [\d,]+ ok, "
    assert all(re.match(shape, line) for line in status), status
    assert re.match(when + "bulkfetch: manifest: ", proc.stderr.splitlines()[-1])


def test_status_interval_zero_is_silent(server: Server, tmp_path: Path) -> None:
    proc = run_cli(str(slow_list(server, tmp_path / "u", n=8)), "-o", str(tmp_path / "out"),
                   "--status-interval", "0")
    assert " done: " not in proc.stderr


def test_verbose_prints_one_line_per_url(server: Server, tmp_path: Path) -> None:
    src = write_list(tmp_path / "u", [server.url("/bytes/10"), server.url("/status/404")])
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "-v")
    assert proc.stdout == ""
    lines = [line.split(" ", 1)[1] for line in proc.stderr.splitlines()
             if " bulkfetch: ok: " in line or " bulkfetch: failed: " in line]
    assert len(lines) == 2
    assert f"ok: {server.url('/bytes/10')} [200] 10 B -> 127.0.0.1_{server.port}/10-" in lines[0] \
        or f"ok: {server.url('/bytes/10')} [200] 10 B -> 127.0.0.1_{server.port}/10-" in lines[1]
    assert any("[404] 0 B -> HTTP 404 Not Found" in line for line in lines)


def test_quiet_and_verbose_conflict(tmp_path: Path) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), "-q", "-v")
    assert proc.returncode == 2 and "do not go together" in proc.stderr


def test_summary_json(server: Server, tmp_path: Path) -> None:
    src = write_list(tmp_path / "u", [server.url("/bytes/100"), server.url("/status/500")])
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--retries", "0",
                   "--summary-json", str(tmp_path / "summary.json"))
    assert proc.returncode == 1
    data = orjson.loads((tmp_path / "summary.json").read_bytes())
    assert {k: data[k] for k in ("ok", "failed", "total", "bytes", "exit_code")} == {
        "ok": 1, "failed": 1, "total": 2, "bytes": 100, "exit_code": 1}
    assert data["manifest"].endswith("manifest.jsonl") and data["interrupted_by"] is None
    assert data["elapsed_s"] > 0 and data["files_per_s"] > 0


def test_forced_progress_without_a_terminal(server: Server, tmp_path: Path) -> None:
    """--progress draws the table even when stderr is a pipe (as a CI log may want)."""
    proc = subprocess.run(
        bulkfetch_cmd(str(slow_list(server, tmp_path / "u", n=8)), "-o", str(tmp_path / "out"),
                      "--progress"),
        capture_output=True, text=True, env=cli_env(), timeout=60,
    )
    assert proc.returncode == 1
    assert "in flight" in proc.stderr and "bulkfetch summary" in proc.stderr


def test_runs_without_a_terminal_do_not_import_rich(server: Server, tmp_path: Path) -> None:
    """rich draws the live table only: 30 ms and 2 MB that a cron job need not pay."""
    src = write_list(tmp_path / "u", [server.url("/bytes/10")])
    env = {**cli_env(), "PYTHONPROFILEIMPORTTIME": "1"}
    proc = subprocess.run(
        bulkfetch_cmd(str(src), "-o", str(tmp_path / "out")), capture_output=True, text=True,
        timeout=60, env=env,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()
                if line.startswith("import time:")]
    assert "aiohttp" in imported  # the import trace is there
    assert not [name for name in imported if name.split(".")[0] == "rich"]


HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x00\u202e"


def hostile_list(server: Server, path: Path) -> Path:
    """Lines whose URL, NAME and server reason hold terminal controls, and undecodable bytes."""
    lines = [
        f"{server.url('/status/404')}?q={HOSTILE}",
        f"{server.url('/bytes/10')} name{HOSTILE}.bin",
        f"ftp://x/{HOSTILE}",
    ]
    path.write_bytes("\n".join(lines).encode() + b"\nhttp://127.0.0.1:9/\xff\xfe\n")
    return path


@pytest.mark.parametrize("args", [[], ["-v"], ["-q"]])
def test_nothing_from_the_list_or_the_wire_reaches_stderr_raw(
    server: Server, tmp_path: Path, args: list[str]
) -> None:
    proc = subprocess.run(
        bulkfetch_cmd(str(hostile_list(server, tmp_path / "u")), "-o", str(tmp_path / "out"),
                      "--retries", "0", *args),
        capture_output=True, env=cli_env(), timeout=60,
    )
    assert proc.returncode == 1
    for raw in (b"\x1b", b"\x07", b"\x00", "\u202e".encode()):
        assert raw not in proc.stderr, proc.stderr
    if args != ["-q"]:
        assert b"\\x1b]0;pwned\\x07" in proc.stderr


def test_nothing_raw_reaches_a_terminal(server: Server, tmp_path: Path) -> None:
    env = {**cli_env(), "COLUMNS": "200", "LINES": "40", "TERM": "xterm-256color"}
    code, out = run_in_pty(
        [str(hostile_list(server, tmp_path / "u")), "-o", str(tmp_path / "out"), "-v"], env
    )
    assert code == 1
    assert "\x1b]0;" not in out and "\x07" not in out and "\x1b[2J" not in out
    assert "\\x1b]0;pwned" in out


@pytest.mark.parametrize("header", ["X: a\nb", "X: a\rb", "X: a\x7fb", "X Y: z", "X\x1b: z"])
def test_a_header_with_control_characters_is_a_usage_error(tmp_path: Path, header: str) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), "-H", header)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--header" in proc.stderr


def test_with_stderr_closed_the_run_completes_and_stdout_stays_empty(
    server: Server, tmp_path: Path
) -> None:
    urls = [server.url("/bytes/10"), server.url("/status/404")]
    out = tmp_path / "out"
    proc = subprocess.run(
        ["sh", "-c", 'exec "$@" 2>&-', "sh",
         *bulkfetch_cmd(str(write_list(tmp_path / "u", urls)), "-o", str(out), "-v")],
        capture_output=True, env=cli_env(), timeout=60,
    )
    assert proc.returncode == 1 and proc.stdout == b""
    rows = read_manifest(out / MANIFEST)
    assert [rows[url]["status"] for url in urls] == ["ok", "failed"]
    assert b"bulkfetch" not in (out / rows[urls[0]]["path"]).read_bytes()


def test_list_mistakes_are_said(server: Server, tmp_path: Path) -> None:
    """A repeat with another NAME is said once; an empty list says so; '-' on a terminal says
    it reads standard input."""
    url = server.url("/bytes/10")
    lists = write_list(tmp_path / "u", [f"{url} a.bin", f"{url} b.bin", f"{url} c.bin"])
    proc = run_cli(str(lists), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0
    assert proc.stderr.count("is listed again with another NAME or sha256") == 1
    assert f"{lists}:2: " in proc.stderr
    empty = write_list(tmp_path / "empty", ["# nothing", ""])
    proc = run_cli(str(empty), "-o", str(tmp_path / "out2"))
    assert proc.returncode == 0 and "no URLs in the lists" in proc.stderr
    env = {**cli_env(), "COLUMNS": "120", "LINES": "40", "TERM": "xterm-256color"}
    code, out = run_in_pty(["-", "-o", str(tmp_path / "out3")], env, eof_after_s=1.0)
    assert code == 0
    assert "reading URLs from standard input" in out and "no URLs" in out


def test_not_modified_has_one_name_on_screen(server: Server, tmp_path: Path) -> None:
    (server.root / "same.txt").write_bytes(b"x" * 50)
    src = write_list(tmp_path / "u", [server.url("/static/same.txt")])
    run_cli(str(src), "-o", str(tmp_path / "out"))
    proc = run_cli(str(src), "-o", str(tmp_path / "out"), "-v", "--status-interval", "0")
    assert "bulkfetch: not modified: " in proc.stderr and "not_modified:" not in proc.stderr


@pytest.mark.parametrize("look", [["-v"], ["--progress"]])
def test_a_closed_stderr_pipe_neither_stops_nor_hangs_the_run(
    server: Server, tmp_path: Path, look: list[str]
) -> None:
    """`bulkfetch ... 2>&1 | head -2`: the reader goes, the run completes with every file and
    manifest line, quietly stops writing to stderr, exits with the code it earned, and lets go
    of the lock."""
    urls = [server.url(f"/bytes/{100 + i}") for i in range(300)] + [server.url("/status/404")]
    urls += [server.url(f"/stall/1?before=100&i={i}") for i in range(4)]
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", urls)
    proc = subprocess.Popen(bulkfetch_cmd(str(src), "-o", str(out), "-c", "4", *look),
                            stderr=subprocess.PIPE, env=cli_env())
    assert proc.stderr is not None
    proc.stderr.readline()
    proc.stderr.readline()
    proc.stderr.close()  # as `head -2` does
    assert proc.wait(timeout=60) == 1  # the 404
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(urls)
    assert sum(row["status"] == "ok" for row in rows.values()) == len(urls) - 1
    again = subprocess.run(bulkfetch_cmd(str(src), "-o", str(out), "-q"), capture_output=True,
                           env=cli_env(), timeout=60)
    assert again.returncode == 1, again.stderr  # not 75: the lock was let go


@pytest.mark.parametrize("columns", [40, 64, 120])
def test_the_live_table_fits_the_terminal(server: Server, tmp_path: Path, columns: int) -> None:
    """Nothing wraps at any width from 40: each transfer is one line, its long name cut in the
    middle (the start and the file kept), columns dropped before anything wraps."""
    folder = "datasets/" + "a-long-folder-name-" * 8
    long = [f"{server.url(f'/stall/1?before=20000&i={i}')}  {folder}/file-{i}.iso"
            for i in range(4)]
    env = {**cli_env(), "COLUMNS": str(columns), "LINES": "40", "TERM": "xterm-256color"}
    code, out = run_in_pty([str(write_list(tmp_path / "u", long)), "-o", str(tmp_path / "out"),
                            "-c", "4"], env)
    assert code == 0, out
    text = ANSI.sub("", out)
    lines = [part for line in text.split("\n") for part in line.split("\r")]
    assert max(len(line.rstrip()) for line in lines) <= columns
    rows = [line for line in lines if "…" in line and ".iso" in line]
    assert rows, text
    assert all(" datasets/" in row for row in rows)  # the head
    # The speed on the same line (and the attempt, where there is room).
    assert all(re.search(r"(/s|—)( +\d+)?$", row.rstrip()) for row in rows)
