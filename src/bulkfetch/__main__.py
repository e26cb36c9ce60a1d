"""`python -m bulkfetch` and the `bulkfetch` console script."""

import sys

from bulkfetch.cli import main


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
