"""Shards on a real engine: a Dask LocalCluster runs them through the library entry point."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import read_manifest, write_list
from tests.server import OTHER_HOSTS, Server

distributed = pytest.importorskip("distributed")


def run_shard(src: str, out: str, index: int, count: int) -> tuple[int, int]:
    import bulkfetch  # on the Dask worker

    summary = bulkfetch.fetch([src], out, shard=(index, count), concurrency=8, per_host=2)
    return summary.ok, summary.failed


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::ResourceWarning",
                            "ignore::UserWarning")
def test_dask_runs_every_shard_and_together_they_fetch_the_list_once(
    server: Server, tmp_path: Path
) -> None:
    hosts = ("127.0.0.1", *OTHER_HOSTS)
    urls = [server.url_on(hosts[n % 4], f"/bytes/{800 + n}") for n in range(60)]
    src = write_list(tmp_path / "u", urls)
    out = tmp_path / "out"
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                 dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
    ):
        futures = [client.submit(run_shard, str(src), str(out), i, 4, pure=False)
                   for i in range(4)]
        results = client.gather(futures)
    assert sum(ok for ok, _ in results) == 60 and not any(failed for _, failed in results)
    rows: dict[str, object] = {}
    for i in range(4):
        shard = read_manifest(out / ".bulkfetch" / "shards" / f"{i}-of-4" / "manifest.jsonl")
        assert not set(shard) & set(rows)
        rows |= shard
        assert (out / ".bulkfetch" / "shards" / f"{i}-of-4" / "done.json").exists()
    assert sorted(rows) == sorted(urls)
    assert max(server.stats.host_max_in_flight.values()) <= 2
