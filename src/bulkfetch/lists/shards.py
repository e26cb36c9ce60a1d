"""Shards, pure: which entries of the lists belong to this process, and which shard this is.

Every shard reads and plans every line, exactly as one process would (dedupe, NAME checks,
naming), then keeps the entries whose key digests to its index: the host (lower-cased, port
included), so that each host lives in exactly one shard and `--per-host`, `--host-rate` and
the 429 pause stay exact with no coordination; or, with `--shard-by url`, the URL. A line that
cannot be fetched is reported by the shard its text digests to: exactly once in all.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Mapping

from bulkfetch.errors import UsageError
from bulkfetch.lists.plan import Rejected, Repeat
from bulkfetch.models import Job, Settings, Shard, ShardBy

# (index variable, count variable or None, first index variable or None), in this order.
ENGINES: tuple[tuple[str, str | None, str | None], ...] = (
    ("JOB_COMPLETION_INDEX", None, None),  # Kubernetes Indexed Job
    ("AWS_BATCH_JOB_ARRAY_INDEX", "AWS_BATCH_JOB_ARRAY_SIZE", None),
    ("BATCH_TASK_INDEX", "BATCH_TASK_COUNT", None),  # Google Cloud Batch
    ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN"),
)
COUNT_VARIABLE = "BULKFETCH_SHARD_COUNT"
_SPEC = re.compile(r"(\d{1,6})/(\d{1,6})")


def owner(key: str, count: int) -> int:
    """The shard that owns `key`: a stable digest (never Python's salted hash()) modulo count."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count



def divided(settings: Settings) -> Settings:
    """The limits one shard may use. --rate and --limit-rate count the whole run, so each
    shard takes 1/N of them; with --shard-by url a host's URLs are in every shard, so
    --per-host and --host-rate are divided by N too (--per-host rounded down, at least 1)."""
    shard = settings.shard
    if shard is None or shard.count == 1:
        return settings
    rate = settings.rate / shard.count if settings.rate else settings.rate
    if settings.limit_rate:
        settings = dataclasses.replace(
            settings, limit_rate=max(1, settings.limit_rate // shard.count))
    if shard.by is ShardBy.HOST:
        return dataclasses.replace(settings, rate=rate)
    host_rate = settings.host_rate / shard.count if settings.host_rate else settings.host_rate
    per_host = max(1, settings.per_host // shard.count) if settings.per_host else 0
    return dataclasses.replace(settings, rate=rate, host_rate=host_rate, per_host=per_host)


def keeps(shard: Shard, item: Job | Rejected | Repeat) -> bool:
    if isinstance(item, Rejected | Repeat):
        key = item.url
    else:
        key = item.host if shard.by is ShardBy.HOST else item.url
    return owner(key, shard.count) == shard.index


def parse(spec: str, *, by: ShardBy, count: int | None, env: Mapping[str, str]) -> Shard:
    """`I/N`, or `auto`: the index from the engine's environment, the count from the engine
    where it gives one, else `count` (--shard-count) or BULKFETCH_SHARD_COUNT."""
    if spec == "auto":
        index, count = _from_engine(env, count)
    elif (match := _SPEC.fullmatch(spec.strip())) is not None:
        index, count = int(match[1]), int(match[2])
    else:
        raise UsageError(f"--shard {spec!r}: expected I/N (such as 0/4) or auto")
    if count < 1:
        raise UsageError(f"--shard {spec!r}: the count must be at least 1")
    if not 0 <= index < count:
        raise UsageError(f"--shard: index {index} is not in 0..{count - 1} (count {count})")
    return Shard(index, count, by)


def _from_engine(env: Mapping[str, str], count: int | None) -> tuple[int, int]:
    for index_name, count_name, first_name in ENGINES:
        if index_name not in env:
            continue
        index = _number(env, index_name)
        if first_name is not None and first_name in env:
            index -= _number(env, first_name)
        if count_name is not None and count_name in env:
            return index, _number(env, count_name)
        if count is None and COUNT_VARIABLE in env:
            count = _number(env, COUNT_VARIABLE)
        if count is None:
            raise UsageError(f"--shard auto: {index_name}={env[index_name]} names this shard "
                             f"but not how many there are: give --shard-count N "
                             f"(or {COUNT_VARIABLE})")
        return index, count
    names = ", ".join(name for name, _, _ in ENGINES)
    raise UsageError(f"--shard auto: no shard index in the environment (looked for {names})")


def _number(env: Mapping[str, str], name: str | None) -> int:
    value = env.get(name or "", "")
    if not value.isdigit():
        raise UsageError(f"--shard auto: {name}={value!r} is not a number")
    return int(value)
