"""`--out s3://BUCKET/PREFIX`: the one home of aiobotocore and botocore (`pip install
bulkfetch[s3]`), imported only by a run that writes to a bucket.

Credentials, region and endpoint come the way the AWS tools take them, read by botocore
itself: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE with
~/.aws/config and ~/.aws/credentials, AWS_REGION, AWS_ENDPOINT_URL(_S3) for S3-compatible
stores, web identity (Kubernetes IRSA), the instance role. None of it is ever printed: errors
name the bucket, the HTTP status and S3's error code, never a key or a signature.

botocore's default checksums (CRC32 trailers since 1.36) break many S3-compatible stores; we
ask for them only where an operation requires one, and keep the body's sha256 ourselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import sqlite3
import stat
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bulkfetch.errors import BulkfetchError, SettingsError, UsageError
from bulkfetch.models import Bucket
from bulkfetch.store.layout import Layout, part_of
from bulkfetch.store.sigv4 import ALGORITHM

if TYPE_CHECKING:
    from aiobotocore.credentials import AioCredentials
    from aiobotocore.session import AioSession
    from types_aiobotocore_s3 import S3Client

SCHEME = "s3://"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
_BUCKET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{2,62}")


class StoreError(BulkfetchError):
    """The bucket could not take the run's state or manifest at its end."""


def is_bucket(text: str) -> bool:
    return text.startswith(SCHEME)


def parse(text: str) -> Bucket:
    """`s3://NAME/PREFIX` -> Bucket; a prefix always ends in "/" (or is empty)."""
    name, _, prefix = text[len(SCHEME):].partition("/")
    if not _BUCKET_NAME.fullmatch(name):
        raise UsageError(f"--out {text!r}: not a bucket name: {name!r}")
    prefix = "/".join(part for part in prefix.split("/") if part)
    if any(part in (".", "..") for part in prefix.split("/")):
        raise UsageError(f"--out {text!r}: '.' and '..' have no meaning in a key prefix")
    return Bucket(name, f"{prefix}/" if prefix else "")


def workdir(bucket: Bucket) -> Path:
    """The local folder of a run into `bucket` whose state lives in the bucket: its lock,
    its manifest while it is written, the state while it is used. Ours alone (0700, owned by
    us, not a symlink): the temp folder is shared with other users."""
    mine = Path(tempfile.gettempdir()) / f"bulkfetch-{os.getuid()}"
    mine.mkdir(mode=0o700, exist_ok=True)
    info = os.lstat(mine)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise UsageError(f"{str(mine)!r} is not a folder of ours; set TMPDIR or use --state")
    digest = hashlib.blake2b(str(bucket).encode(), digest_size=8).hexdigest()
    return mine / f"{bucket.name}-{digest}"


def _config(pool: int) -> Any:
    from aiobotocore.config import AioConfig

    return AioConfig(
        http_session_cls=_http_session_class(),
        max_pool_connections=max(pool, 10),
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "max_attempts": 3},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )


_TLS: dict[Any, Any] = {}  # botocore's `verify` setting -> its TLS context, one a process


def _http_session_class() -> type:
    """aiobotocore's aiohttp session, but with one TLS context a process for each `verify`
    setting (its CA bundle): each client parsed the bundle again, 17 ms of CPU, five times
    in a small run. Only a context without a proxy or a client certificate is kept, since
    aiobotocore adds those to the context it is given."""
    from aiobotocore import httpsession

    base: Any = httpsession.AIOHTTPSession  # its internals are not in the type stubs

    class SharedTLS(base):  # type: ignore[misc]
        def _build_ssl_contexts(self, proxy_url: str | None) -> tuple[Any, Any]:
            if proxy_url or self._cert_file:
                return super()._build_ssl_contexts(proxy_url)  # type: ignore[no-any-return]
            key = self._verify
            if key not in _TLS:
                _TLS[key] = super()._build_ssl_contexts(None)[0]
            return _TLS[key], None

    return SharedTLS


# botocore's data loader keeps the S3 model and endpoint rules it read (110 ms of CPU to load
# and build): one per process, shared by every session, so that a second client costs 4 ms and a
# forked worker starts with it warm. It holds only data read from botocore's own files.
_LOADER: Any = None


def _session() -> AioSession:
    """A session of its own for each event loop (credentials refresh under an asyncio lock),
    all of them sharing the process's loader."""
    from aiobotocore.session import get_session

    global _LOADER
    session = get_session()
    # AWS_REGION is the AWS SDKs' own name, and the AWS CLI's, first before AWS_DEFAULT_REGION;
    # botocore reads only the latter: without this, AWS_REGION alone meant us-east-1.
    if region := os.environ.get("AWS_REGION"):
        session.set_config_variable("region", region)
    if _LOADER is None:
        _LOADER = session.get_component("data_loader")
    else:
        session.register_component("data_loader", _LOADER)
    return session


@contextlib.asynccontextmanager
async def client(*, pool: int = 10) -> AsyncIterator[S3Client]:
    """One S3 client for this event loop (its own aiohttp session, closed on the way out)."""
    async with connect(pool=pool) as (s3, _):
        yield s3


@contextlib.asynccontextmanager
async def connect(*, pool: int = 10) -> AsyncIterator[tuple[S3Client, AioCredentials | None]]:
    """An S3 client and the credentials it signs with: the very same object (the session
    resolves them once and hands that object to the client), so a request we sign ourselves
    uses what botocore would, refreshed as botocore refreshes it. None: there were none."""
    session = _session()
    credentials = await session.get_credentials()
    async with session.create_client("s3", config=_config(pool)) as s3:
        yield s3, credentials


def client_error(status: int, code: str, operation: str) -> Exception:
    """An S3 error answer as botocore raises it, for one path of handling either way."""
    from botocore.exceptions import ClientError

    answer: Any = {"Error": {"Code": code, "Message": ""},
                   "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(answer, operation)


# A key with what needs escaping in it (botocore's URL for it tells how it escapes keys), in
# the run's own corner of the prefix.
_PROBE_NAME = ".bulkfetch/route-probe a+b~é"
# Were the hook below ever not called, the probe PUT would go out: with If-Match an ETag
# cannot have, and a Content-MD5 not of an empty body, S3 and its kin store nothing (404 or
# 412 for the first, BadDigest for the second; moto checks only the first, MinIO both).
_NEVER_ETAG, _NEVER_MD5 = '"bulkfetch-never"', "AAAAAAAAAAAAAAAAAAAAAA=="


class _Seen(Exception):
    """Raised by the hook that takes botocore's request before it is sent."""


async def put_route(s3: S3Client, bucket: Bucket) -> tuple[str, str, str] | None:
    """Where botocore sends a PutObject into `bucket` and what it signs it for, taken off the
    request it makes and stopped before it is sent: its endpoint resolution, addressing
    style and signing region, not a copy of them. (base URL that a percent-encoded key
    follows, region, service); None when that is not plain SigV4 (S3 Express, SigV4a)."""
    from urllib.parse import quote

    if bucket.name.endswith("--x-s3"):  # a directory bucket: S3 Express signs otherwise
        return None
    seen: list[Any] = []

    def take(request: Any, **_: Any) -> None:
        seen.append(request)
        raise _Seen

    probe = bucket.key(_PROBE_NAME)
    events = s3.meta.events
    events.register_first("before-send.s3.PutObject", take, unique_id="bulkfetch-route")
    try:
        await s3.put_object(Bucket=bucket.name, Key=probe, Body=b"", IfMatch=_NEVER_ETAG,
                            ContentMD5=_NEVER_MD5)
    except _Seen:
        pass
    except Exception:  # no credentials, say: botocore says so on the first real PUT
        return None
    finally:
        events.unregister("before-send.s3.PutObject", unique_id="bulkfetch-route")
    if not seen:
        return None
    url, auth = seen[0].url, seen[0].headers.get("Authorization", b"")
    auth = auth.decode("ascii", "replace") if isinstance(auth, bytes) else str(auth)
    escaped = quote(probe, safe="/~")
    scope = re.fullmatch(rf"{ALGORITHM} Credential=[^/,]+/\d{{8}}/([^/,]+)/([^/,]+)/"
                         r"aws4_request, .*", auth)
    if scope is None or "?" in url or not url.endswith(f"/{escaped}"):
        return None
    return url[:-len(escaped)], scope.group(1), scope.group(2)


def code_of(exc: BaseException) -> str:
    """S3's error code of a botocore failure ("" for another failure)."""
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    code: str = response.get("Error", {}).get("Code", "")
    return code


async def http_session(s3: S3Client, url: str) -> tuple[Any, str | None, dict[str, str]] | None:
    """botocore's own aiohttp session for `url`, the proxy it takes there and that proxy's
    headers: a request sent on it has the pool, TLS trust, timeouts and proxy of every other
    request of the client. Reached through aiobotocore's internals (3.x): None when they
    have moved, and botocore sends every request itself."""
    try:
        http = s3._endpoint.http_session  # type: ignore[attr-defined]
        proxy: str | None = http._proxy_config.proxy_url_for(url)
        headers: dict[str, str] = http._proxy_config.proxy_headers_for(url)
        session = await http._get_session(proxy)
    except (AttributeError, TypeError):
        return None
    return session, proxy, headers


def describe(exc: BaseException) -> tuple[str, bool]:
    """A botocore failure in one line, and whether another try may work. Never a secret:
    S3's message may quote what we sent, so only its code is shown."""
    from botocore import exceptions as bx

    match exc:
        case bx.NoCredentialsError() | bx.PartialCredentialsError():
            return ("no usable AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,"
                    " or AWS_PROFILE)", False)
        case bx.ProfileNotFound():
            return f"the AWS profile {exc.kwargs.get('profile')!r} is not configured", False
        case bx.NoRegionError():
            return "no AWS region (set AWS_REGION)", False
        case bx.EndpointConnectionError():
            return f"cannot reach {exc.kwargs.get('endpoint_url')}", True
        case bx.ClientError():
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            code = error.get("Code") or str(status)
            return f"HTTP {status} {code}", status >= 500 or code in _RETRYABLE_CODES
        case bx.BotoCoreError():
            return str(exc).splitlines()[0] if str(exc) else type(exc).__name__, True
    return f"{type(exc).__name__}: {exc}", True


_RETRYABLE_CODES = frozenset({"SlowDown", "RequestTimeout", "Throttling", "InternalError"})


def status_of(exc: BaseException) -> int:
    response: dict[str, Any] = getattr(exc, "response", None) or {}
    status: int = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return status


def check(bucket: Bucket) -> None:
    """Before any fetch: the bucket exists and the credentials open it."""
    try:
        asyncio.run(_check(bucket))
    except Exception as exc:
        raise SettingsError(f"--out {bucket}: {_refusal(exc)}") from exc


async def _check(bucket: Bucket) -> None:
    async with client() as s3:
        await s3.head_bucket(Bucket=bucket.name)


def _refusal(exc: BaseException) -> str:
    status = status_of(exc)
    if status == 404:
        return "no such bucket"
    if status in (401, 403):
        return ("the credentials were refused, or do not open this bucket "
                f"(HTTP {status}; check AWS_ACCESS_KEY_ID, AWS_PROFILE, AWS_ENDPOINT_URL)")
    if status == 301:
        return "the bucket is in another region (set AWS_REGION)"
    return describe(exc)[0]


_SYNCED = ("state.sqlite", "manifest.jsonl", "done.json")


def _key(bucket: Bucket, layout: Layout, out: Path, name: str) -> str:
    return bucket.key(f"{layout.home.relative_to(out).as_posix()}/{name}")


def pull_state(bucket: Bucket, out: Path, layout: Layout) -> None:
    """The state the last run put in the bucket, in place of any local copy: the bucket is
    what is true (its objects may have been removed, and the state with them)."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{layout.state}{suffix}").unlink(missing_ok=True)
    try:
        asyncio.run(_pull(_key(bucket, layout, out, "state.sqlite"), bucket, layout.state))
    except Exception as exc:
        raise SettingsError(f"--out {bucket}: cannot read the state: {_refusal(exc)}") from exc


async def _pull(key: str, bucket: Bucket, path: Path) -> None:
    async with client() as s3:
        try:
            got = await s3.get_object(Bucket=bucket.name, Key=key)
        except Exception as exc:
            if status_of(exc) == 404:
                return  # a first run
            raise
        path.parent.mkdir(parents=True, exist_ok=True)
        temp = part_of(path)
        # Streamed to the file (a million URLs' state is ~150 MB); nothing else runs on this
        # loop yet, so its writes may block it.
        async with got["Body"] as body:
            with temp.open("wb") as file:
                async for chunk in body.iter_chunks(1 << 20):
                    file.write(chunk)
    os.replace(temp, path)


def push_state(bucket: Bucket, out: Path, layout: Layout, manifest: Path) -> None:
    """The state, the manifest and a shard's done marker, into the bucket beside the bodies:
    each a whole object, or the one before it stays."""
    snapshot = layout.state.with_name(f".{layout.state.name}.upload")
    try:
        files = {"state.sqlite": _snapshot(layout.state, snapshot), "manifest.jsonl": manifest,
                 "done.json": layout.done}
        asyncio.run(_push({_key(bucket, layout, out, name): path
                           for name, path in files.items() if path.is_file()}, bucket))
    except Exception as exc:  # botocore, the network, or SQLite
        raise StoreError(f"could not put the state and manifest in {bucket}: "
                         f"{describe(exc)[0]}; the manifest is at {str(manifest)!r}") from exc
    finally:
        snapshot.unlink(missing_ok=True)


def _snapshot(state: Path, copy: Path) -> Path:
    """The state as one file (WAL folded in), by SQLite's own backup; none if there is none."""
    copy.unlink(missing_ok=True)
    if state.is_file():
        with contextlib.closing(sqlite3.connect(state)) as src, \
                contextlib.closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)
    return copy


async def _push(files: dict[str, Path], bucket: Bucket) -> None:
    async with client() as s3:
        for key, path in files.items():
            with path.open("rb") as body:  # streamed: a million lines' manifest is 400 MB
                await s3.put_object(Bucket=bucket.name, Key=key, Body=body)
