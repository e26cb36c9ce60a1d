"""Where bodies and records go: the sinks (a folder, a bucket), the writer threads, the
layout of OUT/.bulkfetch/, the lock, the state, the manifest and the shards' report."""
