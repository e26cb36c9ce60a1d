"""The library as a type checker sees it from a user's script (mypy --strict): the names a
caller needs are there and typed; a name that is not, or one string for the list of sources,
is an error before anything runs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

GOOD = '''
import asyncio
import threading
from collections.abc import AsyncIterator

import bulkfetch
from bulkfetch import Status, Summary, Timeouts, UsageError


def run() -> Summary:
    try:
        return bulkfetch.fetch(["urls.txt", [("https://example.com/a", "a.bin")]], "out/",
                               concurrency=8, timeouts=Timeouts(total_s=30), max_bytes="10M",
                               headers={"X-Token": "t"}, on_result=lambda r: None)
    except (UsageError, bulkfetch.Interrupted):
        raise


async def later() -> bool:
    summary = await bulkfetch.fetch_async(("urls.txt",), "out/", shard=(0, 4))
    return summary.ok > 0 and Status.OK.value == "ok"


async def urls() -> AsyncIterator[str]:
    yield "https://example.com/a"


async def streamed() -> list[str]:
    results = bulkfetch.stream([urls()], "out/", per_host=2)
    seen = [result.url async for result in results]
    return seen if results.summary is None else [*seen, str(results.summary.manifest)]


def stoppable(stop: threading.Event) -> bool:
    for result in bulkfetch.stream(["urls.txt"], "out/", stop=stop):
        if result.status is Status.FAILED:
            break
    summary = bulkfetch.fetch(["urls.txt"], "out/", stop=stop, handle_signals=True)
    return summary.stopped
'''

BAD = '''
import bulkfetch

bulkfetch.Nonexistent
bulkfetch.fetch("urls.txt", "out/")
bulkfetch.stream("urls.txt", "out/")
bulkfetch.fetch(["urls.txt"], "out/", handle_signals="yes")
'''


def mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "script.py"
    script.write_text(code)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental",
                           str(script)], capture_output=True, text=True, timeout=300,
                          cwd=tmp_path)


def test_a_users_script_type_checks(tmp_path: Path) -> None:
    proc = mypy(tmp_path, GOOD)
    assert proc.returncode == 0, proc.stdout


def test_what_is_not_there_is_an_error_before_it_runs(tmp_path: Path) -> None:
    proc = mypy(tmp_path, BAD)
    assert proc.returncode == 1
    assert 'Module has no attribute "Nonexistent"' in proc.stdout
    assert 'Argument 1 to "fetch" has incompatible type "str"' in proc.stdout
    assert 'Argument 1 to "stream" has incompatible type "str"' in proc.stdout
    assert 'Argument "handle_signals" to "fetch" has incompatible type "str"' in proc.stdout
