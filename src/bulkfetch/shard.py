"""Which worker process owns which line: pure arithmetic, shared by the parent and the workers."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from bulkfetch.models import Job
from bulkfetch.plan import Rejected


@dataclass(frozen=True, slots=True)
class Shard:
    """Worker `index` of `count`. A job falls to a worker by its output path, so one path (one
    URL, or one NAME) is only ever in one worker's hands; a rejected line by where it is."""

    index: int
    count: int

    def owns(self, item: Job | Rejected) -> bool:
        key = item.path if isinstance(item, Job) else item.where
        return zlib.crc32(key.encode()) % self.count == self.index

    def share(self, total: int) -> int:
        """This worker's part of a whole limit; the parts add up to the whole."""
        return total // self.count + (self.index < total % self.count)
