"""bulkfetch: a concurrent bulk URL fetcher. Every body on disk, intact, with a truthful report.

    import bulkfetch
    summary = bulkfetch.fetch(["urls.txt"], "out/", concurrency=50)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Result", "Shard", "ShardBy", "Summary", "__version__", "fetch", "fetch_async"]

if TYPE_CHECKING:
    from bulkfetch.api import fetch, fetch_async
    from bulkfetch.models import Result, Shard, ShardBy, Summary


def __getattr__(name: str) -> Any:
    """`import bulkfetch` stays cheap (the CLI and `__version__` need nothing else): the API
    and its types are imported on first use."""
    if name in ("fetch", "fetch_async"):
        from bulkfetch import api

        return getattr(api, name)
    if name in ("Result", "Shard", "ShardBy", "Summary"):
        from bulkfetch import models

        return getattr(models, name)
    raise AttributeError(f"module 'bulkfetch' has no attribute {name!r}")
