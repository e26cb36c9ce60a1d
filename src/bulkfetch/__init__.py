"""bulkfetch: a concurrent bulk URL fetcher. Every body on disk, intact, with a truthful report."""
