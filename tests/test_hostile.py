"""Bytes from a hostile origin are data, never a crash: a reason phrase, a Content-Type, an
ETag, a Last-Modified or a Location that is not UTF-8 ends up escaped (losslessly) in the
manifest and the state, shown escaped, and the rest of the list is fetched; with workers or
without. A bug in the pipe reader ends the run in words, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulkfetch.models import Attempt, Job, SafeRelPath, Ticket
from bulkfetch.schedule import wire
from bulkfetch.schedule.workers import ProcessExecutor, WorkerBug, _Child
from bulkfetch.show.events import NullObserver
from tests.helpers import MANIFEST, read_manifest, run_cli, write_list
from tests.hostile_server import HostileServer
from tests.server import Server

WIRE_PATHS = ["/reason", "/ctype", "/etag", "/modified", "/location"]


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    server = HostileServer().start()
    yield server
    server.stop()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_bytes_on_the_wire_are_data(
    hostile: HostileServer, server: Server, tmp_path: Path, workers: str
) -> None:
    urls = [hostile.url(p) for p in WIRE_PATHS] + [server.url(f"/bytes/{n}") for n in range(30)]
    out = tmp_path / "out"
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(out), "-w", workers, "-v",
                   timeout=60)
    assert proc.returncode == 1, proc.stderr  # the 404 alone failed
    rows = read_manifest(out / MANIFEST)
    assert set(rows) == set(urls)
    assert rows[hostile.url("/reason")]["error"] == "HTTP 404 Not\\xff\\xfe Found"
    assert rows[hostile.url("/ctype")]["content_type"] == "text/\\xff\\xfeplain"
    assert rows[hostile.url("/location")]["final_url"] == hostile.url("/ctype?%FF%FE")
    assert "GET /ctype?%FF%FE HTTP/1.1" in hostile.seen  # the very bytes, escaped as a URL
    assert sum(r["status"] == "ok" for r in rows.values()) == len(urls) - 1
    assert "Not\\xff\\xfe Found" in proc.stderr
    with contextlib.closing(sqlite3.connect(out / ".bulkfetch" / "state.sqlite")) as db:
        kept = dict(db.execute("SELECT url, etag FROM saved"))
    assert len(kept) == len(urls) - 1  # every ok row, none lost with the batch
    assert kept[hostile.url("/etag")] == '"\\xff\\xfe"'


def test_a_hostile_content_disposition_reaches_no_terminal(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """Parsed without aiohttp's warning (which printed the header raw); a name of escapes and
    undecodable bytes made safe, or none at all."""
    urls = [hostile.url("/disposition"), hostile.url("/disposition2")]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--content-disposition", "-v")
    assert proc.returncode == 0, proc.stderr
    assert "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "Warning" not in proc.stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    for row in rows.values():
        assert row["path"].isprintable() and (tmp_path / "out" / row["path"]).is_file()
    assert rows[urls[1]]["path"].split("/")[-1].startswith("\ufffd_[2J-")  # replaced, escaped


def test_a_second_run_over_escaped_validators_fetches_again(
    hostile: HostileServer, tmp_path: Path
) -> None:
    """Sent back escaped, a validator that was not UTF-8 matches nothing: fetched again,
    never wrongly kept."""
    src = write_list(tmp_path / "u", [hostile.url("/etag"), hostile.url("/modified")])
    for _ in range(2):
        proc = run_cli(str(src), "-o", str(tmp_path / "out"))
        assert proc.returncode == 0, proc.stderr
    assert {r["status"] for r in read_manifest(tmp_path / "out" / MANIFEST).values()} == {"ok"}


def test_a_bug_in_the_pipe_reader_ends_the_run() -> None:
    """The loop would only log what a reader callback raises: the run is cancelled with the
    bug as its error instead of waiting forever for rows."""
    class Broken:
        def ended(self, ticket: Ticket) -> None: ...

        def settle(self, ticket: Ticket, attempt: Attempt) -> None:
            raise ValueError("a bug")

    async def main() -> ProcessExecutor:
        up, writer = os.pipe()
        child = _Child(pid=0, down=-1, up=up, credit=1)
        ticket = Ticket(5, Job("u:1", "http://h/x", SafeRelPath("h/x")))
        child.running[5] = ticket
        executor = ProcessExecutor([child], Broken(), NullObserver())  # type: ignore[arg-type]
        os.write(writer, b"".join(wire.frame([wire.settled(5, Attempt(http_status=200))])))
        try:
            executor.on_readable(child)
            await asyncio.sleep(1)
        finally:
            os.close(up)
            os.close(writer)
        raise AssertionError("not cancelled")

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(main())


def test_the_pipe_readers_bug_is_kept_with_its_traceback() -> None:
    async def main() -> WorkerBug | None:
        executor = ProcessExecutor([], None, NullObserver())  # type: ignore[arg-type]
        executor._main = None  # nothing to cancel here
        executor._broke(ValueError("a bug"))
        failure = executor.failure
        return failure if isinstance(failure, WorkerBug) else None

    failure = asyncio.run(main())
    assert failure is not None and "ValueError: a bug" in str(failure)
    assert "Traceback" not in str(failure) and failure.__notes__
