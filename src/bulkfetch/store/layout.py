"""Where a run keeps its own files under --out: one place for every path of `.bulkfetch/`.

A run without shards keeps them in `.bulkfetch/`; shard I of N in `.bulkfetch/shards/I-of-N/`,
so shards can share one --out volume with no shared lock: each has its own lock, manifest,
state and done marker. Partials (`.bulkfetch/partial/`) are keyed by URL, and a URL belongs
to one shard, so they share that folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bulkfetch.models import Shard

STATE_DIR = ".bulkfetch"
SHARDS_DIR = "shards"
MANIFEST_NAME = "manifest.jsonl"
STATE_NAME = "state.sqlite"
DONE_NAME = "done.json"


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
        return self.home / "lock"

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
