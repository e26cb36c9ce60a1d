"""Plain data that flows between the modules: no behaviour, no I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from pathlib import Path
from typing import NewType

SafeRelPath = NewType("SafeRelPath", str)


class Wire:
    """Pickled as a call of the constructor with the fields in order: what a worker's pipe
    carries several times per file. dataclasses' own __setstate__ walks `fields()` on every
    load, 15 % of the parent's time in the latency scenario (bench/NOTES.md)."""

    __slots__ = ()

    def __reduce__(self) -> tuple[type, tuple[object, ...]]:
        names: tuple[str, ...] = self.__slots__
        return type(self), tuple([getattr(self, name) for name in names])
"""A POSIX path relative to --out that `plan` has checked stays inside it."""


class Status(enum.StrEnum):
    OK = "ok"
    FAILED = "failed"
    NOT_MODIFIED = "not_modified"
    SKIPPED = "skipped"
    INTERRUPTED = "interrupted"  # cut off by a signal: started, not finished


@dataclass(frozen=True, slots=True)
class UrlLine:
    """One entry of a URL list, as written."""

    where: str  # "urls.txt:7"
    url: str
    name: str | None
    sha256: str | None = None  # as written after "sha256:"; checked by plan


class Refetch(enum.StrEnum):
    """What to do with a URL whose file an earlier run saved and that is still whole."""

    REVALIDATE = "revalidate"  # conditional GET: 304 keeps the file, 200 replaces it
    SKIP_EXISTING = "skip-existing"  # no request at all
    FORCE = "force"  # fetch again, unconditionally


@dataclass(frozen=True, slots=True)
class Prior(Wire):
    """What an earlier run saved for a URL, its file checked to be still whole (by size)."""

    path: str
    bytes: int
    sha256: str
    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Validators(Wire):
    """An answer's cache validators, for the next run's conditional request."""

    etag: str | None
    last_modified: str | None


@dataclass(frozen=True, slots=True)
class Resume(Wire):
    """Bytes of a body kept from a cut-off attempt, and the validator they belong to."""

    offset: int
    validator: str  # a strong ETag or a Last-Modified date, sent as If-Range
    total: int | None = None  # the whole body's length, when it was announced
    # A body fetched in segments (--split): each (start, end, next byte to write).
    segments: tuple[tuple[int, int, int], ...] | None = None
    # The file name its first answer gave (--content-disposition), as given: made safe again,
    # in the URL's folder and with its tag, when the pieces continue.
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Job(Wire):
    """A validated, deduplicated URL with its output path."""

    where: str
    url: str
    path: SafeRelPath
    host: str = ""  # "host:port", lower-cased: what --per-host, --host-rate and pauses count by
    prior: Prior | None = None
    resume: Resume | None = None
    sha256: str | None = None  # the digest the body must have (lower-case hex)
    auto: bool = False  # the path is the automatic one (no NAME): an answer may rename it


@dataclass(frozen=True, slots=True)
class Ticket(Wire):
    """A job on its way through the frontier: how many attempts it has had, and from where the
    next one continues. `id` names it between the scheduler and a worker process."""

    id: int
    job: Job
    attempts: int = 0  # attempts made so far
    resume: Resume | None = None
    first_start: float | None = None  # monotonic (shared by all processes on Linux)
    received: int = 0  # body bytes received by the attempts made so far


class Failure(enum.StrEnum):
    """Why an attempt failed, for the retry policy and the dead-host count."""

    NONE = "none"
    STATUS = "status"  # an HTTP status that is not 2xx
    CONNECT = "connect"  # refused, name not resolved, TLS handshake, connect timeout
    TRANSFER = "transfer"  # reset, cut short, timed out after connecting
    TLS = "tls"  # the handshake failed: final for the URL, counted against the host
    FINAL = "final"  # nothing another attempt could change (redirect loop, checksum, disk)


@dataclass(frozen=True, slots=True)
class Attempt(Wire):
    """What one attempt came to."""

    http_status: int | None = None
    error: str | None = None
    failure: Failure = Failure.NONE
    retry_after_s: float | None = None
    size: int = 0
    sha256: str | None = None
    not_modified: bool = False
    validators: Validators | None = None
    resume: Resume | None = None  # what the next attempt can continue from
    received: int = 0  # body bytes that came over the wire in this attempt
    final_url: str | None = None  # the last hop's URL, when an answer came
    content_type: str | None = None
    path: str | None = None  # where the body went, when not the job's (--content-disposition)


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome for one distinct URL; also exactly one manifest line."""

    url: str
    status: Status
    path: str | None
    http_status: int | None
    bytes: int  # the file's size on disk
    received: int  # body bytes this run received for it (a resumed file: less than bytes)
    sha256: str | None
    attempts: int
    elapsed: float
    error: str | None
    final_url: str | None  # after redirects (a password masked)
    content_type: str | None
    fetched_at: str  # when the verdict was reached: ISO-8601, UTC


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per attempt: the whole of it, the TCP connect, and the longest silence between bytes."""

    total_s: float = 60.0
    connect_s: float | None = None
    read_s: float | None = None


@dataclass(frozen=True, slots=True)
class Tls:
    """How to check servers and how to show ourselves; files are read once, at startup."""

    cacert: Path | None = None
    insecure: bool = False
    cert: Path | None = None
    key: Path | None = None


class ShardBy(enum.StrEnum):
    HOST = "host"  # every host in one shard: politeness needs no coordination
    URL = "url"  # a list dominated by one host: its URLs spread over all shards


@dataclass(frozen=True, slots=True)
class Shard:
    """This process takes the entries whose host (or URL) digests to `index` modulo `count`."""

    index: int
    count: int
    by: ShardBy = ShardBy.HOST

    @property
    def name(self) -> str:
        return f"{self.index}-of-{self.count}"


@dataclass(frozen=True, slots=True)
class Bucket:
    """`--out s3://NAME/PREFIX`: bodies go to objects at PREFIX + their path."""

    name: str
    prefix: str  # "" or ending in "/"

    def key(self, rel: str) -> str:
        return self.prefix + rel

    def __str__(self) -> str:
        return f"s3://{self.name}/{self.prefix}"


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a run needs, decided by the CLI."""

    sources: tuple[str, ...]
    out: Path
    manifest: Path
    concurrency: int = 50
    retries: int = 3
    backoff_s: float = 0.5  # the first retry's wait (half fixed, half random); doubles after
    timeouts: Timeouts = Timeouts()
    per_host: int = 0  # 0: no limit per host beyond --concurrency
    rate: float | None = None  # requests per second, all hosts together
    host_rate: float | None = None  # requests per second to any one host
    limit_rate: int | None = None  # body bytes per second, the whole run together
    split: int = 1  # connections for one big body (--split); 1: one
    min_split_size: int = 20 << 20  # a body is split only into pieces at least this big
    max_redirects: int = 10
    max_bytes: int | None = None  # a larger body fails and is not kept
    user_agent: str | None = None  # None: bulkfetch/VERSION
    tls: Tls = Tls()
    user: tuple[str, str] | None = None  # Basic auth, dropped on a redirect to another origin
    netrc: bool = False
    proxy: str | None = None  # None: HTTP_PROXY / HTTPS_PROXY / NO_PROXY from the environment
    dns_servers: tuple[str, ...] = ()  # "IP" or "IP:PORT"; (): those of /etc/resolv.conf
    cookies: Path | None = None
    headers: tuple[tuple[str, str], ...] = ()
    content_disposition: bool = False  # a file named by the answer's Content-Disposition
    remote_time: bool = False  # a file's mtime from the answer's Last-Modified
    refetch: Refetch = Refetch.REVALIDATE
    host_errors: int = 5  # consecutive connection failures that end a host's URLs; 0: never
    max_retry_after_s: float = 300.0  # a host asking to wait longer is given up on
    window: int = 0  # entries held at once, all hosts together; 0: sized from --concurrency
    shard: Shard | None = None  # one shard of a run split over processes or machines
    # With a bucket, `out` is the local folder of the run's own files (state, lock, manifest)
    # and the bodies go to the bucket.
    bucket: Bucket | None = None
    state_in_bucket: bool = False  # the state and manifest are fetched from and put back there


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for the whole run."""

    ok: int
    failed: int
    not_modified: int
    skipped: int
    bytes: int  # of the files this run saved, as they are on disk
    elapsed_s: float
    interrupted_by: int | None  # signal number, when a signal stopped the run
    received: int = 0  # body bytes that came over the wire in this run
    interrupted: int = 0  # URLs cut off by the signal (a manifest line each)
    kept_for_resume: int = 0  # bytes in .bulkfetch/partial/ after an interruption
    stopped: bool = False  # ended early by the caller's `stop` (or its callback's error)
    manifest: str | None = None  # the run's manifest (a local path)

    @property
    def ended_early(self) -> bool:
        """A signal or the caller stopped the run: the lists were not all fetched."""
        return self.interrupted_by is not None or self.stopped

    @property
    def total(self) -> int:
        return self.ok + self.failed + self.not_modified + self.skipped + self.interrupted
