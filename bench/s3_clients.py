"""The S3 library choice, measured: aiobotocore against obstore, per small PUT.

    .venv/bin/python bench/s3_clients.py [--rounds 3] [--count 2000]

Each round, in a fresh process per library (alternating): import time, then `count` PUTs of
4 KiB at concurrency 50 into a local moto server; the process's own CPU (obstore's Rust threads
included) per PUT, and the wall time (moto, on the same cores, sets most of it). obstore is
not a dependency: this needs `pip install obstore` beside the test extra.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.s3server import MotoServer

CHILD = r"""
import asyncio, json, os, resource, sys, time
lib, count, endpoint = sys.argv[1], int(sys.argv[2]), sys.argv[3]
t0 = time.perf_counter()
if lib == "aiobotocore":
    from aiobotocore.session import get_session
    from botocore.config import Config
else:
    from obstore.store import S3Store
    import obstore
imported = time.perf_counter() - t0
body = os.urandom(4096)

async def main():
    sem = asyncio.Semaphore(50)
    if lib == "aiobotocore":
        config = Config(max_pool_connections=50, request_checksum_calculation="when_required")
        async with get_session().create_client("s3", config=config) as s3:
            async def put(i):
                async with sem:
                    await s3.put_object(Bucket="clients", Key=f"a/{os.getpid()}/{i}", Body=body,
                                        IfNoneMatch="*")
            await asyncio.gather(*(put(i) for i in range(count)))
    else:
        store = S3Store("clients", endpoint=endpoint, region="us-east-1",
                        client_options={"allow_http": True})
        async def put(i):
            async with sem:
                await obstore.put_async(store, f"o/{os.getpid()}/{i}", body, mode="create")
        await asyncio.gather(*(put(i) for i in range(count)))

before = resource.getrusage(resource.RUSAGE_SELF)
t1 = time.perf_counter()
asyncio.run(main())
wall = time.perf_counter() - t1
after = resource.getrusage(resource.RUSAGE_SELF)
cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
print(json.dumps({"import_ms": imported * 1000, "wall_s": wall, "cpu_us_per_put": cpu / count * 1e6,
                  "rss_mb": after.ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    args = parser.parse_args()
    moto = MotoServer().start()
    try:
        moto.bucket("clients")
        results: dict[str, list[dict[str, float]]] = {"aiobotocore": [], "obstore": []}
        for n in range(args.rounds):
            for lib in (("aiobotocore", "obstore") if n % 2 == 0 else ("obstore", "aiobotocore")):
                done = subprocess.run([sys.executable, "-c", CHILD, lib, str(args.count),
                                       moto.endpoint], env=moto.env(), capture_output=True,
                                      text=True, check=False)
                if done.returncode:
                    raise SystemExit(f"{lib}: {done.stderr[-2000:]}")
                results[lib].append(json.loads(done.stdout))
    finally:
        moto.stop()
    print("| library | import ms | CPU µs / PUT | wall s | peak RSS MB |")
    print("|---|---|---|---|---|")
    for lib, runs in results.items():
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"| {lib} | {med['import_ms']:.0f} | {med['cpu_us_per_put']:.0f} | "
              f"{med['wall_s']:.2f} | {med['rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
