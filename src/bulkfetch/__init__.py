"""bulkfetch: a concurrent bulk URL fetcher. Every body on disk, intact, with a truthful report.

    import bulkfetch
    summary = bulkfetch.fetch(["urls.txt"], "out/", concurrency=50)
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

# A library logs and leaves the handlers to its caller: nothing reaches stderr unless asked.
logging.getLogger("bulkfetch").addHandler(logging.NullHandler())

__version__ = "0.1.0"
__all__ = [
    "BulkfetchError",
    "Interrupted",
    "LockedOut",
    "Options",
    "RecordFailed",
    "Refetch",
    "Result",
    "Shard",
    "ShardBy",
    "SourceError",
    "Status",
    "Stream",
    "Summary",
    "Terminated",
    "Timeouts",
    "Tls",
    "UsageError",
    "__version__",
    "fetch",
    "fetch_async",
    "stream",
]

if TYPE_CHECKING:
    from bulkfetch.api import Options, fetch, fetch_async
    from bulkfetch.errors import (
        BulkfetchError,
        Interrupted,
        LockedOut,
        RecordFailed,
        SourceError,
        Terminated,
        UsageError,
    )
    from bulkfetch.models import Refetch, Result, Shard, ShardBy, Status, Summary, Timeouts, Tls
    from bulkfetch.streams import Stream, stream
else:
    # `import bulkfetch` stays cheap (the CLI and `__version__` need nothing else): the API
    # and its types are imported on first use. Hidden from type checkers, so that a name
    # that does not exist is an error there, not `Any`.
    _HOMES = {
        "bulkfetch.api": ("Options", "fetch", "fetch_async"),
        "bulkfetch.errors": ("BulkfetchError", "Interrupted", "LockedOut", "RecordFailed",
                             "SourceError", "Terminated", "UsageError"),
        "bulkfetch.models": ("Refetch", "Result", "Shard", "ShardBy", "Status", "Summary",
                             "Timeouts", "Tls"),
        "bulkfetch.streams": ("Stream", "stream"),
    }

    def __getattr__(name: str) -> Any:
        import importlib

        for module, names in _HOMES.items():
            if name in names:
                return getattr(importlib.import_module(module), name)
        raise AttributeError(f"module 'bulkfetch' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
