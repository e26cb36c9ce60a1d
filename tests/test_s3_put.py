"""One-PUT bodies signed by bulkfetch and sent over botocore's own session (store/s3put.py):
the signature is botocore's to the byte, the route and credentials are the ones botocore
uses (a profile file, against moto checking every signature), and what the fast path is not
sure of goes to botocore."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from bulkfetch.models import Bucket, SafeRelPath
from bulkfetch.store.sigv4 import Keys, Scope, Signer
from tests.helpers import write_list
from tests.s3server import MotoServer
from tests.server import Server
from tests.test_s3 import bodies, run, served

pytest.importorskip("aiobotocore")

NOW = datetime.datetime(2026, 12, 5, 6, 7, 8, tzinfo=datetime.UTC)


@pytest.mark.parametrize(("url", "headers", "token"), [
    ("https://b1k.s3.eu-west-1.amazonaws.com/p/a.bin", {}, None),
    ("http://127.0.0.1:9000/b1k/p/a%20b%2Bc~%C3%A9/%25x", {
        "x-amz-meta-sha256": "ab" * 32, "x-amz-meta-source-url": "http://h/a  b?c=d",
        "Content-Type": "text/plain; charset=utf-8", "If-None-Match": "*"}, "tok/en+=="),
])
def test_the_signature_is_botocores(url: str, headers: dict[str, str], token: str | None,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The same request signed by botocore's S3SigV4Auth at the same moment: every header
    and the Authorization line alike."""
    import botocore.auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    body = b"the body"
    digest = hashlib.sha256(body).hexdigest()
    ours = Signer(Scope("eu-west-1")).sign(
        "PUT", url, headers, payload_sha256=digest, keys=Keys("AKID", "s3cr3t", token), now=NOW)
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: NOW.replace(tzinfo=None))
    request = AWSRequest(method="PUT", url=url, data=body, headers=dict(headers))
    botocore.auth.S3SigV4Auth(Credentials("AKID", "s3cr3t", token), "s3",
                              "eu-west-1").add_auth(request)
    theirs = {name.lower(): value for name, value in request.headers.items()}
    assert {k: v for k, v in ours.items() if k != "host"} == theirs
    assert ours["authorization"] == theirs["authorization"]


@pytest.fixture
def recorded(tmp_path: Path) -> Iterator[MotoServer]:
    """moto checking each request's signature against an IAM user's secret, and recording
    each request it gets."""
    server = MotoServer(auth=True, free_actions=5, recording=str(tmp_path / "moto.jsonl"))
    server.start()
    yield server
    server.stop()


def test_one_put_bodies_are_signed_here_with_the_profiles_keys(
    recorded: MotoServer, server: Server, tmp_path: Path,
) -> None:
    """Keys in a profile's credentials file, region and endpoint in its config file, nothing
    of AWS in the environment but AWS_PROFILE: each small body is one PUT of ours (checked by
    moto against the profile's secret), create-only with its sha256; a body of several
    parts goes up through botocore's multipart upload; every byte is the origin's."""
    recorded.bucket("prof")
    key_id, secret = recorded.user("crawler")
    (tmp_path / "credentials").write_text(
        f"[crawler]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n")
    (tmp_path / "config").write_text(
        f"[profile crawler]\nregion = eu-west-1\nendpoint_url = {recorded.endpoint}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(TMPDIR=str(tmp_path), AWS_PROFILE="crawler",
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "credentials"),
               AWS_CONFIG_FILE=str(tmp_path / "config"))
    (server.root / "big.bin").write_bytes(os.urandom(12 * 1024 * 1024))
    urls = [*served(server, 4), server.url("/static/big.bin")]
    proc = run(recorded, tmp_path / "pod", str(write_list(tmp_path / "u", urls)),
               "-o", "s3://prof/p", env=env)
    assert proc.returncode == 0, proc.stderr

    import boto3

    client = boto3.client("s3", endpoint_url=recorded.endpoint, region_name="eu-west-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret)
    got = bodies(client, "prof", "p/")
    origin = {hashlib.sha256(data).hexdigest(): data for data in (
        (server.root / url.rsplit("/", 1)[1]).read_bytes() for url in urls)}
    assert sorted(got.values()) == sorted(origin.values())
    puts = [r for r in recorded.requests()
            if r["method"] == "PUT" and "/prof/p/127.0.0.1_" in r["url"]]
    ours = [r for r in puts if r["headers"].get("User-Agent", "").startswith("bulkfetch/")]
    assert len(ours) == 4, [r["headers"].get("User-Agent") for r in puts]
    for sent in ours:
        assert "eu-west-1/s3/aws4_request" in sent["headers"]["Authorization"]
        assert sent["headers"]["If-None-Match"] == "*"
        assert sent["headers"]["X-Amz-Meta-Sha256"] in origin
    assert len({sent["headers"]["X-Amz-Meta-Sha256"] for sent in ours}) == 4
    assert {r["headers"].get("User-Agent", "")[:11] for r in puts if r not in ours} == {
        "aiobotocore"}  # the big body's parts


class _Store:
    """An S3 endpoint that answers each PUT by its rules, counting them: `answer` for the
    bucket's keys (501 only to a conditional PUT, as a store without conditions does), 200
    at /moved/ (where a redirect points) and at /right/ (a route learnt again)."""

    def __init__(self, answer: int) -> None:
        self.answer = answer
        self.puts: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.bodies: list[bytes] = []

    async def put(self, request: web.Request) -> web.Response:
        self.bodies.append(await request.read())
        self.puts.append(dict(request.headers))
        self.paths.append(request.path)
        if request.path.startswith(("/moved/", "/right/")):
            return web.Response(status=200)
        status = self.answer
        if status == 501 and "If-None-Match" not in request.headers:
            status = 200
        if status == 307:
            return web.Response(status=307, headers={"Location": "/moved/x"})
        code = {412: "PreconditionFailed", 501: "NotImplemented", 500: "InternalError",
                400: "AuthorizationHeaderMalformed"}
        return web.Response(status=status, body=(
            f"<Error><Code>{code[status]}</Code></Error>" if status in code else ""))


class _Botocore:
    """The client's put_object, where the fast path leaves a body."""

    def __init__(self) -> None:
        self.puts: list[dict[str, Any]] = []

    async def put_object(self, **kwargs: Any) -> dict[str, Any]:
        self.puts.append(kwargs)
        return {}

    async def head_object(self, **kwargs: Any) -> dict[str, Any]:
        body = b"abc"
        return {"Metadata": {"sha256": hashlib.sha256(body).hexdigest()}}


class _Frozen:
    async def get_frozen_credentials(self) -> Keys:
        return Keys("AKID", "s3cr3t")


@pytest.mark.parametrize(("answer", "ours", "botocores"), [
    (200, 2, 0),  # the fast path answers alone
    (412, 2, 0),  # taken: the same body there (by its sha256) is success
    (501, 3, 0),  # no conditional writes: asked once, then plain PUTs, all ours
    (500, 2, 2),  # not sure: botocore sends it (with its retries)
    (307, 2, 2),  # moved: botocore's, never a 200 from wherever it points
    (None, 0, 2),  # nobody listening: botocore sends it
])
def test_what_the_fast_path_decides_and_what_it_leaves(
    answer: int | None, ours: int, botocores: int,
) -> None:
    store, client = asyncio.run(_through(answer, [b"abc", b"abc"]))
    assert (len(store.puts), len(client.puts)) == (ours, botocores)
    if answer == 501:
        assert ["If-None-Match" in put for put in store.puts] == [True, False, False]


def test_after_a_miss_the_route_is_asked_again() -> None:
    """A bucket in another region than botocore first signed for: the first PUT is refused
    and left to botocore (which learns the region from its redirect); the route asked again,
    the next ones are ours."""
    store, client = asyncio.run(_through(400, [b"a", b"b", b"c"], relearnt="/right/"))
    assert len(client.puts) == 1
    assert store.paths == ["/b1k/p/f0", "/right/p/f1", "/right/p/f2"]


def test_misses_in_a_row_leave_the_run_to_botocore() -> None:
    """A store the fast path never pleases: three tries, then every body goes to botocore
    alone (never each one sent twice)."""
    store, client = asyncio.run(_through(500, [b"x"] * 6))
    assert (len(store.puts), len(client.puts)) == (3, 6)


def test_a_501_that_is_not_a_store_without_conditions_keeps_create_only() -> None:
    """Only S3's NotImplemented to a conditional PUT turns create-only off; a proxy's bare
    501 fails the body and leaves the other keys guarded."""
    from bulkfetch.store.sink import StoreFailed

    async def main() -> tuple[bool, str]:
        from bulkfetch.store.bucket import BucketSink, Budget
        from bulkfetch.store.sink import Body

        class Refusing(_Botocore):
            async def put_object(self, **kwargs: Any) -> dict[str, Any]:
                from bulkfetch.store import s3

                raise s3.client_error(501, "501", "PutObject")

        sink = BucketSink(Bucket("b1k", "p/"), Refusing(),  # type: ignore[arg-type]
                          budget=Budget(1 << 20))
        pending = sink.open(SafeRelPath("a"), Body("http://h/a", 1))
        await pending.write(b"a")
        try:
            await pending.commit()
        except StoreFailed as exc:
            return sink.create_only, str(exc)
        return sink.create_only, ""

    create_only, failed = asyncio.run(main())
    assert create_only and failed.startswith("cannot put the object in the bucket: HTTP 501")


def test_the_route_probe_stores_nothing_even_if_it_went_out(
    recorded: MotoServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Were botocore ever not to call the hook that stops the probe, the probe PUT itself
    would go out: its Content-MD5 makes the store refuse it, so no object appears."""
    from bulkfetch.store import s3

    key_id, secret = _as_user(recorded, monkeypatch, "probe-only")

    async def probe() -> tuple[str, str, str] | None:
        async with s3.connect() as (client, _):
            monkeypatch.setattr(client.meta.events, "register_first",
                                lambda *args, **kwargs: None)  # the hook never fires
            return await s3.put_route(client, Bucket("probe-only", "p/"))

    assert asyncio.run(probe()) is None
    import boto3

    listed = boto3.client("s3", endpoint_url=recorded.endpoint, region_name="us-east-1",
                          aws_access_key_id=key_id, aws_secret_access_key=secret
                          ).list_objects_v2(Bucket="probe-only")
    assert listed.get("KeyCount") == 0
    assert [r["method"] for r in recorded.requests() if "route-probe" in r["url"]] == ["PUT"]


def test_a_body_past_a_mib_goes_whole_with_its_length() -> None:
    """aiohttp warns of bytes over 1 MiB (an error under -W error): sent in slices, with
    Content-Length, never chunked (S3 refuses a PUT without a length)."""
    body = os.urandom(3 * 1024 * 1024 + 5)
    store, client = asyncio.run(_through(200, [body]))
    assert not client.puts
    (put,) = store.puts
    assert put["Content-Length"] == str(len(body)) and "Transfer-Encoding" not in put
    assert store.bodies == [body]


async def _through(answer: int | None, bodies: list[bytes], *, relearnt: str | None = None,
                   ) -> tuple[_Store, _Botocore]:
    """`bodies` committed through a BucketSink whose fast path goes to a _Store answering
    `answer` (None: nothing listening), and whose botocore is a _Botocore; asked again, the
    route is `relearnt` (a path on the store)."""
    import aiohttp

    from bulkfetch.store.bucket import BucketSink, Budget
    from bulkfetch.store.s3put import FastPut
    from bulkfetch.store.sink import Body

    store, client = _Store(answer or 200), _Botocore()
    app = web.Application(client_max_size=1 << 30)
    app.router.add_put("/{key:.*}", store.put)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if answer is None:
        await runner.cleanup()
    async with aiohttp.ClientSession() as session:
        async def relearn() -> tuple[str, Signer] | None:
            base = f"http://127.0.0.1:{port}{relearnt or '/b1k/'}"
            return base, Signer(Scope("x"))

        fast = FastPut(base=f"http://127.0.0.1:{port}/b1k/", signer=Signer(Scope("x")),
                       credentials=_Frozen(), session=session,  # type: ignore[arg-type]
                       proxy=None, proxy_headers={}, relearn=relearn)
        sink = BucketSink(Bucket("b1k", "p/"), client,  # type: ignore[arg-type]
                          budget=Budget(1 << 30), fast=fast)
        for n, body in enumerate(bodies):
            pending = sink.open(SafeRelPath(f"f{n}"), Body(f"http://h/{n}", len(body)))
            await pending.write(body)
            await pending.commit()
    await runner.cleanup()
    return store, client


def test_the_route_is_botocores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Virtual-hosted on AWS itself, by path at an endpoint given by address; no request is
    made to find out (nothing listens at either)."""
    from bulkfetch.store import s3

    async def route(bucket: str) -> tuple[str, str, str] | None:
        async with s3.connect() as (client, _):
            return await s3.put_route(client, Bucket(bucket, "p/"))

    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", os.devnull)
    assert asyncio.run(route("b1k")) == ("https://b1k.s3.eu-west-1.amazonaws.com/",
                                         "eu-west-1", "s3")
    assert asyncio.run(route("dir--euw1-az1--x-s3")) is None  # S3 Express: botocore's
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    assert asyncio.run(route("b1k")) == ("http://127.0.0.1:9/b1k/", "eu-west-1", "s3")


def test_clients_of_a_process_share_one_tls_context(
    recorded: MotoServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each client parsed the CA bundle again (17 ms of CPU); now once a process for each
    `verify` setting, and the requests still go through."""
    from bulkfetch.store import s3

    _as_user(recorded, monkeypatch, "tls-shared")
    monkeypatch.setattr(s3, "_TLS", {})

    async def head() -> None:
        async with s3.connect() as (client, _):
            await client.head_bucket(Bucket="tls-shared")

    for _ in range(3):
        asyncio.run(head())
    assert len(s3._TLS) == 1  # keyed by botocore's `verify`: True, or a CA bundle's path


def _as_user(moto: MotoServer, monkeypatch: pytest.MonkeyPatch, bucket: str) -> tuple[str, str]:
    """A bucket, and this process's AWS_* set to a new IAM user's keys (moto checks them)."""
    moto.bucket(bucket)
    key_id, secret = moto.user(f"u-{bucket}")
    for name, value in moto.env(AWS_ACCESS_KEY_ID=key_id,
                                AWS_SECRET_ACCESS_KEY=secret).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)
    return key_id, secret
