"""JSON files written whole or not at all: a shard's done marker, `--summary-json`, a
partial's metadata. The one atomic JSON writer."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import orjson

from bulkfetch.store.layout import part_of
from bulkfetch.store.threads import write_all

# A new temp file each time, never through a symlink someone planted at its name.
_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0)


def write_json(path: Path, data: object, *, indent: bool = True,
               dir_fd: int | None = None) -> None:
    """`data` (anything orjson takes: dicts, frozen dataclasses) at `path` (relative to
    `dir_fd`, if given), by a temp file beside it and a rename; on any failure the temp file
    goes and `path` is as it was."""
    option = orjson.OPT_INDENT_2 if indent else 0
    temp = part_of(path)
    fd = os.open(temp, _FLAGS, 0o666, dir_fd=dir_fd)
    try:
        try:
            write_all(fd, [orjson.dumps(data, option=option)])
        finally:
            os.close(fd)
        os.rename(temp, path, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise


def check_writable(path: Path) -> None:
    """Raise the OSError that `write_json(path, ...)` would meet, before any work is done:
    its temp file is created and removed (the file itself appears only at the end)."""
    if path.is_dir():
        raise IsADirectoryError(21, "Is a directory")
    temp = part_of(path)
    os.close(os.open(temp, _FLAGS, 0o666))
    os.unlink(temp)
