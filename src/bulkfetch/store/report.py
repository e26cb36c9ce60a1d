"""`bulkfetch report OUT`: one summary of the run (or all the shards) that wrote into OUT,
and a table by host.

A plain run: its manifest and its lock (held while it runs). Shards: every
`.bulkfetch/shards/I-of-N/` folder: its done marker (written only when the shard finished),
its lock, and its manifest (the truth about each URL, complete or not). A shard with no folder
is missing; one without a marker is unfinished.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import orjson

from bulkfetch.errors import UsageError
from bulkfetch.models import Shard, Status
from bulkfetch.show import hosts
from bulkfetch.show.hosts import HostRow, Hosts
from bulkfetch.show.outgoing import mask
from bulkfetch.show.tally import Tally
from bulkfetch.store.folder import NoRun, run_homes
from bulkfetch.store.layout import SHARD_NAME, Layout, shard_homes
from bulkfetch.store.state import manifest_of, read_only

FAILURES_SHOWN = 10
HOSTS_SHOWN = 20


class Totals(Tally):
    """The shards' results counted, and the first failures."""

    __slots__ = ("failures",)

    def __init__(self) -> None:
        super().__init__()
        self.failures: list[str] = []


@dataclass(frozen=True, slots=True)
class Report:
    out: Path
    count: int  # shards; 0 for a plain run
    done: tuple[str, ...]
    running: tuple[str, ...]
    unfinished: tuple[str, ...]  # no marker and not running: stopped or died
    missing: tuple[str, ...]
    totals: Totals
    hosts: tuple[HostRow, ...] = ()

    @property
    def complete(self) -> bool:
        if not self.count:  # a plain run: over, and not stopped before the lists' end
            return not self.running and not self.totals.counts[Status.INTERRUPTED]
        return not (self.running or self.unfinished or self.missing)

    @property
    def ok(self) -> bool:
        return self.complete and not self.totals.counts[Status.FAILED]


def gather(out: Path) -> Report:
    try:
        run_homes(out)  # a link planted at .bulkfetch/ is refused, as a run refuses it
    except NoRun:
        pass  # said below, with what else is missing
    except OSError as exc:
        raise UsageError(f"{str(out)!r}: {exc.strerror or exc}") from exc
    found: dict[int, Path] = {}
    counts = set()
    for home in shard_homes(out):
        if (match := SHARD_NAME.fullmatch(home.name)) is not None:
            found[int(match[1])] = home
            counts.add(int(match[2]))
    if not found:
        return _plain(out)
    if len(counts) > 1:
        raise UsageError(f"{str(out)!r}: shards of different counts ({sorted(counts)}): runs "
                         "with another N left their folders; remove those first")
    (count,) = counts
    totals, by_host = Totals(), Hosts()
    state: dict[str, list[str]] = {"done": [], "running": [], "unfinished": []}
    for _, home in sorted(found.items()):
        layout = Layout(home)
        if layout.done.exists():
            state["done"].append(home.name)
        else:
            state["running" if _held(layout.lock) else "unfinished"].append(home.name)
        _add(layout.manifest, totals, by_host)
    missing = tuple(Shard(i, count).name for i in range(count) if i not in found)
    return Report(out, count, tuple(state["done"]), tuple(state["running"]),
                  tuple(state["unfinished"]), missing, totals, tuple(by_host.rows()))


def _plain(out: Path) -> Report:
    """A run without shards: its manifest (the latest run's), and whether it still runs."""
    layout = Layout.of(out, None)
    manifest = layout.manifest if layout.manifest.is_file() else _manifest_elsewhere(layout)
    if manifest is None:
        raise UsageError(f"{str(out)!r}: no run here (no .bulkfetch/manifest.jsonl, and no "
                         "shards)")
    totals, by_host = Totals(), Hosts()
    _add(manifest, totals, by_host)
    running = ("run",) if _held(layout.lock) else ()
    return Report(out, 0, (), running, (), (), totals, tuple(by_host.rows()))


def _manifest_elsewhere(layout: Layout) -> Path | None:
    """The last run's --manifest, as its state remembers it."""
    if not layout.state.is_file():
        return None
    try:
        with contextlib.closing(read_only(layout.state)) as db:
            found = manifest_of(db)
    except sqlite3.Error:
        return None
    return Path(found) if found is not None and Path(found).is_file() else None


def as_json(report: Report) -> bytes:
    t = report.totals
    data = {
        "out": str(report.out), "count": report.count, "complete": report.complete,
        "ok": report.ok, "done": report.done, "running": report.running,
        "unfinished": report.unfinished, "missing": report.missing,
        "counts": {str(status): n for status, n in t.counts.items()},
        "bytes": t.bytes, "failures": t.failures,
        "hosts": [dataclasses.asdict(row) for row in report.hosts],
    }
    return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)


def lines(report: Report, *, hosts_shown: int = HOSTS_SHOWN) -> list[str]:
    t = report.totals
    counts = t.counts
    head = [
        f"{counts[Status.OK]:,} ok, {counts[Status.FAILED]:,} failed, "
        f"{counts[Status.NOT_MODIFIED]:,} not modified, {counts[Status.SKIPPED]:,} skipped, "
        f"{counts[Status.INTERRUPTED]:,} interrupted; {t.bytes:,} bytes saved",
        *(f"failed: {line}" for line in t.failures),
    ]
    table = ["by host:", *(f"  {row}" for row in hosts.table(list(report.hosts),
                                                             limit=hosts_shown))]
    if not report.count:
        state = ("running (its lock is held)" if report.running
                 else "stopped before the lists' end" if counts[Status.INTERRUPTED]
                 else "finished")
        return [f"run: {state}", *head, *table]
    shards = [f"{len(report.done)} done"]
    for what, names in (("running", report.running), ("unfinished", report.unfinished),
                        ("missing", report.missing)):
        if names:
            shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
            shards.append(f"{len(names)} {what} ({shown})")
    return [
        f"{report.count} shards: {', '.join(shards)}",
        *head,
        *table,
        "complete: every shard finished" if report.complete else "incomplete",
    ]


def _add(manifest: Path, totals: Totals, by_host: Hosts) -> None:
    """Every line of a manifest counted; a line that is no Result (cut by a crash, edited)
    is passed over. Opened plainly, never through a link."""
    try:
        fd = os.open(manifest, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UsageError(f"{str(manifest)!r}: cannot read: {exc.strerror or exc}") from exc
    with open(fd, "rb") as f:
        for raw in f:
            try:
                row = orjson.loads(raw)
                status = Status(row["status"])
                size, elapsed = int(row.get("bytes") or 0), float(row.get("elapsed") or 0.0)
                url, error = str(row.get("url") or ""), row.get("error")
            except (orjson.JSONDecodeError, TypeError, ValueError, KeyError, AttributeError):
                continue
            totals.add(status, size)
            by_host.add(url, status, size, elapsed, error if isinstance(error, str) else None)
            if status is Status.FAILED and len(totals.failures) < FAILURES_SHOWN:
                totals.failures.append(mask(f"{url}: {error}"))


def _held(lock: Path) -> bool:
    """Whether a running shard holds this lock (on this machine, or over NFS with its locks)."""
    try:
        fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
