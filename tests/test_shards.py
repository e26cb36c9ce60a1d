"""Shards: N processes over one list fetch every URL exactly once, each host in one shard;
`report` tells whether the whole set is done."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bulkfetch.errors import UsageError
from bulkfetch.lists.shards import keeps, owner, parse
from bulkfetch.models import Job, SafeRelPath, Shard, ShardBy
from tests.helpers import bulkfetch_cmd, cli_env, read_manifest, run_cli, wait_for, write_list
from tests.server import OTHER_HOSTS, Server

HOSTS = ("127.0.0.1", *OTHER_HOSTS)


def test_the_owner_of_a_key_is_the_same_in_every_process() -> None:
    """A stable digest: Python's hash() is salted per process, which would split hosts."""
    code = ("from bulkfetch.lists.shards import owner; "
            "print([owner(f'h{i}:80', 7) for i in range(50)])")
    seen = {
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "PYTHONHASHSEED": seed}, check=True).stdout
        for seed in ("1", "2", "3")
    }
    assert len(seen) == 1 and seen == {f"{[owner(f'h{i}:80', 7) for i in range(50)]}\n"}


def test_every_host_is_kept_by_exactly_one_shard() -> None:
    jobs = [Job(where="u:1", url=f"http://h{h}/{n}", path=SafeRelPath("x"), host=f"h{h}:80")
            for h in range(30) for n in range(5)]
    for job in jobs:
        owners = [i for i in range(4) if keeps(Shard(i, 4), job)]
        assert len(owners) == 1
        assert owners[0] == owner(job.host, 4)  # all of a host's URLs go together
    by_url = {i: sum(keeps(Shard(i, 4, ShardBy.URL), job) for job in jobs) for i in range(4)}
    assert sum(by_url.values()) == len(jobs) and min(by_url.values()) > 10


@pytest.mark.parametrize(("env", "expected"), [
    ({"JOB_COMPLETION_INDEX": "2", "BULKFETCH_SHARD_COUNT": "5"}, (2, 5)),
    ({"AWS_BATCH_JOB_ARRAY_INDEX": "0", "AWS_BATCH_JOB_ARRAY_SIZE": "3"}, (0, 3)),
    ({"BATCH_TASK_INDEX": "7", "BATCH_TASK_COUNT": "8"}, (7, 8)),
    ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "4"},
     (3, 4)),  # --array=1-4: the fourth task is shard 3
])
def test_auto_reads_the_engines_environment(env: dict[str, str], expected: tuple[int, int]
                                             ) -> None:
    shard = parse("auto", by=ShardBy.HOST, count=None, env=env)
    assert (shard.index, shard.count) == expected


@pytest.mark.parametrize(("spec", "env", "count", "message"), [
    ("auto", {}, None, "no shard index in the environment"),
    ("auto", {"JOB_COMPLETION_INDEX": "1"}, None, "--shard-count"),
    ("auto", {"JOB_COMPLETION_INDEX": "x"}, 3, "not a number"),
    ("3/3", {}, None, "not in 0..2"),
    ("1of3", {}, None, "expected I/N"),
])
def test_bad_shard_settings(spec: str, env: dict[str, str], count: int | None,
                            message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(spec, by=ShardBy.HOST, count=count, env=env)


def shard_list(server: Server, path: Path) -> tuple[Path, list[str]]:
    """40 URLs over 4 hosts, one listed twice, and a bad line."""
    urls = [server.url_on(HOSTS[n % 4], f"/bytes/{500 + n}?delay=0.02") for n in range(40)]
    write_list(path, [*urls, urls[3], "ftp://not-http/x"])
    return path, [*urls, "ftp://not-http/x"]


ENGINE_ENV = [
    lambda i: {"JOB_COMPLETION_INDEX": str(i), "BULKFETCH_SHARD_COUNT": "3"},
    lambda i: {"AWS_BATCH_JOB_ARRAY_INDEX": str(i), "AWS_BATCH_JOB_ARRAY_SIZE": "3"},
    lambda i: {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "3"},
]


@pytest.mark.parametrize("engine", ENGINE_ENV)
def test_shards_together_fetch_every_url_once_with_per_host_exact(
    server: Server, tmp_path: Path, engine: object
) -> None:
    src, urls = shard_list(server, tmp_path / "u")
    out = tmp_path / "out"
    procs = [
        subprocess.Popen(bulkfetch_cmd(str(src), "-o", str(out), "--shard", "auto",
                                       "--per-host", "2", "-q"),
                         env={**cli_env(), **engine(i)},  # type: ignore[operator]
                         stderr=subprocess.DEVNULL)
        for i in range(3)
    ]
    codes = [proc.wait(60) for proc in procs]
    assert codes.count(1) == 1 and codes.count(0) == 2  # the bad line fails in one shard
    seen: list[str] = []
    for i in range(3):
        seen += read_manifest(out / ".bulkfetch" / "shards" / f"{i}-of-3" / "manifest.jsonl")
    assert sorted(seen) == sorted(urls)  # each exactly once, the duplicate once
    assert server.stats.count("/bytes/503") == 1
    assert max(server.stats.host_max_in_flight.values()) <= 2
    proc = run_cli("report", str(out))
    assert proc.returncode == 1  # all done, one failure
    assert "3 shards: 3 done" in proc.stderr and "40 ok, 1 failed" in proc.stderr
    assert "ftp://not-http/x" in proc.stderr


def test_a_killed_shard_run_again_completes_and_report_follows(
    server: Server, tmp_path: Path
) -> None:
    urls = [server.url_on(HOSTS[n % 4], f"/bytes/{600 + n}?delay=0.3") for n in range(24)]
    src = write_list(tmp_path / "u", urls)
    out = tmp_path / "out"
    victim = owner(f"127.0.0.1:{server.port}", 3)  # a shard that surely has URLs
    others = [i for i in range(3) if i != victim]
    for i in others:
        assert run_cli(str(src), "-o", str(out), "--shard", f"{i}/3").returncode == 0
    name = f"{victim}-of-3"
    proc = run_cli("report", str(out))
    assert proc.returncode == 1 and f"1 missing ({name})" in proc.stderr
    killed = subprocess.Popen(
        bulkfetch_cmd(str(src), "-o", str(out), "--shard", f"{victim}/3", "-c", "1"),
        env=cli_env(), stderr=subprocess.DEVNULL)
    manifest = out / ".bulkfetch" / "shards" / name / "manifest.jsonl"
    wait_for(lambda: manifest.exists() and manifest.stat().st_size > 0)
    twin = run_cli(str(src), "-o", str(out), "--shard", f"{victim}/3")  # an engine's retry
    assert twin.returncode == 75 and "another bulkfetch run" in twin.stderr
    assert f"running ({name})" in run_cli("report", str(out)).stderr
    killed.send_signal(signal.SIGKILL)
    killed.wait(10)
    proc = run_cli("report", str(out))
    assert proc.returncode == 1 and f"1 unfinished ({name})" in proc.stderr
    assert run_cli(str(src), "-o", str(out), "--shard", f"{victim}/3").returncode == 0
    proc = run_cli("report", str(out), "--json")
    assert proc.returncode == 0 and "3 shards: 3 done" in proc.stderr
    assert '"complete": true' in proc.stdout
    rows = {}
    for i in range(3):
        rows |= read_manifest(out / ".bulkfetch" / "shards" / f"{i}-of-3" / "manifest.jsonl")
    assert sorted(rows) == sorted(urls) and all(r["status"] == "ok" for r in rows.values())


def test_report_where_no_run_was_is_a_usage_error(tmp_path: Path) -> None:
    proc = run_cli("report", str(tmp_path))
    assert proc.returncode == 2 and "no run here" in proc.stderr


def test_the_library_runs_one_shard_and_reports_each_result(
    server: Server, tmp_path: Path
) -> None:
    import bulkfetch

    urls = [server.url_on(HOSTS[n % 4], f"/bytes/{700 + n}") for n in range(20)]
    seen: list[str] = []
    summaries = [
        bulkfetch.fetch([iter(urls)], tmp_path / "out", shard=(i, 2), concurrency=4,
                        on_result=lambda r: seen.append(r.url))
        for i in range(2)
    ]
    assert sum(s.ok for s in summaries) == 20 and sorted(seen) == sorted(urls)
    assert all((tmp_path / "out" / ".bulkfetch" / "shards" / f"{i}-of-2" / "done.json").exists()
               for i in range(2))
