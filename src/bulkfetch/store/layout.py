"""Where a run keeps its own files under --out: one place for every path of `.bulkfetch/`.

A run without shards keeps them in `.bulkfetch/`; shard I of N in `.bulkfetch/shards/I-of-N/`,
so shards can share one --out volume with no shared lock: each has its own lock, manifest,
state and done marker. Partials (`.bulkfetch/partial/`) are keyed by URL, and a URL belongs
to one shard, so they share that folder.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.models import Shard
from bulkfetch.show.outgoing import INVISIBLE

STATE_DIR = ".bulkfetch"
SHARDS_DIR = "shards"
MANIFEST_NAME = "manifest.jsonl"
STATE_NAME = "state.sqlite"
DONE_NAME = "done.json"
LOCK_NAME = "lock"
# A run's own files in its home: opened only as plain files, never through a link.
OWN_FILES = (LOCK_NAME, MANIFEST_NAME, STATE_NAME, f"{STATE_NAME}-wal", f"{STATE_NAME}-shm",
             DONE_NAME)
PARTIAL_DIR = os.path.join(STATE_DIR, "partial")  # shared by a run's shards: keyed by URL
PART_SUFFIX = ".part"  # a body, or a JSON file, on its way to its name
URL_KEY_BYTES = 16


def url_key(url: str) -> bytes:
    """What a URL is known by at rest (the state's key, a partial's name): a digest of the URL
    as listed, so that no password it holds is ever kept on disk."""
    return hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=URL_KEY_BYTES).digest()


STEM_MAX_BYTES = 100
# Unsafe in a file name: a separator or a reserved character anywhere, and what a reader
# would not see (a bidi override turns `invoice\u202efdp.exe` into `invoice…exe.pdf` on screen).
# And a lone surrogate: a byte that was not UTF-8 (surrogateescape) makes no file name.
_UNSAFE = re.compile(f'[{INVISIBLE}\ud800-\udfff/\\\\:*?"<>|]')
_EXT = re.compile(r"\.[A-Za-z0-9]{1,10}$")
_TAG = re.compile(r"-([0-9a-f]{16})(\.[A-Za-z0-9]{1,10})?$")  # an automatic name's end


def clean(segment: str) -> str:
    """One path segment fit for any file system and any reader."""
    return _UNSAFE.sub("_", segment).strip(" .")


def tagged_leaf(leaf: str, tag: str) -> str:
    """An automatic file name: `stem-TAG.ext`, TAG the URL's (16 hex digits), so that two URLs
    never share a name; the stem cut to STEM_MAX_BYTES."""
    leaf = clean(leaf) or "index"
    match = _EXT.search(leaf)
    stem, ext = (leaf[: match.start()], match.group()) if match and match.start() else (leaf, "")
    stem = stem.encode("utf-8", "surrogatepass")[:STEM_MAX_BYTES].decode("utf-8", "ignore")
    return f"{stem}-{tag}{ext}"


def renamed(auto_path: str, filename: str) -> str | None:
    """`auto_path` (an automatic name) with its file name taken from `filename` (a
    Content-Disposition's): its last segment made safe, in the same folder, with the same
    tag. None when `filename` leaves nothing usable."""
    folder, _, leaf = auto_path.rpartition("/")
    tag = _TAG.search(leaf)
    base = filename.replace("\\", "/").rsplit("/", 1)[-1]
    if tag is None or not clean(base):
        return None
    return f"{folder}/{tagged_leaf(base, tag[1])}" if folder else tagged_leaf(base, tag[1])


def same_tag(auto_path: str, other: str) -> bool:
    """`other` is `auto_path` renamed by a Content-Disposition: the same folder and tag (an
    earlier run's file of the same URL, to revalidate rather than fetch again)."""
    folder, _, leaf = auto_path.rpartition("/")
    other_folder, _, other_leaf = other.rpartition("/")
    tag, other_tag = _TAG.search(leaf), _TAG.search(other_leaf)
    return (folder == other_folder and tag is not None and other_tag is not None
            and tag[1] == other_tag[1])


def part_of(path: Path) -> Path:
    """The hidden temp file beside `path` that becomes it by a rename."""
    return path.with_name(f".{path.name}{PART_SUFFIX}")


@dataclass(frozen=True, slots=True)
class Layout:
    home: Path  # this run's own folder

    @classmethod
    def of(cls, out: Path, shard: Shard | None = None) -> Layout:
        home = out / STATE_DIR
        return cls(home / SHARDS_DIR / shard.name if shard else home)

    @property
    def manifest(self) -> Path:
        return self.home / MANIFEST_NAME

    @property
    def state(self) -> Path:
        return self.home / STATE_NAME

    @property
    def lock(self) -> Path:
        return self.home / LOCK_NAME

    @property
    def runs(self) -> Path:
        """Where earlier runs' manifests are kept (the newest RUNS_KEPT)."""
        return self.home / "runs"

    @property
    def done(self) -> Path:
        """The marker a shard writes when it has finished: its summary."""
        return self.home / DONE_NAME


def temp_tag(shard: Shard | None) -> str:
    """What a shard's temp files are marked with (shards on other machines share the folders,
    and only our own leftovers may be swept); nothing without shards."""
    return shard.name if shard else ""


def shard_homes(out: Path) -> list[Path]:
    """Every shard folder under --out, as `report` finds them."""
    root = out / STATE_DIR / SHARDS_DIR
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


SHARD_NAME = re.compile(r"(\d+)-of-(\d+)")


def missing_shards(homes: list[Path]) -> list[str]:
    """The shards of N that have no folder among `homes` (I-of-N names, I from 0), by name."""
    found = [m for home in homes if (m := SHARD_NAME.fullmatch(home.name)) is not None]
    counts = {int(m[2]) for m in found}
    if len(counts) != 1:
        return []  # no shards, or several counts (`report` refuses those)
    (count,) = counts
    have = {int(m[1]) for m in found}
    return [Shard(i, count).name for i in range(count) if i not in have]
