"""What a user of curl, wget2 or aria2c reaches for: URLs as arguments, `verify` to check a
finished dataset, `report` for any run with a table by host, and plain words at the edges."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bulkfetch
from bulkfetch.store.lock import hold
from tests.helpers import MANIFEST, bulkfetch_cmd, cli_env, read_manifest, run_cli, write_list
from tests.server import Server, body

# URLs as arguments.


def test_a_url_argument_is_fetched_beside_a_list(server: Server, tmp_path: Path) -> None:
    listed = server.url("/bytes/10")
    argument = server.url("/bytes/11")
    proc = run_cli(argument, str(write_list(tmp_path / "u", [listed])), "-o",
                   str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert sorted(rows) == sorted([listed, argument])
    assert (tmp_path / "out" / rows[argument]["path"]).read_bytes() == body("/bytes/11", 11)


def test_a_file_of_a_urls_name_is_read_as_a_list(server: Server, tmp_path: Path) -> None:
    """`./NAME` or the bare name: a file that exists is a list, whatever it looks like."""
    inside = server.url("/bytes/12")
    (tmp_path / "http:").mkdir()
    write_list(tmp_path / "http:" / "x", [inside])
    proc = subprocess.run(bulkfetch_cmd("http://x", "-o", "out"), cwd=tmp_path,
                          capture_output=True, text=True, env=cli_env(), timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert list(read_manifest(tmp_path / "out" / MANIFEST)) == [inside]


def test_the_library_takes_urls_among_its_sources(server: Server, tmp_path: Path) -> None:
    url = server.url("/bytes/13")
    listed = server.url("/bytes/14")
    summary = bulkfetch.fetch([url, str(write_list(tmp_path / "u", [listed]))],
                              tmp_path / "out")
    assert summary.ok == 2


def test_a_missing_list_makes_nothing(tmp_path: Path) -> None:
    """The list is read before anything is made: a new --out is not created, no manifest."""
    proc = run_cli(str(tmp_path / "missing.txt"), "-o", str(tmp_path / "new"))
    assert proc.returncode == 2
    assert "missing.txt': cannot read: No such file or directory" in proc.stderr
    assert not (tmp_path / "new").exists()


# verify


def _saved(server: Server, tmp_path: Path, count: int = 6) -> tuple[Path, dict[str, dict]]:
    urls = [server.url(f"/bytes/{2000 + n}") for n in range(count)]
    out = tmp_path / "out"
    assert run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(out)).returncode == 0
    return out, read_manifest(out / MANIFEST)


def test_verify_passes_a_dataset_as_saved(server: Server, tmp_path: Path) -> None:
    out, _ = _saved(server, tmp_path)
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "6 files checked (12,015 bytes hashed): 0 missing, 0 changed, 0 unexpected; " \
           "all match" in proc.stderr


def test_verify_names_what_changed_went_missing_or_was_added(
    server: Server, tmp_path: Path
) -> None:
    """A file changed in place at the same size (which a run's `not_modified` line never
    notices), one gone, one truncated, a stray file and a planted link."""
    out, rows = _saved(server, tmp_path)
    paths = [row["path"] for row in rows.values()]
    same_size = out / paths[0]
    same_size.write_bytes(bytes(len(same_size.read_bytes())))
    (out / paths[1]).unlink()
    (out / paths[2]).write_bytes(b"short")
    (out / "stray.bin").write_bytes(b"x")
    (out / paths[3]).unlink()
    (out / paths[3]).symlink_to("/etc/passwd")
    proc = run_cli("verify", str(out), "--json")
    assert proc.returncode == 1
    found = [json.loads(line) for line in proc.stdout.splitlines()]
    kinds = {(f["kind"], f["path"]) for f in found[:-1]}
    assert kinds == {("changed", paths[0]), ("missing", paths[1]), ("changed", paths[2]),
                     ("changed", paths[3]), ("unexpected", "stray.bin")}
    sha = hashlib.sha256(same_size.read_bytes()).hexdigest()
    assert any(f["detail"].startswith(f"sha256 {sha}") for f in found)
    assert found[-1] == {"kind": "summary", "checked": 6, "bytes": found[-1]["bytes"],
                         "missing": 1, "changed": 3, "unexpected": 1, "ok": False}
    assert f"changed: {paths[3]}: " in proc.stderr and "symlink; not followed" in proc.stderr


def test_verify_checks_every_shard_and_waits_for_no_run(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{3000 + n}") for n in range(8)]
    src = write_list(tmp_path / "u", urls)
    out = tmp_path / "out"
    for i in range(2):
        assert run_cli(str(src), "-o", str(out), "--shard", f"{i}/2").returncode == 0
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0 and "8 files checked" in proc.stderr
    with hold(out / ".bulkfetch" / "shards" / "1-of-2" / "lock"):
        proc = run_cli("verify", str(out))
    assert proc.returncode == 75 and "verify once it is over" in proc.stderr
    # A shard that left nothing: what it fetched cannot be checked, and verify says so.
    shutil.rmtree(out / ".bulkfetch" / "shards" / "0-of-2")
    proc = run_cli("verify", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "missing: .bulkfetch/shards/0-of-2/: a shard of the run left nothing here" \
        in proc.stderr, proc.stderr


def test_verify_says_what_a_bucket_can_be_checked_by(tmp_path: Path) -> None:
    proc = run_cli("verify", "s3://bucket/prefix")
    assert proc.returncode == 2 and "x-amz-meta-sha256" in proc.stderr


def test_verify_shows_a_bar_on_a_terminal(server: Server, tmp_path: Path) -> None:
    out, _ = _saved(server, tmp_path)
    master, slave = os.openpty()
    try:
        proc = subprocess.run(bulkfetch_cmd("verify", str(out)), stderr=slave,
                              env={**cli_env(), "COLUMNS": "80"}, timeout=60)
        os.close(slave)
        shown = b""
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                break
            if not chunk:
                break
            shown += chunk
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"all match" in shown and b"\x1b[" in shown  # drawn (and cleared) by rich


# report


def test_report_for_a_plain_run_has_a_table_by_host(server: Server, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{n}") for n in range(1, 6)] + [
        server.url_on("127.0.0.2", "/status/404"), server.url_on("127.0.0.2", "/status/404?b"),
        server.url_on("127.0.0.3", "/bytes/7?delay=0.3")]
    out = tmp_path / "out"
    run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(out), "--retries", "0")
    proc = run_cli("report", str(out), "--json")
    assert proc.returncode == 1  # something failed
    assert "run: finished" in proc.stderr
    data = json.loads(proc.stdout)
    hosts = {row["host"]: row for row in data["hosts"]}
    port = server.port
    assert data["hosts"][0]["host"] == f"127.0.0.2:{port}"  # failures first
    assert hosts[f"127.0.0.2:{port}"] | {"median_s": 0} == {
        "host": f"127.0.0.2:{port}", "ok": 0, "failed": 2, "not_modified": 0,
        "interrupted": 0, "bytes": 0, "median_s": 0, "top_error": "HTTP 404 Not Found",
        "top_error_count": 2}
    assert hosts[f"127.0.0.1:{port}"]["ok"] == 5 and hosts[f"127.0.0.1:{port}"]["bytes"] == 15
    assert hosts[f"127.0.0.3:{port}"]["median_s"] >= 0.3
    table = [line for line in proc.stderr.splitlines() if "HTTP 404 Not Found (x2)" in line]
    assert len(table) == 1 and f"127.0.0.2:{port}" in table[0]


# Words at the edges.


@pytest.mark.parametrize(("args", "said"), [
    (["--shard", "1/0"], "--shard '1/0': the count must be at least 1"),
    (["--cookies", "/nonexistent/cookies.txt"],
     "--cookies '/nonexistent/cookies.txt': No such file or directory"),
])
def test_bad_settings_in_words(tmp_path: Path, args: list[str], said: str) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), "-o",
                   str(tmp_path / "out"), *args)
    assert proc.returncode == 2 and said in proc.stderr, proc.stderr
    assert "Errno" not in proc.stderr


def test_netrc_asked_for_and_missing_is_said(tmp_path: Path) -> None:
    proc = subprocess.run(
        bulkfetch_cmd(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), "-o",
                      str(tmp_path / "out"), "--netrc"),
        capture_output=True, text=True, timeout=60,
        env={**cli_env(), "NETRC": str(tmp_path / "none")})
    assert proc.returncode == 2
    assert "--netrc: " in proc.stderr and "no such file (set NETRC=FILE" in proc.stderr


def test_a_dead_proxy_is_named_as_the_proxy(tmp_path: Path) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/x"])), "-o",
                   str(tmp_path / "out"), "--proxy", "http://127.0.0.1:8998", "--retries", "0")
    row = read_manifest(tmp_path / "out" / MANIFEST)["http://127.0.0.1:9/x"]
    assert row["error"].startswith("cannot connect to the proxy 127.0.0.1:8998: ")
    assert proc.returncode == 1


def test_one_url_is_one_url(server: Server, tmp_path: Path) -> None:
    """`1 URL cut off`, not `1 URLs`."""
    from bulkfetch.errors import Interrupted
    from bulkfetch.models import Summary

    summary = Summary(ok=0, failed=0, not_modified=0, skipped=0, bytes=0, elapsed_s=1.0,
                      interrupted_by=2, interrupted=1)
    assert str(Interrupted(summary)) == "interrupted by SIGINT: 1 URL cut off"


def test_a_shard_without_urls_says_so(tmp_path: Path) -> None:
    src = write_list(tmp_path / "u", ["http://127.0.0.1:9/only"])
    said = []
    for i in range(2):
        proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--shard", f"{i}/2",
                       "--retries", "0")
        said.append(proc.stderr)
    assert any("no URLs for shard" in s and "went to another shard" in s for s in said)


def test_help_says_how_to_force_a_file_or_a_url() -> None:
    proc = subprocess.run(bulkfetch_cmd("--help"), capture_output=True, text=True,
                          env={**cli_env(), "COLUMNS": "200"}, timeout=60)
    flat = " ".join(proc.stdout.split())
    assert "./NAME is always a file" in flat and "echo URL | bulkfetch -" in flat
    assert sys.executable  # the CLI ran under this interpreter


# --content-disposition


def test_content_disposition_names_the_file(server: Server, tmp_path: Path) -> None:
    """filename* first (RFC 6266), only the last segment, made safe, in the host's folder with
    the URL's tag; a NAME keeps its NAME; off by default."""
    from urllib.parse import quote

    def named(value: str) -> str:
        return server.url(f"/named?cd={quote(value)}")

    plain = named('attachment; filename="report 2026.pdf"')
    starred = named("attachment; filename=\"fallback.txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf")
    escaping = named('attachment; filename="../../etc/passwd"')
    hidden = named('attachment; filename="\u202egpj.exe"')
    kept = named('attachment; filename="ignored.bin"')
    lines = [plain, starred, escaping, hidden, f"{kept}  mine/kept.bin"]
    proc = run_cli(str(write_list(tmp_path / "u", lines)), "-o", str(tmp_path / "out"),
                   "--content-disposition")
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    folder = f"127.0.0.1_{server.port}/"
    assert rows[plain]["path"].startswith(folder + "report 2026-")
    assert rows[plain]["path"].endswith(".pdf")
    assert rows[starred]["path"].startswith(folder + "résumé-")
    assert rows[escaping]["path"].startswith(folder + "passwd-")
    assert "\u202e" not in rows[hidden]["path"] and rows[hidden]["path"].startswith(folder)
    assert rows[kept]["path"] == "mine/kept.bin"
    for row in rows.values():
        assert (tmp_path / "out" / row["path"]).is_file()
    assert run_cli("verify", str(tmp_path / "out")).returncode == 0
    # Again: each renamed file is this URL's, revalidated (the server's 200 here, as it sends
    # no validators) or, with --skip-existing, skipped; never fetched as a stranger.
    again = run_cli(str(tmp_path / "u"), "-o", str(tmp_path / "out"), "--content-disposition",
                    "--skip-existing")
    assert again.returncode == 0, again.stderr
    assert {r["status"] for r in read_manifest(tmp_path / "out" / MANIFEST).values()} == {
        "skipped"}
    # The same URLs without the option: the URL's own name.
    proc = run_cli(str(write_list(tmp_path / "v", [plain])), "-o", str(tmp_path / "off"))
    path = read_manifest(tmp_path / "off" / MANIFEST)[plain]["path"]
    assert path.startswith(folder + "named-")


def test_remote_time_dates_the_file_by_last_modified(server: Server, tmp_path: Path) -> None:
    """-R: the origin's Last-Modified (here Sun, 01 Nov 2026 00:00:00 GMT); off by default,
    the file is dated when it arrived. A big body (kept as a partial) the same."""
    import time
    from email.utils import parsedate_to_datetime

    small, big = server.url("/ranged/dated?size=1000"), server.url("/ranged/dated?size=3000000")
    origin = parsedate_to_datetime("Sun, 01 Nov 2026 00:00:00 GMT").timestamp()
    proc = run_cli(str(write_list(tmp_path / "u", [small, big])), "-o", str(tmp_path / "on"),
                   "-R")
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(tmp_path / "on" / MANIFEST)
    for url in (small, big):
        assert (tmp_path / "on" / rows[url]["path"]).stat().st_mtime == origin
    before = time.time() - 5
    run_cli(str(write_list(tmp_path / "v", [small])), "-o", str(tmp_path / "off"))
    path = read_manifest(tmp_path / "off" / MANIFEST)[small]["path"]
    assert (tmp_path / "off" / path).stat().st_mtime > before


# verify and report against what a hostile neighbour or a surprised user leaves in OUT.


def test_verify_meets_odd_files_without_a_traceback_or_a_hang(
    server: Server, tmp_path: Path
) -> None:
    """A file name that is not UTF-8 (unexpected, escaped), a FIFO planted at a saved file's
    name (changed, never opened to block), a state row naming a path outside OUT (not read)."""
    import contextlib
    import sqlite3

    out, rows = _saved(server, tmp_path)
    paths = [row["path"] for row in rows.values()]
    folder = (out / paths[0]).parent
    (folder / "bad\udcffname").write_bytes(b"x")
    (out / paths[1]).unlink()
    os.mkfifo(out / paths[1])
    (tmp_path / "secret.txt").write_bytes(b"s3cret")
    with contextlib.closing(sqlite3.connect(out / ".bulkfetch" / "state.sqlite")) as db, db:
        db.execute("INSERT INTO saved VALUES (x'00', 'u', '../secret.txt', 6, 'ab', NULL, NULL,"
                   " 0)")
    proc = run_cli("verify", str(out), "--json", timeout=30)
    assert proc.returncode == 1
    found = {(f["kind"], f["path"]): f["detail"] for f in map(json.loads,
                                                              proc.stdout.splitlines()[:-1])}
    assert ("unexpected", f"{paths[0].rsplit('/', 1)[0]}/bad\\xffname") in found
    assert "not a plain file" in found[("changed", paths[1])]
    assert found[("changed", "../secret.txt")] == "the state names a path outside OUT; not read"


def test_verify_takes_the_newest_file_of_a_reused_name(server: Server, tmp_path: Path) -> None:
    """NAME given to one URL, then to another: the file is the second's, and it matches."""
    out = tmp_path / "out"
    for n in (1, 2):
        src = write_list(tmp_path / f"l{n}", [f"{server.url(f'/bytes/{700 + n}')}  same.bin"])
        assert run_cli(str(src), "-o", str(out)).returncode == 0
    proc = run_cli("verify", str(out))
    assert proc.returncode == 0, proc.stderr


def test_a_manifest_put_inside_out_is_known(server: Server, tmp_path: Path) -> None:
    out = tmp_path / "out"
    src = write_list(tmp_path / "u", [server.url("/bytes/77"), server.url("/status/404")])
    run_cli(str(src), "-o", str(out), "--manifest", str(out / "run.jsonl"), "--retries", "0")
    assert run_cli("verify", str(out)).returncode == 0
    proc = run_cli("report", str(out))
    assert proc.returncode == 1 and "1 ok, 1 failed" in proc.stderr


def test_verify_refuses_a_linked_state_folder(server: Server, tmp_path: Path) -> None:
    out, _ = _saved(server, tmp_path)
    (out / ".bulkfetch").rename(tmp_path / "elsewhere")
    (out / ".bulkfetch").symlink_to(tmp_path / "elsewhere")
    proc = run_cli("verify", str(out))
    assert proc.returncode == 2 and "not followed" in proc.stderr
    proc = run_cli("report", str(out))
    assert proc.returncode == 2 and "not followed" in proc.stderr


def test_report_passes_over_lines_that_are_no_result(server: Server, tmp_path: Path) -> None:
    out, _ = _saved(server, tmp_path, count=2)
    with (out / MANIFEST).open("a") as f:
        f.write('{"status": "ok", "bytes": "lots", "url": "http://x/"}\n[1, 2]\n"text"\n')
    proc = run_cli("report", str(out))
    assert proc.returncode == 0 and "2 ok, 0 failed" in proc.stderr


def test_a_password_with_a_space_is_masked(server: Server, tmp_path: Path) -> None:
    url = server.url("/bytes/78").replace("http://", "http://alice:s3cr etI@")
    proc = run_cli(url, "-o", str(tmp_path / "out"), "-v")
    assert "s3cr etI" not in proc.stderr
    assert "s3cr etI" not in (tmp_path / "out" / MANIFEST).read_text()
