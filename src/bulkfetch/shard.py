"""Which worker process owns which planned entry: pure arithmetic, the same in every worker."""

from __future__ import annotations

from dataclasses import dataclass

_GOLDEN = 0x9E3779B97F4A7C15  # Fibonacci hashing: consecutive blocks get scattered rotations


@dataclass(frozen=True, slots=True)
class Shard:
    """Worker `index` of `count`.

    Every worker admits every line the same way, so the n-th admitted entry is the same entry
    in each. Entries are dealt in blocks of `count`: each block gives exactly one entry to each
    worker (four big files on two workers split 2 / 2), and the block's rotation is scrambled,
    so a list that alternates (a big file, then its small signature) does not send every big
    file to one worker."""

    index: int
    count: int

    def owns(self, seq: int) -> bool:
        block, place = divmod(seq, self.count)
        rotation = ((block * _GOLDEN) & 0xFFFFFFFFFFFFFFFF) >> 32
        return (place + rotation) % self.count == self.index

    def share(self, total: int) -> int:
        """This worker's part of a whole limit; the parts add up to the whole."""
        return total // self.count + (self.index < total % self.count)
