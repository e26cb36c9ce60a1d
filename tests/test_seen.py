"""The compact dedupe set behaves as a set across growth."""

from __future__ import annotations

from bulkfetch.lists.plan import digest
from bulkfetch.lists.seen import DigestSet


def test_add_and_contains_across_growth() -> None:
    seen = DigestSet(capacity=16)
    digests = [digest(f"http://h/{i}") for i in range(5000)]
    assert all(seen.add(d) for d in digests)
    assert len(seen) == 5000
    assert not any(seen.add(d) for d in digests)
    assert all(d in seen for d in digests)
    assert digest("http://h/other") not in seen


def test_a_digest_with_a_zero_low_part_is_still_kept() -> None:
    seen = DigestSet()
    zero_low = b"\x01" * 8 + b"\x00" * 4
    assert seen.add(zero_low) and zero_low in seen and not seen.add(zero_low)
