"""What crosses the pipes between the scheduler and its workers: rows of plain tuples, a
pickled list of them per frame (a 4-byte length first), one frame per loop turn.

A frozen dataclass costs a Python call to pickle (`__reduce__`) and another to load (its
`__init__`); a tuple of ints, floats and strings is pickled and loaded in C. Per small file,
measured: 12.6 µs to dump its three messages as objects and 11.0 µs to load them, against
4.5 and 4.1 µs as tuples. So the rows are tuples, and only this module knows their shape:

    down  a ticket    (id, attempts, first_start, received, resume, where, url, path, host,
                       prior, job resume, sha256, auto)
    up    ENDED       (ENDED, id)                    its request no longer holds its slot
          PROGRESS    (PROGRESS, id, nbytes, length, responded)
                      body bytes since the last frame; with `responded`, the answer came,
                      announcing `length` (Content-Length or None)
          SETTLED     (SETTLED, id, *attempt)        the attempt's outcome (`attempt_in`)
          CRASHED     (CRASHED, error, traceback)    a bug in the worker
          CUT         (CUT, id, http_status, received)  the attempt was cut off (a signal)
"""

from __future__ import annotations

import pickle
import struct
from typing import Any

from bulkfetch.models import Attempt, Failure, Job, Prior, SafeRelPath, Ticket, Validators

ENDED, PROGRESS, SETTLED, CRASHED, CUT = range(5)
Row = tuple[Any, ...]

_LENGTH = struct.Struct("!I")
_FAILURES = {failure.value: failure for failure in Failure}


def frame(rows: list[Row]) -> list[bytes]:
    """One frame: its length, then the pickled rows (to be written together)."""
    body = pickle.dumps(rows, protocol=pickle.HIGHEST_PROTOCOL)
    return [_LENGTH.pack(len(body)), body]


def unframe(buffer: bytearray) -> list[Row]:
    """The rows of every whole frame at the front of `buffer`, which loses them."""
    rows: list[Row] = []
    start = 0
    while len(buffer) - start >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(buffer, start)
        if len(buffer) - start - _LENGTH.size < size:
            break
        rows += pickle.loads(buffer[start + _LENGTH.size : start + _LENGTH.size + size])
        start += _LENGTH.size + size
    del buffer[:start]
    return rows


def ticket_out(ticket: Ticket) -> Row:
    job, prior = ticket.job, ticket.job.prior
    return (ticket.id, ticket.attempts, ticket.first_start, ticket.received, ticket.resume,
            job.where, job.url, job.path, job.host,
            prior and (prior.path, prior.bytes, prior.sha256, prior.etag, prior.last_modified),
            job.resume, job.sha256, job.auto)


def ticket_in(row: Row) -> Ticket:
    key, attempts, first_start, received, resume, where, url, path, host, prior, job_resume, \
        sha256, auto = row
    job = Job(where, url, SafeRelPath(path), host, prior and Prior(*prior), job_resume, sha256,
              auto)
    return Ticket(key, job, attempts, resume, first_start, received)


def ended(key: int) -> Row:
    return (ENDED, key)


def progress(key: int, nbytes: int, *, length: int | None = None,
             responded: bool = False) -> Row:
    return (PROGRESS, key, nbytes, length, responded)


def progress_in(row: Row) -> tuple[int, int | None, bool]:
    """A PROGRESS row's bytes, announced length and whether the answer came."""
    _, _, nbytes, length, responded = row
    return nbytes, length, responded


def cut(key: int, http_status: int | None, received: int) -> Row:
    return (CUT, key, http_status, received)


def cut_in(row: Row) -> tuple[int | None, int]:
    """A CUT row's HTTP status and bytes received."""
    _, _, http_status, received = row
    return http_status, received


def crashed(error: str, trace: str) -> Row:
    return (CRASHED, error, trace)


def crashed_in(row: Row) -> tuple[str, str]:
    """A CRASHED row's error and traceback."""
    _, error, trace = row
    return error, trace


def key_of(row: Row) -> int:
    """The ticket id of an ENDED, PROGRESS, SETTLED or CUT row."""
    key: int = row[1]
    return key


def settled(key: int, a: Attempt) -> Row:
    validators = a.validators and (a.validators.etag, a.validators.last_modified)
    return (SETTLED, key, a.http_status, a.error, a.failure.value, a.retry_after_s, a.size,
            a.sha256, a.not_modified, validators, a.resume, a.received, a.final_url,
            a.content_type, a.path)


def attempt_in(row: Row) -> Attempt:
    """The Attempt of a SETTLED row."""
    _, _, status, error, failure, retry_after, size, sha256, not_modified, validators, \
        resume, received, final_url, content_type, path = row
    return Attempt(status, error, _FAILURES[failure], retry_after, size, sha256, not_modified,
                   validators and Validators(*validators), resume, received, final_url,
                   content_type, path)  # a Resume (rare: a big body cut off) travels as it is
