"""bulkfetch: a concurrent bulk URL fetcher. Every body on disk, intact, with a truthful report."""

__version__ = "0.1.0"
