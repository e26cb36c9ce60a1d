"""What crosses the pipes between the scheduler and its workers: every row survives framing,
pickling and decoding unchanged, whole frames only, in order."""

from __future__ import annotations

import pytest

from bulkfetch.models import (
    Attempt,
    Failure,
    Job,
    Prior,
    Resume,
    SafeRelPath,
    Ticket,
    Validators,
)
from bulkfetch.schedule import wire

JOB = Job("u:1", "http://u:pw@h/x", SafeRelPath("h/x"), "h:80",
          prior=Prior("h/x", 10, "ab" * 32, '"e"', "Mon, 01 Jan 2024 00:00:00 GMT"),
          resume=Resume(5, '"e"', 10), sha256="cd" * 32, auto=True)


@pytest.mark.parametrize("ticket", [
    Ticket(7, JOB, attempts=2, resume=Resume(6, '"e"'), first_start=12.5, received=6),
    Ticket(0, Job("l:1", "https://h/y", SafeRelPath("h/y"))),  # no prior, no resume
])
def test_a_ticket_round_trips(ticket: Ticket) -> None:
    assert wire.ticket_in(wire.ticket_out(ticket)) == ticket


@pytest.mark.parametrize("attempt", [
    Attempt(),
    Attempt(http_status=503, error="HTTP 503", failure=Failure.STATUS, retry_after_s=2.0,
            resume=Resume(100, '"v"', 200), received=100, final_url="http://h/z"),
    Attempt(http_status=200, size=9, sha256="ef" * 32, validators=Validators('"e"', None),
            content_type="text/plain", not_modified=False, path="h/named-0123456789abcdef.pdf"),
    Attempt(http_status=304, not_modified=True, validators=Validators(None, "date")),
])
def test_a_settled_row_round_trips(attempt: Attempt) -> None:
    row = wire.settled(3, attempt)
    assert wire.key_of(row) == 3 and wire.attempt_in(row) == attempt


def test_every_row_kind_survives_a_frame_split_anywhere() -> None:
    rows = [wire.ended(1), wire.progress(1, 4096), wire.progress(2, 0, length=77,
                                                                    responded=True),
            wire.settled(1, Attempt(http_status=200, size=4096)),
            wire.crashed("ValueError: x", "Traceback ..."), wire.cut(2, 200, 600)]
    data = b"".join(wire.frame(rows[:2]) + wire.frame(rows[2:]))
    for cut in range(len(data) + 1):  # a pipe may hand over any prefix
        buffer = bytearray(data[:cut])
        got = wire.unframe(buffer)
        buffer += data[cut:]
        got += wire.unframe(buffer)
        assert got == rows and not buffer
    ended, small, answered, _, crashed, cut = rows
    assert [r[0] for r in rows] == [wire.ENDED, wire.PROGRESS, wire.PROGRESS, wire.SETTLED,
                                    wire.CRASHED, wire.CUT]
    assert (wire.key_of(cut), wire.cut_in(cut)) == (2, (200, 600))
    assert (wire.key_of(ended), wire.key_of(small)) == (1, 1)
    assert wire.progress_in(small) == (4096, None, False)
    assert wire.progress_in(answered) == (0, 77, True)
    assert wire.crashed_in(crashed) == ("ValueError: x", "Traceback ...")
