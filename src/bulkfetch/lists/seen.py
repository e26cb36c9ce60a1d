"""A compact set of 12-byte digests: 16 to 32 bytes per member, not a Python object each.

A list of ten million URLs must not become ten million `str` objects kept for deduplication.
96 bits keep the chance that two different URLs of a ten-million-line list look alike below
one in 10^15.
"""

from __future__ import annotations

from array import array

DIGEST_BYTES = 12
_MAX_LOAD = 0.75


class DigestSet:
    """Open addressing with linear probing over two flat arrays: 64 high bits, 32 low bits."""

    __slots__ = ("_hi", "_len", "_lo", "_mask")

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._hi = array("Q", [0]) * size
        self._lo = array("I", [0]) * size
        self._mask = size - 1
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, digest: object) -> bool:
        return isinstance(digest, bytes) and self._probe(*_split(digest)) < 0

    def add(self, digest: bytes) -> bool:
        """Add a digest; True when it was not there yet."""
        hi, lo = _split(digest)
        if not self._insert(hi, lo):
            return False
        self._len += 1
        if self._len > _MAX_LOAD * (self._mask + 1):
            self._grow()
        return True

    def _probe(self, hi: int, lo: int) -> int:
        """The free slot where (hi, lo) would go, or -1 when it is there already."""
        his, los, mask = self._hi, self._lo, self._mask
        i = hi & mask
        while (low := los[i]) != 0:
            if low == lo and his[i] == hi:
                return -1
            i = (i + 1) & mask
        return i

    def _insert(self, hi: int, lo: int) -> bool:
        i = self._probe(hi, lo)
        if i < 0:
            return False
        self._hi[i], self._lo[i] = hi, lo
        return True

    def _grow(self) -> None:
        old_hi, old_lo = self._hi, self._lo
        size = 2 * len(old_hi)
        self._hi, self._lo = array("Q", [0]) * size, array("I", [0]) * size
        self._mask = size - 1
        for hi, lo in zip(old_hi, old_lo, strict=True):
            if lo:
                self._insert(hi, lo)


def _split(digest: bytes) -> tuple[int, int]:
    # lo == 0 marks an empty slot, so a digest whose low part is zero is stored with lo = 1.
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:12], "little") or 1
