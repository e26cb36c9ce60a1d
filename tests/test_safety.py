"""A hostile neighbour on a shared OUT: another local user who can write OUT plants symlinks
and swaps folders, at rest and mid-run. bulkfetch never writes through them: the victim's
file stays as it was, nothing appears outside OUT, and what is refused is said in one line.

When the tests run as root, the neighbour really is another user (`nobody`, in a child
process); otherwise it is this user, which tests the same opens."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bulkfetch.store.layout import url_key
from tests.helpers import (
    MANIFEST,
    bulkfetch_cmd,
    cli_env,
    read_manifest,
    run_cli,
    wait_for,
    write_list,
)
from tests.server import Server

NOBODY = 65534
PRECIOUS = b"the victim's own bytes\n"
BIG = 5 * 1024 * 1024  # over RESUMABLE_BYTES: the body goes through .bulkfetch/partial/


@pytest.fixture
def shared() -> Iterator[Path]:
    """A world-writable folder outside pytest's private tmp (which `nobody` cannot enter),
    holding OUT and a victim file of ours that `nobody` cannot write."""
    root = Path(tempfile.mkdtemp(prefix="bulkfetch-shared-"))
    root.chmod(0o777)
    (root / "victim").write_bytes(PRECIOUS)
    (root / "out").mkdir(mode=0o777)
    (root / "out").chmod(0o777)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def neighbour(code: str) -> None:
    """Run `code` (Python, with `os` and `Path` at hand) as the other user, in a forked child
    (the interpreter's own files may not be readable by `nobody`)."""
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code_ = 1
        try:
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(NOBODY)
                os.setuid(NOBODY)
            exec(code, {"os": os, "Path": Path})
            code_ = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code_)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the neighbour's step failed"


def intact(shared: Path) -> None:
    assert (shared / "victim").read_bytes() == PRECIOUS
    assert not (shared / "victim").is_symlink()


def partial_names(url: str) -> tuple[str, str]:
    key = url_key(url).hex()
    return f"{key}.part", f"{key}.json"


def test_a_partial_planted_as_a_symlink_is_not_written_through(
    server: Server, shared: Path
) -> None:
    """Fresh start: the link at the partial's name is removed, not followed; the body lands
    as a plain file of its own."""
    url = server.url(f"/ranged/planted?size={BIG}")
    part, _ = partial_names(url)
    out = shared / "out"
    neighbour(f"d = Path({str(out)!r}) / '.bulkfetch' / 'partial'\n"
              "d.mkdir(parents=True, mode=0o777); d.parent.chmod(0o777); d.chmod(0o777)\n"
              f"(d / {part!r}).symlink_to({str(shared / 'victim')!r})")
    proc = run_cli(str(write_list(shared / "u", [url])), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    intact(shared)
    (row,) = read_manifest(out / MANIFEST).values()
    assert row["status"] == "ok" and row["bytes"] == BIG
    saved = out / row["path"]
    assert not saved.is_symlink() and saved.stat().st_size == BIG


def test_a_planted_resume_cannot_append_to_another_file(server: Server, shared: Path) -> None:
    """A planted meta file that names the right key and validator, beside a link to the
    victim: the link is no kept body, so the body starts over, and the victim is untouched."""
    url = server.url(f"/ranged/appended?size={BIG}")
    etag = f'"{hashlib.sha256(server.ranged_body("appended", BIG)).hexdigest()[:16]}"'
    part, meta = partial_names(url)
    out = shared / "out"
    planted = orjson.dumps({"key": url_key(url).hex(), "validator": etag, "total": BIG})
    neighbour(f"d = Path({str(out)!r}) / '.bulkfetch' / 'partial'\n"
              "d.mkdir(parents=True, mode=0o777); d.parent.chmod(0o777); d.chmod(0o777)\n"
              f"(d / {meta!r}).write_bytes({planted!r})\n"
              f"(d / {part!r}).symlink_to({str(shared / 'victim')!r})")
    server.reset()
    proc = run_cli(str(write_list(shared / "u", [url])), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    intact(shared)
    assert all("Range" not in h for h in server.stats.headers)  # nothing was resumed
    (row,) = read_manifest(out / MANIFEST).values()
    assert row["status"] == "ok" and not (out / row["path"]).is_symlink()


@pytest.mark.parametrize("name", ["lock", "manifest.jsonl", "state.sqlite"])
def test_a_link_at_one_of_our_own_files_is_refused_in_one_line(
    server: Server, shared: Path, name: str
) -> None:
    """The lock (truncated to a pid before), the manifest (a dangling link made a file
    outside OUT), the state: exit 2, one line, the victim and the outside untouched."""
    out = shared / "out"
    target = shared / "victim" if name != "manifest.jsonl" else shared / "outside.jsonl"
    neighbour(f"d = Path({str(out)!r}) / '.bulkfetch'\nd.mkdir(mode=0o777); d.chmod(0o777)\n"
              f"(d / {name!r}).symlink_to({str(target)!r})")
    proc = run_cli(str(write_list(shared / "u", [server.url("/bytes/10")])), "-o", str(out))
    assert proc.returncode == 2, proc.stderr
    (line,) = proc.stderr.splitlines()
    assert line.startswith("bulkfetch: error: ") and "symlink" in line, line
    intact(shared)
    assert not (shared / "outside.jsonl").exists()
    assert server.stats.paths == []


def test_a_fifo_at_the_manifests_name_is_refused(server: Server, shared: Path) -> None:
    """A FIFO planted there held the run forever (no reader)."""
    neighbour(f"d = Path({str(shared / 'out')!r}) / '.bulkfetch'\nd.mkdir(mode=0o777)\n"
              "os.mkfifo(d / 'manifest.jsonl')")
    proc = run_cli(str(write_list(shared / "u", [server.url("/bytes/10")])),
                   "-o", str(shared / "out"), timeout=20)
    assert proc.returncode == 2 and "not a plain file" in proc.stderr, proc.stderr


def test_bulkfetchs_own_folder_as_a_symlink_is_refused(server: Server, shared: Path) -> None:
    elsewhere = shared / "elsewhere"
    neighbour(f"Path({str(elsewhere)!r}).mkdir(mode=0o777)\n"
              f"(Path({str(shared / 'out')!r}) / '.bulkfetch').symlink_to({str(elsewhere)!r})")
    proc = run_cli(str(write_list(shared / "u", [server.url("/bytes/10")])),
                   "-o", str(shared / "out"))
    assert proc.returncode == 2 and "'.bulkfetch'" in proc.stderr, proc.stderr
    assert list(elsewhere.iterdir()) == []


def test_a_summary_temp_planted_as_a_link_is_refused(server: Server, shared: Path) -> None:
    neighbour(f"Path({str(shared / '.summary.json.part')!r})"
              f".symlink_to({str(shared / 'victim')!r})")
    proc = run_cli(str(write_list(shared / "u", [server.url("/bytes/10")])),
                   "-o", str(shared / "out"), "--summary-json", str(shared / "summary.json"))
    assert proc.returncode == 2 and "--summary-json" in proc.stderr, proc.stderr
    intact(shared)


def test_a_folder_swapped_for_a_link_mid_run_is_not_followed(
    server: Server, shared: Path
) -> None:
    """Bodies in flight when their folder becomes a link to elsewhere: they fail, saying so;
    nothing lands elsewhere, and no temp file is left in the folder moved aside."""
    out, elsewhere = shared / "out", shared / "elsewhere"
    stalled = [server.url(f"/stall/3?before={600 * 1024}&i={i}") for i in range(3)]
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(shared / "u", stalled)), "-o", str(out), "-c", "4"),
        stderr=subprocess.PIPE, text=True, env=cli_env())
    host = out / f"127.0.0.1_{server.port}"
    wait_for(lambda: len(list(host.glob(".bulkfetch-*.part"))) == 3)
    neighbour(f"out = Path({str(out)!r})\n"
              f"Path({str(elsewhere)!r}).mkdir(mode=0o777)\n"
              f"os.rename(out / {host.name!r}, out / 'moved')\n"
              f"(out / {host.name!r}).symlink_to({str(elsewhere)!r})")
    started = time.monotonic()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 1, stderr
    assert time.monotonic() - started < 30
    assert list(elsewhere.iterdir()) == []
    assert list((out / "moved").iterdir()) == []
    rows = read_manifest(out / MANIFEST)
    for url in stalled:
        assert rows[url]["status"] == "failed" and "not followed" in rows[url]["error"]


def test_secrets_in_argv_are_hidden_from_ps(server: Server, tmp_path: Path) -> None:
    """-u, -H and --proxy values (and --user=...), and the password of a URL given as a
    SOURCE, are overwritten where `ps` reads them, in the parent and in its workers."""
    secret = "argv-S3CRET"
    stall = server.url("/stall/2?before=1000")
    with_password = server.url("/bytes/3").replace("http://", f"http://bob:{secret}@")
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "u", [stall])), with_password,
                      "-o", str(tmp_path / "out"),
                      "-u", f"bob:{secret}", "-H", f"X-Token: {secret}", f"-HX-B:{secret}",
                      f"--user-agent={secret}-is-no-secret", "-w", "2"),
        stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        wait_for(lambda: server.stats.count("/stall/2") == 1)
        pids = [proc.pid, *map(int, Path(f"/proc/{proc.pid}/task/{proc.pid}/children")
                               .read_text().split())]
        assert len(pids) == 3  # the parent and two workers
        for pid in pids:
            shown = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
            assert secret.encode() not in shown.replace(b"argv-S3CRET-is-no-secret", b"")
            assert b"-u " + b"*" * len(f"bob:{secret}") in shown
            assert b"http://bob:" + b"*" * len(secret) + b"@127.0.0.1:" in shown
    finally:
        proc.communicate(timeout=30)
    assert proc.returncode == 0


def test_a_dangling_link_at_runs_neither_crashes_nor_leads_out(
    server: Server, shared: Path
) -> None:
    """.bulkfetch/runs/ (where the last manifest is kept) planted as a dangling link: the run
    goes on (exit 70 before), and nothing is made where the link points."""
    out, nowhere = shared / "out", shared / "nowhere"
    neighbour(f"d = Path({str(out)!r}) / '.bulkfetch'\nd.mkdir(mode=0o777)\n"
              f"(d / 'runs').symlink_to({str(nowhere)!r})")
    src = write_list(shared / "u", [server.url("/bytes/10")])
    for _ in range(2):  # the second run has a manifest to keep
        proc = run_cli(str(src), "-o", str(out))
        assert proc.returncode == 0, proc.stderr
    assert not nowhere.exists()


def test_a_kept_partial_holds_no_password(server: Server, tmp_path: Path) -> None:
    """A big body cut by SIGTERM is kept for resume: its metadata names the URL masked."""
    secret = "partial-PW"
    url = server.url(f"/ranged/kept-pw?size={BIG}&rate={1024 * 1024}").replace(
        "http://", f"http://eve:{secret}@")
    out = tmp_path / "out"
    proc = subprocess.Popen(bulkfetch_cmd(str(write_list(tmp_path / "u", [url])), "-o",
                                          str(out)), stderr=subprocess.PIPE, env=cli_env())
    partial = out / ".bulkfetch" / "partial"
    wait_for(lambda: len(list(partial.glob("*.json"))) == 1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    kept = b"".join(p.read_bytes() for p in partial.iterdir())
    assert kept and secret.encode() not in kept and b"eve:***@" in kept
