"""Run a command and report its peak RSS: `python -m tests.peak CMD...`.

Linux keeps a process's peak RSS across execve, and Python starts children with vfork: a CLI
started straight from pytest reports pytest's own peak whenever pytest is the bigger. Started
from this small process, it reports its own. Prints the child's PID, then, when it has ended,
its exit code and peak RSS in KiB (its workers' too, once reaped: the largest of them).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys


def main() -> None:
    proc = subprocess.Popen(sys.argv[1:])
    # The test signals the CLI itself; this process only waits.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(proc.pid, flush=True)
    _, status, usage = os.wait4(proc.pid, 0)
    print(os.waitstatus_to_exitcode(status), usage.ru_maxrss, flush=True)


if __name__ == "__main__":
    main()
