"""What a run reports as it goes. The fetch code calls an observer and never knows what it does."""

from __future__ import annotations

from typing import Protocol

from bulkfetch.models import Job, Result


class Observer(Protocol):
    """Receives events on the event loop thread; every method must return at once."""

    def started(self, job: Job, attempt: int) -> None: ...

    def received(self, job: Job, nbytes: int) -> None: ...

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None: ...

    def finished(self, result: Result) -> None: ...


class NullObserver:
    """The default: nobody is watching."""

    def started(self, job: Job, attempt: int) -> None:
        pass

    def received(self, job: Job, nbytes: int) -> None:
        pass

    def retrying(self, job: Job, attempt: int, delay_s: float, error: str) -> None:
        pass

    def finished(self, result: Result) -> None:
        pass
