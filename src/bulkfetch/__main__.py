"""`python -m bulkfetch` and the `bulkfetch` console script."""

import os
import sys


def _standard_streams() -> None:
    """Started with stdin, stdout or stderr closed (`2>&-`), the first file we open would take
    that descriptor, and a line meant for stderr would land in a data file: /dev/null holds
    each closed one instead, and print() on a missing sys.stderr no longer falls back to
    stdout."""
    for fd, name in ((0, "stdin"), (1, "stdout"), (2, "stderr")):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)  # the lowest free descriptor: `fd`
            if getattr(sys, name) is None:
                # Held for the whole run, so not in a `with`.
                stream = open(null, "r" if fd == 0 else "w", closefd=False)  # noqa: SIM115
                setattr(sys, name, stream)


def run() -> None:
    _standard_streams()
    from bulkfetch.cli import main  # after: nothing may open a file before the streams are held

    sys.exit(main())


if __name__ == "__main__":
    run()
