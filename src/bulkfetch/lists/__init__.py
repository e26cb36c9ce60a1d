"""The lists: their syntax, what each entry means (validated, deduplicated, named),
the reader thread that plans them, and which entries a shard keeps."""
