"""Proxies (flag and environment), .netrc credentials, and a cookies.txt."""

from __future__ import annotations

import base64
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    MANIFEST,
    bulkfetch_cmd,
    cli_env,
    fetch_cli,
    read_manifest,
    run_cli,
    write_list,
)
from tests.proxy import Proxy, RealProxy
from tests.server import Server


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy().start()
    yield running
    running.stop()


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def run_env(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(bulkfetch_cmd(*args), env={**cli_env(), **env},
                          capture_output=True, text=True, timeout=60)


def test_proxy_flag_with_credentials(server: Server, proxy: Proxy, tmp_path: Path) -> None:
    urls = [server.url(f"/bytes/{n}") for n in (10, 20, 30)]
    proc = run_cli(str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out"),
                   "--proxy", f"http://pat:pw-9@127.0.0.1:{proxy.port}")
    assert proc.returncode == 0, proc.stderr
    assert sorted(target for target, _ in proxy.seen) == sorted(urls)
    assert {auth for _, auth in proxy.seen} == {basic("pat", "pw-9")}
    assert "pw-9" not in proc.stderr


def test_proxy_from_environment_and_no_proxy(
    server: Server, proxy: Proxy, tmp_path: Path
) -> None:
    via = server.url("/bytes/5")
    direct = f"http://localhost:{server.port}/bytes/6"
    proc = run_env([str(write_list(tmp_path / "u", [via, direct])), "-o", str(tmp_path / "out")],
                   {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "localhost"})
    assert proc.returncode == 0, proc.stderr
    assert [target for target, _ in proxy.seen] == [via]
    assert len(read_manifest(tmp_path / "out" / MANIFEST)) == 2


@pytest.fixture(scope="module")
def real_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealProxy]:
    running = RealProxy(tmp_path_factory.mktemp("proxy"), basic_auth="pat:right").start()
    yield running
    running.stop()


@pytest.mark.parametrize("scheme", ["https", "http"])  # a refused CONNECT, a refused GET
def test_a_proxy_refusing_the_credentials_is_not_asked_again(
    server: Server, real_proxy: RealProxy, tmp_path: Path, scheme: str
) -> None:
    url = f"{scheme}://127.0.0.1:{server.port}/bytes/10"
    proc, rows = fetch_cli(tmp_path, [url], "--proxy", f"http://pat:wrong@127.0.0.1:{real_proxy.port}")
    assert proc.returncode == 1
    row = rows[url]
    assert row["attempts"] == 1 and row["http_status"] == 407
    assert "the proxy refused the credentials" in row["error"] and "wrong" not in proc.stderr


def test_the_proxy_is_chosen_for_each_redirect_hop(
    server: Server, proxy: Proxy, tmp_path: Path
) -> None:
    """NO_PROXY holds 127.0.0.2: a hop to it goes direct, a hop from it through the proxy."""
    away = server.url_on("127.0.0.2", "/bytes/7")
    back = server.url("/bytes/8")
    urls = [server.url(f"/go?to={away}"), server.url_on("127.0.0.2", f"/go?to={back}")]
    proc = run_env([str(write_list(tmp_path / "u", urls)), "-o", str(tmp_path / "out")],
                   {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}", "NO_PROXY": "127.0.0.2"})
    assert proc.returncode == 0, proc.stderr
    assert sorted(target for target, _ in proxy.seen) == sorted([urls[0], back])


def test_an_http_to_https_hop_takes_https_proxy(
    server: Server, proxy: Proxy, real_proxy: RealProxy, tmp_path: Path
) -> None:
    """HTTP_PROXY carries the first hop; the https hop goes to HTTPS_PROXY (which refuses
    the CONNECT here: that it was asked at all is the point)."""
    secure = f"https://127.0.0.1:{server.port}/bytes/9"
    url = server.url(f"/go?to={secure}")
    proc = run_env([str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out")],
                   {"HTTP_PROXY": f"http://127.0.0.1:{proxy.port}",
                    "HTTPS_PROXY": f"http://pat:wrong@127.0.0.1:{real_proxy.port}",
                    "NO_PROXY": ""})
    assert proc.returncode == 1
    assert [target for target, _ in proxy.seen] == [url]
    row = read_manifest(tmp_path / "out" / MANIFEST)[url]
    assert row["http_status"] == 407 and "the proxy refused the credentials" in row["error"]


def test_netrc(server: Server, tmp_path: Path) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login carol password n3trc\n")
    netrc.chmod(0o600)
    src = str(write_list(tmp_path / "u", [server.url("/headers")]))
    proc = run_env([src, "-o", str(tmp_path / "a"), "--netrc"], {"NETRC": str(netrc)})
    assert proc.returncode == 0, proc.stderr
    assert server.stats.headers[-1]["Authorization"] == basic("carol", "n3trc")
    run_env([src, "-o", str(tmp_path / "b")], {"NETRC": str(netrc)})  # not asked: not sent
    assert "Authorization" not in server.stats.headers[-1]


def test_cookies_file(server: Server, tmp_path: Path) -> None:
    jar = tmp_path / "cookies.txt"
    jar.write_text(
        "# Netscape HTTP Cookie File\n"
        "127.0.0.1\tFALSE\t/\tFALSE\t0\tsession\tabc123\n"
        "other.example\tFALSE\t/\tFALSE\t0\tforeign\tno\n"
    )
    proc = run_cli(str(write_list(tmp_path / "u", [server.url("/headers")])),
                   "-o", str(tmp_path / "out"), "--cookies", str(jar))
    assert proc.returncode == 0, proc.stderr
    assert server.stats.headers[-1]["Cookie"] == "session=abc123"


@pytest.mark.parametrize(("args", "message"), [
    (["--proxy", "ftp://x"], "--proxy"),
    (["--cookies", "/nonexistent/cookies.txt"], "--cookies"),
])
def test_bad_settings_are_usage_errors(tmp_path: Path, args: list[str], message: str) -> None:
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), *args)
    assert proc.returncode == 2 and message in proc.stderr
