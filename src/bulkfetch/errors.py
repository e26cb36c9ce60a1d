"""Every error bulkfetch reports to its user, each owning its exit code (click's pattern):
`cli.main` has one `except BulkfetchError` that prints `bulkfetch: error: LINE` and returns
`exit_code`. Anything else that escapes is a bug: its traceback, and EXIT_INTERNAL.

    BulkfetchError                    1   the run went wrong
      ├─ UsageError                   2   a bad option, list or file; nothing was fetched
      │    ├─ SettingsError           2   a certificate, key, proxy, netrc or cookies file
      │    └─ SourceError             2   a list broke off; what was open still finished
      ├─ WorkerFailed                 1   every worker process died (OOM killer, kill -9)
      ├─ RecordFailed                 1   the manifest or the state could not be written
                                          (a full disk): the run stopped taking new URLs
      └─ LockedOut                   75   another run holds --out (EX_TEMPFAIL: try later)

A run that ends by itself exits 0 (all fine) or 1 (something failed); after signal N,
128 + N. Failures of single URLs are results in the manifest, never exceptions.

`bulkfetch.fetch()` stopped by a signal raises, after the same clean stop, what a script
cannot ignore by accident, with the run's Summary on it: `Interrupted` (a KeyboardInterrupt)
for SIGINT, `Terminated` (a SystemExit with code 128 + N) for SIGTERM and SIGHUP.
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from bulkfetch.models import Summary

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 70  # EX_SOFTWARE: a bug
EXIT_LOCKED = 75  # EX_TEMPFAIL
EXIT_SIGNAL_BASE = 128


class BulkfetchError(Exception):
    """One line for the user (the message) and the exit code the class owns."""

    exit_code: ClassVar[int] = EXIT_FAILED
    hint: ClassVar[str] = ""

    def line(self) -> str:
        return f"error: {self}{self.hint}"


class UsageError(BulkfetchError):
    """A bad option or source, found before any request."""

    exit_code = EXIT_USAGE


class SettingsError(UsageError):
    """A certificate, key, proxy, netrc or cookies setting that cannot be used."""


class SourceError(UsageError):
    """A source could not be read to its end; what was already open still finished."""

    hint = " (the manifest lists what finished)"


class WorkerFailed(BulkfetchError):
    """Every worker process died: not a bug, so one line and exit 1."""


class RecordFailed(BulkfetchError):
    """The manifest or the state could not be written (a full disk, a quota): the run stopped
    taking new URLs. What finished is on disk, and the state never claims more."""

    hint = ("; the run stopped taking new URLs (what finished is saved; run again when there "
            "is room)")


class Interrupted(KeyboardInterrupt):
    """`fetch()` was stopped by SIGINT (Ctrl-C) and stopped cleanly; `summary` says what
    finished (the manifest lists it too)."""

    def __init__(self, summary: Summary) -> None:
        cut = summary.interrupted
        super().__init__(f"interrupted by SIGINT: {cut:,} URL{'' if cut == 1 else 's'} cut off")
        self.summary = summary


class Terminated(SystemExit):
    """`fetch()` was stopped by SIGTERM or SIGHUP and stopped cleanly: uncaught, the script
    exits with 128 + N, as the CLI does. `summary` says what finished."""

    def __init__(self, summary: Summary) -> None:
        signum = summary.interrupted_by or signal.SIGTERM
        super().__init__(EXIT_SIGNAL_BASE + signum)
        self.summary = summary


class LockedOut(BulkfetchError):
    """Another run holds the lock on --out."""

    exit_code = EXIT_LOCKED
    hint = "; try again when it has finished"
