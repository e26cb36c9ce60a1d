"""The command line: argv in, a validated Settings out, one call to the runner, one exit code.

typer lives only here. Nothing below this module prints.
"""

from __future__ import annotations

import contextlib
import os
import signal
import stat
import sys
import traceback
from pathlib import Path
from typing import Annotated

import typer

from bulkfetch import runner
from bulkfetch.intake import Source
from bulkfetch.models import Job, Result, Settings, Status, Summary
from bulkfetch.plan import STATE_DIR

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70
FAILURE_LINES = 50

# typer >= 0.26 vendors click; its ClickException is reachable only through a public subclass.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


class UsageError(Exception):
    """A bad option or source: reported in one line, exit 2."""


app = typer.Typer(add_completion=False, rich_markup_mode=None)


@app.command()
def fetch(
    sources: Annotated[list[str], typer.Argument(
        metavar="SOURCE", help="URL-list files, or - for standard input.", show_default=False,
    )],
    out: Annotated[Path, typer.Option(
        "--out", "-o", help="Output folder, created if missing.",
    )] = Path("downloads"),
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", min=1, max=10_000, help="Most requests in flight.",
    )] = 50,
    retries: Annotated[int, typer.Option(
        min=0, max=100, help="Retries after the first attempt.",
    )] = 3,
    timeout: Annotated[float, typer.Option(
        min=0.001, help="Total seconds per attempt.",
    )] = 60.0,
    header: Annotated[list[str] | None, typer.Option(
        "--header", "-H", metavar="'NAME: VALUE'", help="Extra request header; repeatable.",
    )] = None,
    manifest: Annotated[Path | None, typer.Option(
        help=f"JSON-lines report [default: OUT/{STATE_DIR}/manifest.jsonl]", show_default=False,
    )] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", help="Live table [default: on when stderr is a terminal]",
        show_default=False,
    )] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", help="Only errors and a short summary, on stderr.",
    )] = False,
) -> int:
    """Fetch every URL in the SOURCE lists into --out, with a manifest of what happened."""
    settings = Settings(
        sources=tuple(sources),
        out=out,
        manifest=manifest or out / STATE_DIR / "manifest.jsonl",
        concurrency=concurrency,
        retries=retries,
        timeout_s=timeout,
        headers=tuple(_parse_header(h) for h in header or ()),
    )
    _prepare_out(settings.out)
    with contextlib.ExitStack() as stack:
        opened = [_open_source(name, stack) for name in settings.sources]
        reporter = Reporter()
        summary = runner.run(settings, opened, reporter)
    _print_summary(summary, settings)
    return exit_code(summary)


def exit_code(summary: Summary) -> int:
    """0 all fine, 1 something failed, 128 + N after signal N."""
    if summary.interrupted_by is not None:
        return 128 + summary.interrupted_by
    return EXIT_FAILED if summary.failed else EXIT_OK


class Reporter:
    """Prints each failure as one line on stderr (the first FAILURE_LINES of them)."""

    def __init__(self) -> None:
        self._failures = 0

    def started(self, job: Job, attempt: int) -> None:
        pass

    def received(self, job: Job, nbytes: int) -> None:
        pass

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        if result.status is not Status.FAILED:
            return
        self._failures += 1
        if self._failures <= FAILURE_LINES:
            _say(f"failed: {result.url}: {result.error}")
        elif self._failures == FAILURE_LINES + 1:
            _say("further failures are listed only in the manifest")


def _parse_header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip() or name != name.strip() or " " in name:
        raise UsageError(f"--header {text!r}: expected 'Name: value'")
    return name, value.strip()


def _prepare_out(out: Path) -> None:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"--out {str(out)!r}: cannot create the folder: {exc.strerror}") from exc


def _open_source(name: str, stack: contextlib.ExitStack) -> Source:
    if name == "-":
        return Source(name="-", fd=sys.stdin.fileno())
    try:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(f"{name!r}: cannot read: {exc.strerror or exc}") from exc
    stack.callback(os.close, fd)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        raise UsageError(f"{name!r}: cannot read: Is a directory")
    return Source(name=name, fd=fd)


def _print_summary(summary: Summary, settings: Settings) -> None:
    if summary.interrupted_by is not None:
        name = signal.Signals(summary.interrupted_by).name
        _say(f"interrupted by {name}; the manifest lists what finished")
    seconds = max(summary.elapsed_s, 1e-9)
    _say(
        f"{summary.ok:,} ok, {summary.failed:,} failed, {summary.not_modified:,} not modified, "
        f"{summary.skipped:,} skipped; {summary.bytes / 1e6:,.1f} MB in {summary.elapsed_s:.1f}s "
        f"({summary.total / seconds:,.0f} files/s, {summary.bytes / 1e6 / seconds:,.1f} MB/s)"
    )
    _say(f"manifest: {settings.manifest}")


def _say(line: str) -> None:
    print(f"bulkfetch: {line}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error becomes one line and an exit code; only bugs get a traceback."""
    command = typer.main.get_command(app)
    try:
        code = command.main(args=argv, prog_name="bulkfetch", standalone_mode=False)
    except _ClickException as exc:
        _say(f"error: {exc.format_message()} (see bulkfetch --help)")  # type: ignore[attr-defined]
        return EXIT_USAGE
    except UsageError as exc:
        _say(f"error: {exc}")
        return EXIT_USAGE
    except Exception as exc:
        traceback.print_exc()
        _say(f"internal error: {type(exc).__name__}: {exc} (this is a bug; please report it)")
        return EXIT_INTERNAL
    return code if isinstance(code, int) else EXIT_OK
