"""The manifest's lines counted by host, for `bulkfetch report`: which hosts failed, which were
slow. Memory stays bounded whatever the run's size: per host a few counters, a sample of the
times (the median is exact up to SAMPLE results, else that of a uniform sample), and the most
frequent errors among at most ERRORS_KEPT distinct ones.
"""

from __future__ import annotations

import random
import statistics
import urllib.parse
from collections import Counter
from dataclasses import dataclass

from bulkfetch.models import Status
from bulkfetch.show.outgoing import line

SAMPLE = 1_001
ERRORS_KEPT = 64


@dataclass(frozen=True, slots=True)
class HostRow:
    host: str
    ok: int
    failed: int
    not_modified: int
    interrupted: int
    bytes: int
    median_s: float | None
    top_error: str | None
    top_error_count: int


class _Host:
    __slots__ = ("bytes", "counts", "errors", "seen", "times")

    def __init__(self) -> None:
        self.counts: Counter[Status] = Counter()
        self.bytes = 0
        self.times: list[float] = []
        self.seen = 0  # times offered to the sample
        self.errors: Counter[str] = Counter()


class Hosts:
    """Rows of manifests added one by one; `rows()` once they all are."""

    def __init__(self) -> None:
        self._hosts: dict[str, _Host] = {}
        self._random = random.Random(0)  # the same report for the same manifests

    def add(self, url: str, status: Status, size: int, elapsed: float,
            error: str | None) -> None:
        host = self._hosts.setdefault(host_of(url), _Host())
        host.counts[status] += 1
        if status is Status.OK:
            host.bytes += size
        if status in (Status.OK, Status.NOT_MODIFIED, Status.FAILED):
            self._sample(host, elapsed)
        if error and status is Status.FAILED and (
                error in host.errors or len(host.errors) < ERRORS_KEPT):
            host.errors[error] += 1

    def _sample(self, host: _Host, elapsed: float) -> None:
        """Reservoir sampling (Algorithm R): every time equally likely to be kept."""
        host.seen += 1
        if len(host.times) < SAMPLE:
            host.times.append(elapsed)
        elif (slot := self._random.randrange(host.seen)) < SAMPLE:
            host.times[slot] = elapsed

    def rows(self) -> list[HostRow]:
        """Hosts with failures first (most first), then the slowest."""
        rows = [self._row(name, host) for name, host in self._hosts.items()]
        return sorted(rows, key=lambda r: (-r.failed, -(r.median_s or 0.0), r.host))

    @staticmethod
    def _row(name: str, host: _Host) -> HostRow:
        top = host.errors.most_common(1)
        return HostRow(
            host=name, ok=host.counts[Status.OK], failed=host.counts[Status.FAILED],
            not_modified=host.counts[Status.NOT_MODIFIED],
            interrupted=host.counts[Status.INTERRUPTED], bytes=host.bytes,
            median_s=round(statistics.median(host.times), 3) if host.times else None,
            top_error=top[0][0] if top else None, top_error_count=top[0][1] if top else 0)


def host_of(url: str) -> str:
    """The host a manifest's URL names (with its port when not the scheme's); `?` when none
    can be read (a line that was no URL)."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname
        port = parts.port
    except ValueError:
        return "?"
    if not host:
        return "?"
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return host if port is None or port == default else f"{host}:{port}"


def table(rows: list[HostRow], *, limit: int) -> list[str]:
    """The rows as aligned text, at most `limit` hosts (the rest counted)."""
    head = ("host", "ok", "failed", "not mod.", "bytes", "median", "most common error")
    body = [(line(r.host), f"{r.ok:,}", f"{r.failed:,}", f"{r.not_modified:,}",
             f"{r.bytes:,}", "—" if r.median_s is None else f"{r.median_s:.3f}s",
             "" if r.top_error is None else
             f"{line(r.top_error)} (x{r.top_error_count:,})") for r in rows[:limit]]
    widths = [max(len(cells[i]) for cells in (head, *body)) for i in range(len(head) - 1)]
    out = []
    for cells in (head, *body):
        text = "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False)))
        out.append(f"{text}  {cells[-1]}".rstrip())
    if len(rows) > limit:
        out.append(f"... and {len(rows) - limit:,} more hosts (--json has them all)")
    return out
