"""The one count of results: by status, with the bytes saved and received. The run's summary,
the live board and the shards' report all count with it."""

from __future__ import annotations

from bulkfetch.models import Status, Summary


class Tally:
    __slots__ = ("bytes", "counts", "received")

    def __init__(self) -> None:
        self.counts = dict.fromkeys(Status, 0)
        self.bytes = 0  # of the files saved (ok), as they are on disk
        self.received = 0  # body bytes that came over the wire

    def add(self, status: Status, size: int, received: int = 0) -> None:
        self.counts[status] += 1
        self.received += received
        if status is Status.OK:
            self.bytes += size

    def summary(self, *, elapsed_s: float, interrupted_by: int | None,
                kept_for_resume: int = 0, stopped: bool = False,
                manifest: str | None = None) -> Summary:
        return Summary(
            ok=self.counts[Status.OK],
            failed=self.counts[Status.FAILED],
            not_modified=self.counts[Status.NOT_MODIFIED],
            skipped=self.counts[Status.SKIPPED],
            bytes=self.bytes,
            elapsed_s=elapsed_s,
            interrupted_by=interrupted_by,
            received=self.received,
            interrupted=self.counts[Status.INTERRUPTED],
            kept_for_resume=kept_for_resume,
            stopped=stopped,
            manifest=manifest,
        )
