"""Where a run keeps its own files under --out: one place for every path of `.bulkfetch/`.

A run without shards keeps them in `.bulkfetch/`; shard I of N in `.bulkfetch/shards/I-of-N/`,
so shards can share one --out volume with no shared lock: each has its own lock, manifest,
state and done marker. Partials (`.bulkfetch/partial/`) are keyed by URL, and a URL belongs
to one shard, so they share that folder.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from bulkfetch.models import Shard

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
