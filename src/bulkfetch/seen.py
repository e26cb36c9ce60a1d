"""A compact set of 16-byte digests: about 21-43 bytes per member instead of a Python object each.

A list of ten million URLs must not become ten million `str` objects kept for deduplication.
"""

from __future__ import annotations

from array import array

_MAX_LOAD = 0.75


class DigestSet:
    """Open addressing with linear probing over one flat `array('Q')` of (hi, lo) pairs."""

    __slots__ = ("_len", "_mask", "_slots")

    def __init__(self, capacity: int = 1024) -> None:
        size = 1 << max(4, (capacity - 1).bit_length())
        self._slots = array("Q", bytes(16 * size))
        self._mask = size - 1
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, digest: object) -> bool:
        if not isinstance(digest, bytes):
            return False
        hi, lo = _split(digest)
        slots, mask = self._slots, self._mask
        i = hi & mask
        while (low := slots[2 * i + 1]) != 0:
            if low == lo and slots[2 * i] == hi:
                return True
            i = (i + 1) & mask
        return False

    def add(self, digest: bytes) -> bool:
        """Add a 16-byte digest; True when it was not there yet."""
        hi, lo = _split(digest)
        if not self._insert(hi, lo):
            return False
        self._len += 1
        if self._len > _MAX_LOAD * (self._mask + 1):
            self._grow()
        return True

    def _insert(self, hi: int, lo: int) -> bool:
        slots, mask = self._slots, self._mask
        i = hi & mask
        while True:
            high, low = slots[2 * i], slots[2 * i + 1]
            if low == 0:
                slots[2 * i], slots[2 * i + 1] = hi, lo
                return True
            if high == hi and low == lo:
                return False
            i = (i + 1) & mask

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(32 * (self._mask + 1)))
        self._mask = 2 * self._mask + 1
        for j in range(0, len(old), 2):
            if old[j + 1]:
                self._insert(old[j], old[j + 1])


def _split(digest: bytes) -> tuple[int, int]:
    # lo == 0 marks an empty slot, so a digest whose low half is zero is stored with lo = 1.
    return int.from_bytes(digest[:8], "little"), int.from_bytes(digest[8:16], "little") or 1
