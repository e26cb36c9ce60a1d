"""One way in: every option, from the command line, the environment or a library call, is
checked here once, with one wording, into one frozen `Settings`.

The CLI and the library hand over the same names (`per_host`, `max_bytes`, `headers`, ...);
only the way an option is named in an error differs: `--per-host -1: expected a whole number
from 0 to 10,000` on the command line, `per_host=-1: expected ...` from Python. A value that
one refuses, the other refuses too (tests/test_settings.py runs each through both).
"""

from __future__ import annotations

import importlib.util
import ipaddress
import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from bulkfetch.errors import UsageError
from bulkfetch.lists import shards
from bulkfetch.models import (
    Bucket,
    Refetch,
    Settings,
    Shard,
    ShardBy,
    Timeouts,
    Tls,
)
from bulkfetch.show.display import DisplaySettings, Mode
from bulkfetch.store.layout import Layout

Naming = Callable[[str], str]  # an option's name as the user wrote it

# Whole numbers: (lowest, highest).
WHOLE: dict[str, tuple[int, int]] = {
    "concurrency": (1, 10_000),
    "workers": (1, 64),
    "retries": (0, 100),
    "per_host": (0, 10_000),
    "max_redirects": (0, 100),
    "host_errors": (0, 1_000_000),
    "window": (1, 100_000_000),
    "shard_count": (1, 1_000_000),
    "split": (1, 64),
}
_FLAGS = {"headers": "--header", "timeouts": "--timeout", "tls": "--cacert"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # a field name (RFC 9110 5.6.2)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # what a field value cannot hold (HTAB can)
_SIZE = re.compile(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*")


def cli_name(name: str) -> str:
    return _FLAGS.get(name, "--" + name.replace("_", "-"))


def library_name(name: str) -> str:
    return f"{name}="


class Options:
    """The options given, each taken once by name; what is left over is not an option."""

    def __init__(self, given: Mapping[str, Any], naming: Naming) -> None:
        self._given = {k: v for k, v in given.items() if v is not None}
        self.naming = naming

    def called(self, name: str) -> str:
        """The option's name as the user spelled it: `--per-host`, or `per_host`."""
        return self.naming(name).rstrip("=")

    def bad(self, name: str, value: object, expected: str) -> UsageError:
        if self.naming is library_name:
            return UsageError(f"{name}={value!r}: {expected}")
        shown = repr(str(value)) if isinstance(value, str | Path) else str(value)
        return UsageError(f"{self.naming(name)} {shown}: {expected}")

    def conflict(self, *names: str) -> UsageError:
        return UsageError(f"{' and '.join(self.called(n) for n in names)} do not go together")

    def raw(self, name: str) -> Any:
        return self._given.pop(name, None)

    def whole(self, name: str, default: int | None) -> int | None:
        value = self.raw(name)
        if value is None:
            return default
        low, high = WHOLE[name]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise self.bad(name, value, f"expected a whole number from {low:,} to {high:,}")
        return value

    def seconds(self, name: str, default: float | None, *, zero: bool = False) -> float | None:
        """A positive number of seconds (or per second); 0 too where it means "never"."""
        value = self.raw(name)
        if value is None:
            return default
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if not ok or not (value >= 0 if zero else value > 0) or value != value or value == float(
                "inf"):
            least = "0 or more" if zero else "more than 0"
            raise self.bad(name, value, f"expected a number {least}")
        return float(value)

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise self.bad(name, value, "expected True or False")
        return value

    def path(self, name: str) -> Path | None:
        value = self.raw(name)
        if value is None:
            return None
        if not isinstance(value, str | os.PathLike) or not os.fspath(value):
            raise self.bad(name, value, "expected a file path")
        return Path(value)

    def text(self, name: str) -> str | None:
        value = self.raw(name)
        if value is not None and not isinstance(value, str):
            raise self.bad(name, value, "expected a string")
        return value

    def finish(self) -> None:
        for name, value in self._given.items():
            raise self.bad(name, value, "not an option of bulkfetch")


def build(
    sources: Iterable[str], out: str | os.PathLike[str], given: Mapping[str, Any], *,
    naming: Naming = library_name, env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from the options by name; a bad one is a UsageError in one line."""
    o = Options(given, naming)
    shard = _shard(o, env if env is not None else os.environ)
    root, bucket, in_bucket = resolve_out(o, out)
    manifest = local_file(o, "manifest")
    settings = Settings(
        sources=tuple(sources), out=root, bucket=bucket, state_in_bucket=in_bucket,
        manifest=manifest or Layout.of(root, shard).manifest,
        concurrency=_int(o.whole("concurrency", 50)),
        retries=_int(o.whole("retries", 3)),
        backoff_s=_float(o.seconds("backoff_s", 0.5, zero=True)),
        timeouts=_timeouts(o),
        per_host=_int(o.whole("per_host", 0)),
        rate=o.seconds("rate", None),
        host_rate=o.seconds("host_rate", None),
        limit_rate=_rate_cap(o),
        split=_int(o.whole("split", 1)),
        min_split_size=_min_split(o),
        max_redirects=_int(o.whole("max_redirects", 10)),
        max_bytes=_size(o, "max_bytes"),
        user_agent=_user_agent(o),
        tls=_tls(o),
        user=_user(o),
        netrc=o.flag("netrc"),
        proxy=_proxy(o),
        dns_servers=_dns_servers(o),
        cookies=o.path("cookies"),
        headers=_headers(o),
        content_disposition=o.flag("content_disposition"),
        remote_time=o.flag("remote_time"),
        refetch=_refetch(o),
        host_errors=_int(o.whole("host_errors", 5)),
        max_retry_after_s=_float(o.seconds("max_retry_after", 300.0)),
        window=o.whole("window", None) or 0,
        shard=shard,
    )
    o.finish()
    if settings.user and any(n.lower() == "authorization" for n, _ in settings.headers):
        raise UsageError(f"{o.called('user')} and an Authorization header "
                         "do not go together")
    return shards.divided(settings)


def display(given: Mapping[str, Any], *, is_terminal: bool) -> DisplaySettings:
    """The CLI's display options: quiet, verbose, progress, status_interval."""
    o = Options(given, cli_name)
    quiet, verbose = o.flag("quiet"), o.flag("verbose")
    if quiet and verbose:
        raise o.conflict("quiet", "verbose")
    progress = o.raw("progress")
    interval = _float(o.seconds("status_interval", 30.0, zero=True))
    o.finish()
    if quiet:
        mode = Mode.QUIET
    else:
        mode = Mode.LIVE if (is_terminal if progress is None else progress) else Mode.PLAIN
    return DisplaySettings(mode=mode, verbose=verbose, status_interval_s=interval)


def workers(count: object, *, naming: Naming = library_name) -> int | None:
    """--workers N (None: the runner chooses)."""
    return Options({"workers": count}, naming).whole("workers", None)


def summary_json(path: object) -> Path | None:
    """--summary-json FILE: a local file."""
    return local_file(Options({"summary_json": path}, cli_name), "summary_json")


def local_file(o: Options, name: str) -> Path | None:
    path = o.path(name)
    if path is not None and str(path).startswith("s3:"):
        raise UsageError(f"{o.called(name)} takes a local file; with --out s3://BUCKET/PREFIX "
                         "the manifest and state go to PREFIX/.bulkfetch/ in the bucket")
    return path


def parse_size(text: str) -> int:
    """`1048576`, `512k`, `10M`, `2G` (powers of 1024) -> bytes; ValueError if not a size."""
    match = _SIZE.fullmatch(text)
    if match is None:
        raise ValueError(text)
    number, unit = match.groups()
    return int(number) << (10 * " KMG".index((unit or " ").upper()))


def resolve_out(o: Options, out: str | os.PathLike[str]) -> tuple[Path, Bucket | None, bool]:
    """--out and --state -> the local folder of the run, the bucket if any, and whether the
    run's state lives in the bucket (a bucket without --state)."""
    state = o.path("state")
    if not isinstance(out, str | os.PathLike) or not os.fspath(out):
        raise o.bad("out", out, "expected a folder, or s3://BUCKET/PREFIX")
    text = os.fspath(out)
    if not text.startswith("s3://"):
        if state is not None:
            raise UsageError("--state goes with --out s3://BUCKET/PREFIX (a folder keeps its "
                             "state in OUT/.bulkfetch/)")
        return Path(text), None, False
    if importlib.util.find_spec("aiobotocore") is None:
        raise UsageError(f"--out {text!r} needs the s3 extra: pip install 'bulkfetch[s3]'")
    from bulkfetch.store import s3

    bucket = s3.parse(text)
    return (state, bucket, False) if state is not None else (s3.workdir(bucket), bucket, True)


# Below: one option each.


def _int(value: int | None) -> int:
    assert value is not None  # a default was given
    return value


def _float(value: float | None) -> float:
    assert value is not None
    return value


def _shard(o: Options, env: Mapping[str, str]) -> Shard | None:
    spec, count = o.raw("shard"), o.whole("shard_count", None)
    by = o.raw("shard_by") or ShardBy.HOST
    if by not in tuple(ShardBy):
        raise o.bad("shard_by", by, "expected host or url")
    by = ShardBy(by)
    if spec is None:
        return None
    if isinstance(spec, str):
        return shards.parse(spec, by=by, count=count, env=env)
    if isinstance(spec, Shard):
        spec = (spec.index, spec.count)
    if (not isinstance(spec, tuple) or len(spec) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in spec)):
        raise o.bad("shard", spec, "expected (INDEX, COUNT), a Shard, or 'I/N'")
    index, total = spec
    if total < 1:
        raise o.bad("shard", spec, "the count must be at least 1")
    if not 0 <= index < total:
        raise o.bad("shard", spec, f"index {index} is not in 0..{total - 1}")
    return Shard(index, total, by)


def _timeouts(o: Options) -> Timeouts:
    given = o.raw("timeouts")
    if given is None:
        return Timeouts(total_s=_float(o.seconds("timeout", 60.0)),
                        connect_s=o.seconds("connect_timeout", None),
                        read_s=o.seconds("read_timeout", None))
    if not isinstance(given, Timeouts):
        raise o.bad("timeouts", given, "expected a bulkfetch.Timeouts")
    inner = Options({"timeout": given.total_s, "connect_timeout": given.connect_s,
                     "read_timeout": given.read_s}, o.naming)
    return Timeouts(total_s=_float(inner.seconds("timeout", 60.0)),
                    connect_s=inner.seconds("connect_timeout", None),
                    read_s=inner.seconds("read_timeout", None))


def _tls(o: Options) -> Tls:
    given = o.raw("tls")
    if given is not None and not isinstance(given, Tls):
        raise o.bad("tls", given, "expected a bulkfetch.Tls")
    if given is None:
        given = Tls(cacert=o.path("cacert"), insecure=o.flag("insecure"), cert=o.path("cert"),
                    key=o.path("key"))
    if given.key is not None and given.cert is None:
        raise UsageError(f"{o.called('key')} goes with {o.called('cert')}")
    return given


def _min_split(o: Options) -> int:
    size = _size(o, "min_split_size")
    if size is None:
        return 20 << 20
    if not 1 << 20 <= size <= 1 << 30:
        raise o.bad("min_split_size", o.raw("min_split_size"), "expected 1M to 1G")
    return size


def _rate_cap(o: Options) -> int | None:
    cap = _size(o, "limit_rate")
    if cap == 0:
        raise o.bad("limit_rate", 0, "expected a size per second above 0, such as 500k or 32M")
    return cap


def _size(o: Options, name: str) -> int | None:
    value = o.raw(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        try:
            return parse_size(value)
        except ValueError:
            pass
    raise o.bad(name, value, "expected a size such as 500k, 10M or 2G")


def _user(o: Options) -> tuple[str, str] | None:
    value = o.raw("user")
    if value is None:
        return None
    if isinstance(value, str):
        name, sep, password = value.partition(":")
        value = (name, password) if sep else None
    if (isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, str) for v in value)
            and value[0] and ":" not in value[0]):
        return value
    # Never the value itself: it holds a password.
    raise UsageError(f"{o.called('user')}: expected USER:PASSWORD")


def _proxy(o: Options) -> str | None:
    from yarl import URL

    value = o.text("proxy")
    if value is None:
        return None
    try:
        url = URL(value)
    except (TypeError, ValueError):
        url = None
    if url is None or url.scheme not in PROXY_SCHEMES or not url.host or (
            url.scheme.startswith("socks") and url.explicit_port is None):
        shown = value.rpartition("@")[2]  # never the password, scheme or none
        raise o.bad("proxy", shown, "expected http://[user:password@]host:port, or "
                                    "socks5h://, socks5://, socks4a://, socks4:// with a port")
    return value


# socks5h, socks4a: the proxy resolves names (curl's meaning); socks5, socks4: we do.
PROXY_SCHEMES = ("http", "https", "socks5h", "socks5", "socks4a", "socks4")


def _headers(o: Options) -> tuple[tuple[str, str], ...]:
    value = o.raw("headers")
    if value is None:
        return ()
    if isinstance(value, Mapping):
        value = list(value.items())
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        shown = "a str" if isinstance(value, str | bytes) else value  # it may hold a token
        raise o.bad("headers", shown, "expected 'Name: value' strings or (name, value) pairs")
    items: list[object] = []
    for item in value:
        items += _header_file(o, item) if isinstance(item, str) and item.startswith("@") else [
            item]
    return tuple(_header(o, "headers", item) for item in items)


def _header_file(o: Options, item: str) -> list[str]:
    """`@FILE`: headers one a line from FILE (as curl's -H @FILE), so that a token need not be
    in argv, where `ps` shows it."""
    try:
        text = Path(item[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeError) as exc:
        raise o.bad("headers", item, f"cannot read: {getattr(exc, 'strerror', None) or exc}"
                    ) from exc
    return [line for line in text.splitlines() if line.strip()]


def _header(o: Options, option: str, item: object) -> tuple[str, str]:
    """One header; an error names it by its first word only: its value may be a token."""
    if isinstance(item, str):
        name, sep, value = item.partition(":")
        if not sep:
            raise o.bad(option, _first_word(item), "expected 'Name: value'")
    elif isinstance(item, tuple) and len(item) == 2 and all(isinstance(v, str) for v in item):
        name, value = item
    else:
        raise o.bad(option, type(item).__name__, "expected 'Name: value' or a (name, value) pair")
    if _TOKEN.fullmatch(name) is None:
        raise o.bad(option, _first_word(name), "expected 'Name: value'")
    if _CONTROL.search(value):
        raise o.bad(option, f"{name}: …", "a header value cannot hold control characters")
    return name, value.strip()


def _first_word(text: str) -> str:
    word = text.split(None, 1)[0] if text.split() else ""
    return f"{word[:40]} …" if word != text else word[:40]


def _dns_servers(o: Options) -> tuple[str, ...]:
    """`IP[:PORT]` (an IPv6 address in brackets with a port), comma-separated or a sequence."""
    value = o.raw("dns_servers")
    if value is None or value == "":
        return ()
    given = value.split(",") if isinstance(value, str) else list(value)
    servers = []
    for entry in given:
        text = str(entry).strip()
        host, port = text, ""
        if text.startswith("["):
            host, _, port = text[1:].partition("]")
            port = port.removeprefix(":")
        elif text.count(":") == 1:
            host, port = text.split(":")
        try:
            ipaddress.ip_address(host)
            if port and not 0 < int(port) < 65536:
                raise ValueError(port)
        except ValueError:
            raise o.bad("dns_servers", text, "expected IP or IP:PORT, comma-separated") from None
        servers.append(text)
    return tuple(servers)


def _user_agent(o: Options) -> str | None:
    value = o.text("user_agent")
    if value is not None and _CONTROL.search(value):
        raise o.bad("user_agent", value, "a header value cannot hold control characters")
    return value.strip() if value else None


def _refetch(o: Options) -> Refetch:
    given = o.raw("refetch")
    skip, force = o.flag("skip_existing"), o.flag("force")
    if given is not None:
        if given not in tuple(Refetch):
            raise o.bad("refetch", given, "expected revalidate, skip-existing or force")
        return Refetch(given)
    if skip and force:
        raise o.conflict("skip_existing", "force")
    if skip:
        return Refetch.SKIP_EXISTING
    return Refetch.FORCE if force else Refetch.REVALIDATE

