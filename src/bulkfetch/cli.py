"""The command line: argv in, a validated Settings out, one call to the runner, one exit code.

typer lives only here. Nothing below this module and `progress` prints.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from bulkfetch import __version__, api
from bulkfetch import settings as settings_
from bulkfetch.errors import (
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_SIGNAL_BASE,
    EXIT_USAGE,
    BulkfetchError,
    UsageError,
)
from bulkfetch.models import Settings, ShardBy, Summary
from bulkfetch.schedule import runner
from bulkfetch.schedule import workers as workers_
from bulkfetch.settings import cli_name
from bulkfetch.show import outgoing
from bulkfetch.show.display import Display
from bulkfetch.store import report as report_
from bulkfetch.store import verify as verify_
from bulkfetch.store.jsonfile import check_writable, write_json
from bulkfetch.store.layout import STATE_DIR, Layout

# typer >= 0.26 vendors click; its ClickException is reachable only through a public subclass.
_ClickException: type[Exception] = next(
    c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException"
)


HELP_OPTIONS = {"help_option_names": ["-h", "--help"]}
app = typer.Typer(rich_markup_mode=None, context_settings=HELP_OPTIONS)

EPILOG = """\b
A list has one entry a line: URL, then optionally NAME (the path under --out,
may hold spaces), then optionally sha256:HEX (the digest the body must have).
Blank lines and lines starting with # are skipped:
  https://example.com/a.pdf
  https://example.com/b.pdf   reports/b.pdf   sha256:9f86d081884c7d65...

\b
Exit codes: 0 all ok; 1 some URL failed; 2 usage error; 75 --out in use by
another run; 130/143/129 stopped by SIGINT/SIGTERM/SIGHUP; 70 a bug.

\b
Examples:
  bulkfetch https://example.com/a.iso -o data/
  bulkfetch urls.txt -o data/ -c 100
  bulkfetch lists/*.txt -o data/ --per-host 4 --summary-json run.json
  zcat urls.txt.gz | bulkfetch - -o data/ --shard auto --shard-count 8
  bulkfetch report data/    (a run's summary, by host; all shards' together)
  bulkfetch verify data/    (every saved file hashed again and compared)"""


def _version(value: bool) -> None:
    if value:
        print(f"bulkfetch {__version__}")
        raise typer.Exit()


class _Usage(typer.core.TyperCommand):
    """Usage as people write it (`SOURCE...`, not typer's `{SOURCE...}`): the arguments'
    metavars as they are."""

    def collect_usage_pieces(self, ctx: Any) -> list[str]:  # click.Context, vendored
        names = [p.metavar or (p.name or "").upper() for p in self.params
                 if isinstance(p, typer.core.TyperArgument)]
        return ["[OPTIONS]", *names]


@app.command(epilog=EPILOG, cls=_Usage)
def fetch(
    sources: Annotated[list[str], typer.Argument(
        metavar="SOURCE...",
        help="URL-list files, - for standard input, or http(s) URLs to fetch themselves. A "
             "file of a URL's exact name is read as a list; ./NAME is always a file; give a "
             "URL on standard input (echo URL | bulkfetch -) to fetch it although such a "
             "file exists.",
        show_default=False,
    )],
    version: Annotated[bool, typer.Option(
        "--version", "-V", callback=_version, is_eager=True, help="Print the version and exit.",
    )] = False,
    out: Annotated[str, typer.Option(
        "--out", "-o", metavar="DIR|s3://BUCKET/PREFIX", envvar="BULKFETCH_OUT",
        help="Output folder, created if missing; or a bucket (pip install 'bulkfetch[s3]'; "
        "credentials and endpoint from the AWS_* environment or AWS_PROFILE).",
    )] = "downloads",
    state: Annotated[Path | None, typer.Option(
        "--state", metavar="DIR", envvar="BULKFETCH_STATE", show_default=False,
        help="With a bucket --out: keep the run's state, lock and manifest in this folder "
        "[default: in the bucket, under PREFIX/.bulkfetch/]",
    )] = None,
    concurrency: Annotated[int, typer.Option(
        "--concurrency", "-c", metavar="N", envvar="BULKFETCH_CONCURRENCY",
        help="Most requests in flight.",
    )] = 50,
    workers: Annotated[int | None, typer.Option(
        "--workers", "-w", metavar="N", envvar="BULKFETCH_WORKERS",
        help="Processes that make the requests, sharing --concurrency; every limit holds "
        "for the whole run [default: one per usable core (CPU affinity, container CPU quota), "
        "at most 4].",
        show_default=False,
    )] = None,
    retries: Annotated[int, typer.Option(
        envvar="BULKFETCH_RETRIES", metavar="N",
        help="Retries after the first attempt.",
    )] = 3,
    timeout: Annotated[float, typer.Option(
        envvar="BULKFETCH_TIMEOUT", metavar="SECONDS", help="Total seconds per attempt.",
    )] = 60.0,
    connect_timeout: Annotated[float | None, typer.Option(
        envvar="BULKFETCH_CONNECT_TIMEOUT", metavar="SECONDS", show_default=False,
        help="Seconds to set up a connection [default: within --timeout].",
    )] = None,
    read_timeout: Annotated[float | None, typer.Option(
        envvar="BULKFETCH_READ_TIMEOUT", metavar="SECONDS", show_default=False,
        help="Longest silence between bytes, so a slow big file is not taken for a dead one.",
    )] = None,
    per_host: Annotated[int, typer.Option(
        envvar="BULKFETCH_PER_HOST", metavar="N",
        help="Most requests in flight to one host (0: only --concurrency limits).",
    )] = 0,
    rate: Annotated[float | None, typer.Option(
        envvar="BULKFETCH_RATE", metavar="PER_SECOND", show_default=False,
        help="Most requests per second, all hosts together (with --concurrency, not instead).",
    )] = None,
    host_rate: Annotated[float | None, typer.Option(
        envvar="BULKFETCH_HOST_RATE", metavar="PER_SECOND", show_default=False,
        help="Most requests per second to any one host.",
    )] = None,
    host_errors: Annotated[int, typer.Option(
        envvar="BULKFETCH_HOST_ERRORS", metavar="N",
        help="After N connection failures in a row to a host (refused, name not resolved, "
        "TLS handshake, connect timeout), its remaining URLs fail at once (0: never).",
    )] = 5,
    max_retry_after: Annotated[float, typer.Option(
        envvar="BULKFETCH_MAX_RETRY_AFTER", metavar="SECONDS",
        help="A host that asks (Retry-After, with a 429 or 503) to wait longer is given up "
        "on: its URLs fail at once instead of holding the run.",
    )] = 300.0,
    window: Annotated[int | None, typer.Option(
        envvar="BULKFETCH_WINDOW", metavar="N", show_default=False,
        help="Entries read ahead of the requests, all hosts together, so that a list sorted "
        "by host keeps every host busy [default: 200 x --concurrency, at least 10,000].",
    )] = None,
    shard: Annotated[str | None, typer.Option(
        envvar="BULKFETCH_SHARD", metavar="I/N|auto", show_default=False,
        help="Fetch only shard I of N (0-based) of the lists: the entries whose host digests "
        "to I; 'auto' takes I (and N where given) from the job engine's environment "
        "(Kubernetes, AWS Batch, Google Cloud Batch, Slurm).",
    )] = None,
    shard_count: Annotated[int | None, typer.Option(
        envvar="BULKFETCH_SHARD_COUNT", metavar="N", show_default=False,
        help="With --shard auto: how many shards, when the engine does not say.",
    )] = None,
    shard_by: Annotated[ShardBy, typer.Option(
        envvar="BULKFETCH_SHARD_BY", case_sensitive=False, metavar="host|url",
        help="host: each host in one shard (politeness exact); url: spread one big host's "
        "URLs (--per-host, --host-rate divided by N).",
    )] = ShardBy.HOST,
    max_redirects: Annotated[int, typer.Option(
        envvar="BULKFETCH_MAX_REDIRECTS", metavar="N",
        help="Redirects followed per URL.",
    )] = 10,
    max_bytes: Annotated[str | None, typer.Option(
        envvar="BULKFETCH_MAX_BYTES", metavar="SIZE", show_default=False,
        help="Fail a body larger than this (bytes, or with k, M, G: powers of 1024).",
    )] = None,
    user_agent: Annotated[str | None, typer.Option(
        envvar="BULKFETCH_USER_AGENT", show_default=False, metavar="TEXT",
        help="User-Agent header [default: bulkfetch/VERSION].",
    )] = None,
    user: Annotated[str | None, typer.Option(
        "--user", "-u", envvar="BULKFETCH_USER", metavar="USER:PASSWORD", show_default=False,
        help="HTTP Basic credentials; never sent to another host after a redirect.",
    )] = None,
    netrc: Annotated[bool, typer.Option(
        "--netrc", envvar="BULKFETCH_NETRC",
        help="Basic credentials per host from $NETRC or ~/.netrc (--user wins).",
    )] = False,
    limit_rate: Annotated[str | None, typer.Option(
        "--limit-rate", envvar="BULKFETCH_LIMIT_RATE", metavar="SIZE", show_default=False,
        help="Body bytes per second for the whole run, all transfers and workers together "
             "(500k, 32M; powers of 1024) [default: no cap].",
    )] = None,
    split: Annotated[int | None, typer.Option(
        "--split", "-s", envvar="BULKFETCH_SPLIT", metavar="N", show_default=False,
        help="Fetch a big body over up to N connections at once (Range requests, aria2c's "
             "-s), when its server takes ranges and has a strong validator; each counts "
             "against -c and --per-host. Runs in one process [default: 1].",
    )] = None,
    min_split_size: Annotated[str | None, typer.Option(
        "--min-split-size", envvar="BULKFETCH_MIN_SPLIT_SIZE", metavar="SIZE",
        show_default=False,
        help="Each piece of a split body is at least this big: a body under twice it is not "
             "split (1M to 1G) [default: 20M].",
    )] = None,
    dns_servers: Annotated[str | None, typer.Option(
        "--dns-servers", envvar="BULKFETCH_DNS_SERVERS", metavar="IP[:PORT],...",
        show_default=False,
        help="Ask these DNS servers (curl's name) [default: those of /etc/resolv.conf; "
             "/etc/hosts first either way].",
    )] = None,
    proxy: Annotated[str | None, typer.Option(
        envvar="BULKFETCH_PROXY", metavar="URL", show_default=False,
        help="Proxy for every request, http://[user:password@]host:port, or "
        "socks5h:// (names resolved by the proxy), socks5://, socks4a://, socks4:// "
        "[default: HTTP_PROXY / HTTPS_PROXY / NO_PROXY].",
    )] = None,
    cookies: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_COOKIES", metavar="FILE", show_default=False,
        help="Cookies to send, from a Netscape cookies.txt.",
    )] = None,
    cacert: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_CACERT", metavar="FILE", show_default=False,
        help="Trust the CA certificates in FILE (PEM) instead of the system's.",
    )] = None,
    insecure: Annotated[bool, typer.Option(
        "--insecure", "-k", envvar="BULKFETCH_INSECURE",
        help="Do not check servers' certificates.",
    )] = False,
    cert: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_CERT", metavar="FILE", show_default=False,
        help="Client certificate (PEM), for servers that ask for one.",
    )] = None,
    key: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_KEY", metavar="FILE", show_default=False,
        help="Private key of --cert, when not in the same file.",
    )] = None,
    headers: Annotated[list[str] | None, typer.Option(
        "--header", "-H", metavar="'NAME: VALUE'", show_default=False,
        help="Extra request header; repeatable; @FILE: one a line from FILE (kept out of `ps`). "
        "[env: BULKFETCH_HEADER, one per line]",
    )] = None,
    manifest: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_MANIFEST", show_default=False, metavar="FILE",
        help=f"JSON-lines report [default: OUT/{STATE_DIR}/manifest.jsonl]",
    )] = None,
    progress: Annotated[bool | None, typer.Option(
        "--progress/--no-progress", envvar="BULKFETCH_PROGRESS",
        help="Live table [default: on when stderr is a terminal]",
        show_default=False,
    )] = None,
    quiet: Annotated[bool, typer.Option(
        "--quiet", "-q", envvar="BULKFETCH_QUIET",
        help="Only errors and a short summary, on stderr; no progress.",
    )] = False,
    verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", envvar="BULKFETCH_VERBOSE", help="One line per finished URL.",
    )] = False,
    status_interval: Annotated[float, typer.Option(
        envvar="BULKFETCH_STATUS_INTERVAL", metavar="SECONDS",
        help="Without the live table: a status line this often (0: never).",
    )] = 30.0,
    content_disposition: Annotated[bool, typer.Option(
        "--content-disposition", envvar="BULKFETCH_CONTENT_DISPOSITION",
        help="Name a file (one without NAME) by the answer's Content-Disposition, in its "
             "host's folder, with the URL's tag: the path then depends on the answer.",
    )] = False,
    remote_time: Annotated[bool, typer.Option(
        "--remote-time", "-R", envvar="BULKFETCH_REMOTE_TIME",
        help="A file's modification time from the answer's Last-Modified (off: when it "
             "arrived).",
    )] = False,
    skip_existing: Annotated[bool, typer.Option(
        "--skip-existing", envvar="BULKFETCH_SKIP_EXISTING",
        help="A URL whose file an earlier run saved (still whole) is skipped, no request.",
    )] = False,
    force: Annotated[bool, typer.Option(
        "--force", envvar="BULKFETCH_FORCE",
        help="Fetch everything again, even what an earlier run saved.",
    )] = False,
    summary_json: Annotated[Path | None, typer.Option(
        envvar="BULKFETCH_SUMMARY_JSON", metavar="FILE",
        help="Write a JSON summary of the run here at the end.",
        show_default=False,
    )] = None,
) -> int:
    """Fetch every URL in the SOURCE lists into --out, with a manifest of what happened."""
    # Every parameter by its name, which is the library's name for it too: both are checked
    # by the one factory (settings.py), in the same words.
    given = dict(locals())
    for name in ("sources", "out", "version", "workers", "summary_json"):
        del given[name]
    looks = {name: given.pop(name) for name in DISPLAY_OPTIONS}
    given["headers"] = headers or _env_headers()
    settings = settings_.build(sources, out, given, naming=cli_name)
    shown = settings_.display(looks, is_terminal=sys.stderr.isatty())
    summary_to = settings_.summary_json(summary_json)
    processes = workers_.choose(settings_.workers(workers, naming=cli_name), settings)
    extras = api.prepare(settings, settings.sources)
    if summary_to is not None:
        _check_summary_json(summary_to)
    display = Display(shown, limit=settings.concurrency, stream=sys.stderr,
                      rate_cap=settings.limit_rate)
    if "-" in settings.sources and sys.stdin.isatty():
        display.say("reading URLs from standard input (one a line; end with Ctrl-D)")
    summary = api.execute(settings, settings.sources, display, extras=extras,
                          processes=processes, companion=display.run,
                          signals=runner.Signals.STOP_THEN_EXIT)
    if summary.total == 0 and summary.interrupted_by is None:
        display.say(_nothing_to_do(settings))
    display.show_summary(summary, _manifest_shown(settings))
    code = exit_code(summary)
    if summary_to is not None:
        _write_summary_json(summary_to, summary, settings, code)
    return code


DISPLAY_OPTIONS = ("quiet", "verbose", "progress", "status_interval")


def _nothing_to_do(settings: Settings) -> str:
    if settings.shard is not None:
        return (f"no URLs for shard {settings.shard.name}: every URL of the lists went to "
                f"another shard, or the lists have none")
    return "no URLs in the lists (only blank lines and comments, or empty)"


def _manifest_shown(settings: Settings) -> Path | str:
    """Where the manifest ends up: with the state in the bucket, its object; a --manifest of
    the user's own stays where it was asked for (a copy goes to the bucket too)."""
    default = Layout.of(settings.out, settings.shard).manifest
    if settings.bucket is None or not settings.state_in_bucket or settings.manifest != default:
        return settings.manifest
    return f"{settings.bucket}{default.relative_to(settings.out).as_posix()}"






def exit_code(summary: Summary) -> int:
    """0 all fine, 1 something failed, 128 + N after signal N."""
    if summary.interrupted_by is not None:
        return EXIT_SIGNAL_BASE + summary.interrupted_by
    return EXIT_FAILED if summary.failed else EXIT_OK








def _env_headers() -> list[str]:
    """BULKFETCH_HEADER holds one header per line (a header value may contain spaces)."""
    return [line for line in os.environ.get("BULKFETCH_HEADER", "").splitlines() if line.strip()]


def _check_summary_json(path: Path) -> None:
    """Fail before any request when the summary could not be written at the end: its temp
    file is created and removed (the summary itself appears only when the run ends)."""
    try:
        check_writable(path)
    except OSError as exc:
        raise UsageError(
            f"--summary-json {str(path)!r}: cannot write: {exc.strerror or exc}") from exc


def _write_summary_json(path: Path, summary: Summary, settings: Settings, code: int) -> None:
    seconds = max(summary.elapsed_s, 1e-9)
    fields = dataclasses.asdict(summary)
    del fields["stopped"]  # the library's stop token: never in a CLI run
    data = {
        **fields,
        "total": summary.total,
        "files_per_s": round(summary.total / seconds, 3),
        "bytes_per_s": round(summary.received / seconds, 3),
        "manifest": outgoing.mask(str(settings.manifest)),
        "exit_code": code,
    }
    try:
        write_json(path, data)
    except OSError as exc:
        _say(f"error: --summary-json {str(path)!r}: {exc.strerror or exc}")


def _say(line: str) -> None:
    print(f"bulkfetch: {outgoing.line(line)}", file=sys.stderr, flush=True)


reporting = typer.Typer(add_completion=False, rich_markup_mode=None,
                        context_settings=HELP_OPTIONS)


@reporting.command(cls=_Usage)
def report(
    out: Annotated[Path, typer.Argument(
        metavar="OUT", help="The --out of a run, or of all its shards.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="The report as JSON on stdout, as well.")] = False,
) -> int:
    """One summary of the run in OUT (or of every shard): counts, bytes, failures, shards
    missing or unfinished, and a table by host (ok, failed, not modified, bytes, median
    time, most common error). Exit 0 only when the run (every shard) finished and nothing
    failed."""
    if str(out).startswith("s3:"):
        raise UsageError("report reads a folder: copy the bucket's PREFIX/.bulkfetch/ down "
                         "first (aws s3 sync s3://BUCKET/PREFIX/.bulkfetch OUT/.bulkfetch)")
    found = report_.gather(out)
    for line in report_.lines(found):
        _say(line)
    if as_json:
        sys.stdout.buffer.write(report_.as_json(found))
        sys.stdout.flush()
    return EXIT_OK if found.ok else EXIT_FAILED


verifying = typer.Typer(add_completion=False, rich_markup_mode=None,
                        context_settings=HELP_OPTIONS)


@verifying.command(cls=_Usage)
def verify(
    out: Annotated[Path, typer.Argument(metavar="OUT", help="The --out of earlier runs.")],
    as_json: Annotated[bool, typer.Option(
        "--json", help="Each problem, then a summary, as JSON lines on stdout.")] = False,
) -> int:
    """Hash again every file the state says a run saved whole (shards' too) and compare it;
    name the files that are missing, changed, or that no run saved. Exit 0 only when every
    file matches and there is no other; 1 otherwise."""
    checker = verify_.Verifier(out)
    with _verify_output(checker) as (advance, say):
        checker.progress = advance
        for finding in checker.run():
            say(f"{finding.kind}: {finding.path}: {finding.detail}")
            if as_json:
                _json_line(dataclasses.asdict(finding))
    verdict = checker.verdict()
    files = "1 file" if verdict.checked == 1 else f"{verdict.checked:,} files"
    words = (f"{files} checked ({verdict.bytes:,} bytes hashed): "
             f"{verdict.missing:,} missing, {verdict.changed:,} changed, "
             f"{verdict.unexpected:,} unexpected")
    _say(f"{words}; all match" if verdict.ok else words)
    if as_json:
        _json_line({"kind": "summary", **dataclasses.asdict(verdict), "ok": verdict.ok})
    return EXIT_OK if verdict.ok else EXIT_FAILED


@contextlib.contextmanager
def _verify_output(checker: verify_.Verifier) -> Iterator[tuple[Callable[[int], None],
                                                               Callable[[str], None]]]:
    """On a terminal, a progress bar with the lines above it; else the lines alone."""
    if not sys.stderr.isatty():
        yield (lambda n: None), _say
        return
    from bulkfetch.show import live

    with live.bar(checker.total_bytes(), sys.stderr) as shown:
        yield shown


def _json_line(data: dict[str, object]) -> None:
    sys.stdout.buffer.write(orjson.dumps(data, option=orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


COMMANDS = {"report": reporting, "verify": verifying}


def main(argv: list[str] | None = None) -> int:
    """Entry point: every error becomes one line and an exit code; only bugs get a traceback.
    `bulkfetch report OUT` and `bulkfetch verify OUT` are the other commands (a list named
    `report` or `verify`: `./report`)."""
    args = sys.argv[1:] if argv is None else argv
    name = args[0] if args and args[0] in COMMANDS else None
    command = typer.main.get_command(COMMANDS[name] if name else app)
    try:
        code = command.main(args=args[1:] if name else args,
                            prog_name=f"bulkfetch {name}" if name else "bulkfetch",
                            standalone_mode=False)
    except _ClickException as exc:
        _say(f"error: {exc.format_message()} (see bulkfetch --help)")  # type: ignore[attr-defined]
        return EXIT_USAGE
    except BulkfetchError as exc:
        _say(exc.line())
        return exc.exit_code
    except Exception as exc:
        for text in traceback.format_exc().splitlines():  # a bug's words leave here too
            print(outgoing.line(text), file=sys.stderr)
        _say(f"internal error: {type(exc).__name__}: {exc} (this is a bug; please report it)")
        return EXIT_INTERNAL
    return code if isinstance(code, int) else EXIT_OK
