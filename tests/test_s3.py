"""--out s3://BUCKET/PREFIX against a real S3-compatible server (moto, server mode) on loopback:
the CLI in a subprocess, the origin a real aiohttp server, faults injected there."""

from __future__ import annotations

import asyncio
import hashlib
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from bulkfetch.errors import UsageError
from bulkfetch.models import Bucket
from bulkfetch.store import s3
from bulkfetch.store.bucket import Budget
from tests.helpers import bulkfetch_cmd, wait_for, write_list
from tests.s3server import SECRET, MotoServer, objects, open_uploads
from tests.server import Server

pytest.importorskip("aiobotocore")

STATE = ".bulkfetch/"


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    server = MotoServer().start()
    yield server
    server.stop()


@pytest.fixture
def bucket(moto: MotoServer, request: pytest.FixtureRequest) -> str:
    return moto.bucket(f"t-{request.node.name[5:40].replace('_', '-').lower()}")


def run(moto: MotoServer, pod: Path, *args: str, timeout: float = 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI as a pod runs it: `pod` is its own temp folder (no disk shared between pods)."""
    pod.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run(bulkfetch_cmd(*args), capture_output=True, text=True,
                          timeout=timeout, env=env or moto.env(TMPDIR=str(pod)))
    for marker in ("Unclosed", "ResourceWarning", "Traceback", SECRET):
        assert marker not in proc.stderr, proc.stderr
    return proc


def manifest_in(client: Any, bucket: str, prefix: str) -> dict[str, dict[str, Any]]:
    got = client.get_object(Bucket=bucket, Key=f"{prefix}{STATE}manifest.jsonl")
    rows = [orjson.loads(line) for line in got["Body"].read().splitlines()]
    return {row["url"]: row for row in rows}


def bodies(client: Any, bucket: str, prefix: str) -> dict[str, bytes]:
    """The bodies under `prefix`, by path under it (bulkfetch's own objects left out)."""
    return {key[len(prefix):]: data for key, data in objects(client, bucket, prefix).items()
            if not key[len(prefix):].startswith(STATE)}


def served(server: Server, count: int, size: int = 3000) -> list[str]:
    """`count` static files (ETag, Last-Modified, 304s) of distinct content."""
    urls = []
    for i in range(count):
        (server.root / f"s3-{i}.bin").write_bytes(hashlib.sha256(b"%d" % i).digest() * (size // 32))
        urls.append(server.url(f"/static/s3-{i}.bin"))
    return urls


def test_small_and_100mb_bodies_land_whole_with_their_sha256(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """Each object holds the body the manifest describes; its sha256 and source URL are
    stored with it (metadata for one PUT, a tag for a multipart one); no upload is left open."""
    small = served(server, 20)
    medium = server.url("/bytes/3000000")  # one PUT, hashed on a thread
    big = server.url(f"/big/{100 * 1024 * 1024}")
    urls = write_list(tmp_path / "urls.txt", [*small, medium, big])
    proc = run(moto, tmp_path / "pod", str(urls), "-o", f"s3://{bucket}/crawl/day1", "-c", "8")
    assert proc.returncode == 0, proc.stderr
    client = moto.client()
    rows = manifest_in(client, bucket, "crawl/day1/")
    landed = bodies(client, bucket, "crawl/day1/")
    assert len(rows) == 22 and set(landed) == {row["path"] for row in rows.values()}
    for url, row in rows.items():
        data = landed[row["path"]]
        assert row["status"] == "ok" and row["bytes"] == len(data)
        assert row["sha256"] == hashlib.sha256(data).hexdigest()
        head = client.head_object(Bucket=bucket, Key=f"crawl/day1/{row['path']}")
        assert head["Metadata"]["source-url"] == url
        if url == big:
            assert len(data) == 100 * 1024 * 1024
            tags = client.get_object_tagging(Bucket=bucket, Key=f"crawl/day1/{row['path']}")
            assert {"Key": "sha256", "Value": row["sha256"]} in tags["TagSet"]
        else:
            assert head["Metadata"]["sha256"] == row["sha256"]
    assert open_uploads(client, bucket) == []
    assert "s3://" in proc.stderr  # the summary says where the manifest went


def test_a_body_cut_mid_upload_leaves_no_object_and_no_open_upload(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """The origin drops the connection after 20 MB of 30 (two parts already up): the upload
    is aborted, nothing is at the key, and the run reports the URL failed."""
    url = server.url("/ranged/cut-s3?size=30000000&cut=20000000")
    proc = run(moto, tmp_path / "pod", str(write_list(tmp_path / "u", [url])),
               "-o", f"s3://{bucket}/p", "--retries", "0")
    assert proc.returncode == 1, proc.stderr
    client = moto.client()
    assert manifest_in(client, bucket, "p/")[url]["status"] == "failed"
    assert bodies(client, bucket, "p/") == {}
    assert open_uploads(client, bucket) == []


def test_sigterm_mid_run_leaves_only_whole_objects_and_a_valid_manifest(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """SIGTERM while three bodies are mid-upload (two parts each already up): exit 143, the
    ten finished bodies are objects, the three cut off are not, no upload stays open, and
    the manifest in the bucket has a line for each."""
    done = served(server, 10)
    stalled = [server.url(f"/stall/60?before={20 * 1024 * 1024}&i={i}") for i in range(3)]
    pod = tmp_path / "pod"
    pod.mkdir()
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "u", done + stalled)), "-o",
                      f"s3://{bucket}/p", "-c", "8"),
        stderr=subprocess.PIPE, text=True, env=moto.env(TMPDIR=str(pod)))
    client = moto.client()
    wait_for(lambda: len(open_uploads(client, bucket)) == 3, timeout=60)
    local = next(pod.glob(f"bulkfetch-*/*/{STATE}manifest.jsonl"))
    wait_for(lambda: len(local.read_bytes().splitlines()) == 10)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "Traceback" not in stderr
    rows = manifest_in(client, bucket, "p/")
    assert {url: row["status"] for url, row in rows.items()} == {
        **dict.fromkeys(done, "ok"), **dict.fromkeys(stalled, "interrupted")}
    landed = bodies(client, bucket, "p/")
    assert set(landed) == {rows[url]["path"] for url in done}
    for url in done:
        assert hashlib.sha256(landed[rows[url]["path"]]).hexdigest() == rows[url]["sha256"]
    assert open_uploads(client, bucket) == []


def test_create_only_refuses_a_clobber_and_takes_the_same_body(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """A run that does not know a key (its state elsewhere) never overwrites what is there:
    another body stays and the URL fails saying so; the very same body counts as done."""
    urls = served(server, 2)
    listed = str(write_list(tmp_path / "u", urls))
    first = run(moto, tmp_path / "a", listed, "-o", f"s3://{bucket}/p", "--state",
                str(tmp_path / "state-a"))
    assert first.returncode == 0, first.stderr
    rows = {orjson.loads(line)["url"]: orjson.loads(line) for line in
            (tmp_path / "state-a" / STATE / "manifest.jsonl").read_bytes().splitlines()}
    taken = f"p/{rows[urls[0]]['path']}"
    client = moto.client()
    client.put_object(Bucket=bucket, Key=taken, Body=b"somebody else's object")
    second = run(moto, tmp_path / "b", listed, "-o", f"s3://{bucket}/p", "--state",
                 str(tmp_path / "state-b"))
    assert second.returncode == 1, second.stderr
    again = {orjson.loads(line)["url"]: orjson.loads(line) for line in
             (tmp_path / "state-b" / STATE / "manifest.jsonl").read_bytes().splitlines()}
    assert again[urls[0]]["status"] == "failed"
    assert "already at" in again[urls[0]]["error"] and "not overwritten" in again[urls[0]]["error"]
    assert again[urls[1]]["status"] == "ok"  # the same body was there: nothing to do
    got = client.get_object(Bucket=bucket, Key=taken)["Body"].read()
    assert got == b"somebody else's object"


def test_an_unchanged_rerun_from_a_fresh_pod_uploads_nothing(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """The state goes to the bucket at the end; a pod with an empty disk fetches it, asks
    conditionally, gets 304s and puts no body: every object is the one the first run put."""
    urls = served(server, 15)
    listed = str(write_list(tmp_path / "u", urls))
    assert run(moto, tmp_path / "pod1", listed, "-o", f"s3://{bucket}/n").returncode == 0
    client = moto.client()
    before = {key: client.head_object(Bucket=bucket, Key=key)["LastModified"]
              for key in objects(client, bucket, "n/") if STATE not in key}
    server.reset()
    proc = run(moto, tmp_path / "pod2", listed, "-o", f"s3://{bucket}/n")
    assert proc.returncode == 0, proc.stderr
    assert server.stats.statuses == [304] * 15
    rows = manifest_in(client, bucket, "n/")
    assert {row["status"] for row in rows.values()} == {"not_modified"}
    assert sum(row["received"] for row in rows.values()) == 0
    after = {key: client.head_object(Bucket=bucket, Key=key)["LastModified"]
             for key in objects(client, bucket, "n/") if STATE not in key}
    assert after == before


def test_a_missing_bucket_is_one_line_and_exit_2_before_any_fetch(
    moto: MotoServer, server: Server, tmp_path: Path,
) -> None:
    proc = run(moto, tmp_path / "pod", str(write_list(tmp_path / "u", served(server, 3))),
               "-o", "s3://no-such-bucket/p")
    assert proc.returncode == 2
    assert proc.stderr.strip() == "bulkfetch: error: --out s3://no-such-bucket/p/: no such bucket"
    assert server.stats.paths == []


def test_bad_credentials_are_one_line_and_exit_2_before_any_fetch(
    server: Server, tmp_path: Path,
) -> None:
    """Against a server that checks keys: refused, said in one line, the secret never shown."""
    strict = MotoServer(auth=True).start()
    try:
        strict.bucket("locked")
        proc = run(strict, tmp_path / "pod",
                   str(write_list(tmp_path / "u", served(server, 3))), "-o", "s3://locked/p",
                   env=strict.env(TMPDIR=str(tmp_path), AWS_SECRET_ACCESS_KEY="wrong-secret"))
    finally:
        strict.stop()
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "credentials were refused" in lines[0], proc.stderr
    assert "wrong-secret" not in proc.stderr
    assert server.stats.paths == []


@pytest.mark.parametrize(("text", "bucket"), [
    ("s3://b1k/", Bucket("b1k", "")),
    ("s3://b1k", Bucket("b1k", "")),
    ("s3://b1k/a/b", Bucket("b1k", "a/b/")),
    ("s3://b1k//a//b/", Bucket("b1k", "a/b/")),  # empty segments would make keys with "//"
])
def test_parse(text: str, bucket: Bucket) -> None:
    assert s3.parse(text) == bucket


@pytest.mark.parametrize("text", ["s3://", "s3:///x", "s3://a/x", "s3://b1k/a/../b",
                                  "s3://bad name/x"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(UsageError):
        s3.parse(text)


def test_budget_grants_in_order_and_never_beyond_its_total() -> None:
    """A big request first in line is not overtaken by small ones behind it (it would
    starve), and the bytes granted never exceed the total."""
    async def main() -> list[str]:
        budget, order = Budget(10), []

        async def take(name: str, n: int) -> None:
            await budget.take(n)
            order.append(name)

        budget._free = 0  # everything is held
        tasks = [asyncio.create_task(take("big", 8)), asyncio.create_task(take("small", 2))]
        await asyncio.sleep(0)
        budget.give(3)
        await asyncio.sleep(0)
        assert order == []  # 3 free: "small" fits but waits behind "big"
        budget.give(7)
        await asyncio.gather(*tasks)
        assert budget._free == 0
        return order

    assert asyncio.run(main()) == ["big", "small"]


def test_credentials_and_endpoint_from_a_profile(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """AWS_PROFILE with the AWS tools' files: keys in credentials, endpoint and region in
    config; a profile that is not there is one line and exit 2."""
    (tmp_path / "credentials").write_text(
        f"[crawler]\naws_access_key_id = AKIDPROFILE\naws_secret_access_key = {SECRET}\n")
    (tmp_path / "config").write_text(
        f"[profile crawler]\nregion = us-east-1\nendpoint_url = {moto.endpoint}\n")
    env = {k: v for k, v in moto.env(TMPDIR=str(tmp_path)).items()
           if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
                        "AWS_REGION")}
    env.update(AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               AWS_CONFIG_FILE=str(tmp_path / "config"), AWS_PROFILE="crawler")
    listed = str(write_list(tmp_path / "u", served(server, 2)))
    proc = run(moto, tmp_path, listed, "-o", f"s3://{bucket}/p", env=env)
    assert proc.returncode == 0, proc.stderr
    assert len(bodies(moto.client(), bucket, "p/")) == 2
    proc = run(moto, tmp_path, listed, "-o", f"s3://{bucket}/p", env={**env, "AWS_PROFILE": "nope"})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"bulkfetch: error: --out s3://{bucket}/p/: "
                                   "the AWS profile 'nope' is not configured")


class _NoConditionalWrites:
    """A store that answers If-None-Match with 501 Not Implemented (older MinIO, some
    appliances): the narrow decision of falling back to plain PUTs, once for the run."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []

    async def put_object(self, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.puts.append(kwargs)
        if "IfNoneMatch" in kwargs:
            raise ClientError({"Error": {"Code": "NotImplemented"},
                               "ResponseMetadata": {"HTTPStatusCode": 501}}, "PutObject")
        return {}


def test_a_store_without_conditional_writes_gets_plain_puts() -> None:
    from bulkfetch.models import SafeRelPath
    from bulkfetch.store.bucket import BucketSink
    from bulkfetch.store.sink import Body

    async def main() -> list[bool]:
        store = _NoConditionalWrites()
        sink = BucketSink(Bucket("b1k", "p/"), store, budget=Budget(1 << 20))  # type: ignore[arg-type]
        for name in ("a", "b"):
            pending = sink.open(SafeRelPath(name), Body("http://h/" + name, 3))
            await pending.write(b"abc")
            await pending.commit()
        return ["IfNoneMatch" in put for put in store.puts]

    assert asyncio.run(main()) == [True, False, False]  # asked once, then plain PUTs


def test_the_library_writes_to_a_bucket(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`bulkfetch.fetch(..., "s3://...")` in this process: the same objects, nothing left
    unclosed (warnings are errors here)."""
    import bulkfetch

    for name, value in moto.env().items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    urls = served(server, 3)
    seen: list[str] = []
    summary = bulkfetch.fetch([urls], f"s3://{bucket}/lib", state=tmp_path / "state",
                              on_result=lambda r: seen.append(r.status))
    assert (summary.ok, seen) == (3, ["ok"] * 3)
    assert len(bodies(moto.client(), bucket, "lib/")) == 3


@pytest.mark.parametrize(("args", "says"), [
    (("-o", "s3://b1k/p", "--manifest", "s3://b1k/m.jsonl"), "--manifest takes a local file"),
    (("-o", "s3://b1k/p", "--summary-json", "s3://b1k/s.json"),
     "--summary-json takes a local file"),
    (("-o", "plain-folder", "--state", "st"), "--state goes with --out s3://"),
    (("-o", "s3://x/p",), "not a bucket name: 'x'"),
])
def test_bucket_options_that_cannot_work_are_one_line_and_exit_2(
    tmp_path: Path, args: tuple[str, ...], says: str,
) -> None:
    """Nothing is written under a folder named 's3:' and nothing is fetched."""
    proc = subprocess.run(bulkfetch_cmd(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])),
                                        *args), capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("bulkfetch: error: ") and says in proc.stderr
    assert len(proc.stderr.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["u"]


def test_shards_into_one_bucket_then_report_on_their_state(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """Two shards, each its own pod, one prefix: every body lands once, each shard's manifest
    and done marker are in the bucket, and `report` on a copy of PREFIX/.bulkfetch/ (as
    `aws s3 sync` makes it) says the run is complete."""
    urls = [server.url_on(host, path) for host in ("127.0.0.1", "127.0.0.2", "127.0.0.3")
            for path in (f"/bytes/{1000 + i}" for i in range(4))]
    listed = str(write_list(tmp_path / "u", urls))
    for index in (0, 1):
        proc = run(moto, tmp_path / f"pod{index}", listed, "-o", f"s3://{bucket}/sh",
                   "--shard", f"{index}/2")
        assert proc.returncode == 0, proc.stderr
    client = moto.client()
    assert len(bodies(client, bucket, "sh/")) == len(urls)
    copy = tmp_path / "copy"
    for key, data in objects(client, bucket, f"sh/{STATE}").items():
        target = copy / key[len("sh/"):]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    assert {p.name for p in (copy / STATE / "shards").iterdir()} == {"0-of-2", "1-of-2"}
    proc = subprocess.run(bulkfetch_cmd("report", str(copy)), capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert f"{len(urls)} ok" in proc.stderr.replace(",", "")
    refused = subprocess.run(bulkfetch_cmd("report", f"s3://{bucket}/sh"), capture_output=True,
                             text=True, timeout=60)
    assert refused.returncode == 2 and "report reads a folder" in refused.stderr


def test_an_endpoint_nobody_answers_is_one_line_and_exit_2(
    moto: MotoServer, server: Server, tmp_path: Path,
) -> None:
    dead = f"http://127.0.0.1:{_closed_port()}"
    proc = run(moto, tmp_path / "pod", str(write_list(tmp_path / "u", served(server, 1))),
               "-o", "s3://b1k/p", env=moto.env(TMPDIR=str(tmp_path), AWS_ENDPOINT_URL=dead))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"bulkfetch: error: --out s3://b1k/p/: cannot reach {dead}/b1k"
    assert server.stats.paths == []


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_no_password_reaches_the_bucket(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """URLs with passwords: the objects' metadata, the state and the manifest put in the
    bucket, and the pod's own folder hold none (the state is keyed by the URL's digest)."""
    password = "bucket-pa55word"
    urls = [u.replace("http://", f"http://erin:{password}@", 1) for u in served(server, 3)]
    proc = run(moto, tmp_path / "pod", str(write_list(tmp_path / "u", urls)),
               "-o", f"s3://{bucket}/p", "-v")
    assert proc.returncode == 0, proc.stderr
    assert password not in proc.stderr and "erin:***@" in proc.stderr
    client = moto.client()
    stored = objects(client, bucket)
    assert {key for key in stored if key.startswith(f"p/{STATE}")} >= {
        f"p/{STATE}state.sqlite", f"p/{STATE}manifest.jsonl"}
    assert not [key for key, data in stored.items() if password.encode() in data]
    for key in stored:
        head = client.head_object(Bucket=bucket, Key=key)
        assert password not in str(head.get("Metadata", {}))
    pod = b"".join(p.read_bytes() for p in (tmp_path / "pod").rglob("*") if p.is_file())
    assert password.encode() not in pod


def test_part_sizes_are_capped_whatever_the_announced_length() -> None:
    from bulkfetch.store.bucket import MAX_PART_BYTES, MAX_PARTS, PART_BYTES, _part_bytes
    from bulkfetch.store.sink import StoreFailed

    assert _part_bytes(None) == _part_bytes(10) == PART_BYTES
    assert _part_bytes(MAX_PART_BYTES * MAX_PARTS) == MAX_PART_BYTES
    with pytest.raises(StoreFailed, match="announced as 1,000,000,000,000,000 bytes"):
        _part_bytes(10**15)


def test_a_huge_announced_length_fails_before_memory_follows_it(
    moto: MotoServer, bucket: str, tmp_path: Path,
) -> None:
    """Content-Length: 10^15 (3.15 GB of RSS in 4 s before): failed at once, in words."""
    from tests.hostile_server import HostileServer

    hostile = HostileServer().start()
    try:
        url = hostile.url("/huge")
        proc = run(moto, tmp_path / "pod", str(write_list(tmp_path / "u", [url])),
                   "-o", f"s3://{bucket}/p", timeout=60)
    finally:
        hostile.stop()
    assert proc.returncode == 1, proc.stderr
    (row,) = manifest_in(moto.client(), bucket, "p/").values()
    assert row["status"] == "failed" and "more than one object takes" in row["error"]
    assert row["attempts"] == 1 and row["elapsed"] < 10


def test_a_local_manifest_and_summary_with_a_bucket(
    moto: MotoServer, bucket: str, server: Server, tmp_path: Path,
) -> None:
    """--manifest and --summary-json to local files beside --out s3://: every object lands,
    the run and its unchanged re-run exit 0 (exit 70 before), the manifest is where asked."""
    urls = served(server, 3)
    src = write_list(tmp_path / "u", urls)
    for _ in range(2):
        proc = run(moto, tmp_path / "pod", str(src), "-o", f"s3://{bucket}/p",
                   "--manifest", str(tmp_path / "m.jsonl"),
                   "--summary-json", str(tmp_path / "s.json"))
        assert proc.returncode == 0, proc.stderr
        assert f"manifest: {tmp_path / 'm.jsonl'}" in proc.stderr
        rows = [orjson.loads(line) for line in (tmp_path / "m.jsonl").read_bytes().splitlines()]
        assert {row["url"] for row in rows} == set(urls)
        assert orjson.loads((tmp_path / "s.json").read_bytes())["exit_code"] == 0
    assert len(bodies(moto.client(), bucket, "p/")) == 3
