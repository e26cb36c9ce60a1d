"""The scheduler: the frontier of waiting URLs by host, the retry policy, worker
processes and their pipe rows, and the run on one event loop."""
