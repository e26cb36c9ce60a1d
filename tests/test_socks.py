"""--proxy socks5h:// / socks5:// / socks4://, through a real SOCKS server (pproxy) started here:
the bytes arrive whole, every connection goes through it (in worker processes too), and a
proxy that is not there is named as the proxy."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import fetch_cli
from tests.server import Server, body


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Socks:
    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self._log = log

    def passed(self) -> list[str]:
        """Each connection made through the proxy: `socks5 127.0.0.1:PORT -> HOST:PORT`."""
        return [line for line in self._log.read_text().splitlines() if " -> " in line]


@pytest.fixture(scope="module")
def socks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Socks]:
    """pproxy serving SOCKS4 and SOCKS5 on one port, logging every connection it makes."""
    port = free_port()
    log = tmp_path_factory.mktemp("socks") / "pproxy.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "pproxy", "-v", "-l",
             f"socks5+socks4://127.0.0.1:{port}"], stdout=sink, stderr=subprocess.STDOUT)
    try:
        _wait_listening(port)
        yield Socks(port, log)
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.parametrize(("scheme", "target"), [
    ("socks5h", "localhost"),  # the proxy resolves the name
    ("socks5", "127.0.0.1"),  # we do, and hand it the address
])
def test_a_run_through_a_socks5_proxy(
    server: Server, socks: Socks, tmp_path: Path, scheme: str, target: str
) -> None:
    """Two workers: each process's connector goes through the proxy, every connection."""
    before = len(socks.passed())
    urls = [f"http://localhost:{server.port}/bytes/{4000 + n}" for n in range(6)]
    proc, rows = fetch_cli(tmp_path, urls, "--proxy",
                           f"{scheme}://bob:s3cret@127.0.0.1:{socks.port}", "-w", "2")
    assert proc.returncode == 0, proc.stderr
    assert "s3cret" not in proc.stderr
    for n, url in enumerate(urls):
        saved = tmp_path / "out" / rows[url]["path"]
        assert saved.read_bytes() == body(f"/bytes/{4000 + n}", 4000 + n)
    passed = socks.passed()[before:]
    assert passed and all(line.endswith(f" -> {target}:{server.port}") for line in passed)


def test_socks4(server: Server, socks: Socks, tmp_path: Path) -> None:
    before = len(socks.passed())
    url = server.url("/bytes/333")
    proc, rows = fetch_cli(tmp_path, [url], "--proxy", f"socks4://127.0.0.1:{socks.port}")
    assert proc.returncode == 0, proc.stderr
    assert rows[url]["status"] == "ok" and rows[url]["bytes"] == 333
    assert socks.passed()[before:] == [
        line for line in socks.passed()[before:] if line.startswith("socks4 ")] != []


def test_a_socks_proxy_not_there_is_named(tmp_path: Path) -> None:
    port = free_port()
    url = "http://127.0.0.1:9/x"
    proc, rows = fetch_cli(tmp_path, [url], "--proxy", f"socks5h://u:pw@127.0.0.1:{port}",
                           "--retries", "0")
    assert proc.returncode == 1
    assert rows[url]["error"].startswith(
        f"cannot connect to the proxy 127.0.0.1:{port}: connection refused")
    assert "pw@" not in proc.stderr


@pytest.mark.parametrize("bad", ["socks5h://127.0.0.1", "socks6://127.0.0.1:1080"])
def test_a_socks_proxy_without_port_or_of_no_kind_is_refused(tmp_path: Path, bad: str) -> None:
    proc, _ = fetch_cli(tmp_path, ["http://127.0.0.1:9/"], "--proxy", bad)
    assert proc.returncode == 2 and "socks5h://" in proc.stderr


def test_a_socks_proxy_hanging_up_on_a_wrong_password_is_one_line(
    server: Server, tmp_path: Path,
) -> None:
    """pproxy with a login hangs up on a wrong password, in the middle of the handshake: the
    URL fails in words (it was an internal error, exit 70); the right password goes through."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "pproxy", "-l",
                             f"socks5://127.0.0.1:{port}#bob:right-pw"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port)
        url = server.url("/bytes/444")
        for name in ("wrong", "right"):
            (tmp_path / name).mkdir()
        run, rows = fetch_cli(tmp_path / "wrong", [url], "--proxy",
                              f"socks5h://bob:wrong-pw@127.0.0.1:{port}", "--retries", "0")
        assert run.returncode == 1 and "wrong-pw" not in run.stderr, run.stderr
        assert rows[url]["error"].startswith(
            "the proxy closed the connection during its handshake")
        run, rows = fetch_cli(tmp_path / "right", [url], "--proxy",
                              f"socks5h://bob:right-pw@127.0.0.1:{port}")
        assert run.returncode == 0 and rows[url]["bytes"] == 444, run.stderr
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_socks_login_refused_in_words_is_final(tmp_path: Path) -> None:
    """A proxy that answers a login as RFC 1929 says (status 1, failure): final, in its own
    words, tried once whatever --retries says."""
    ready = threading.Event()
    port = free_port()

    def refuse() -> None:
        with socket.create_server(("127.0.0.1", port)) as listener:
            listener.settimeout(30)
            ready.set()
            conn, _ = listener.accept()
            with conn:
                conn.recv(16)  # version 5, the methods offered
                conn.sendall(b"\x05\x02")  # username/password, please
                conn.recv(512)  # the login
                conn.sendall(b"\x01\x01")  # refused

    thread = threading.Thread(target=refuse, daemon=True)
    thread.start()
    ready.wait(10)
    url = "http://127.0.0.1:9/x"
    run, rows = fetch_cli(tmp_path, [url], "--proxy", f"socks5h://bob:pw@127.0.0.1:{port}",
                          "--retries", "3")
    thread.join(10)
    assert run.returncode == 1
    assert rows[url]["error"] == ("the SOCKS proxy refused the credentials (Username and "
                                  "password authentication failure); not retried")
    assert rows[url]["attempts"] == 1


def _wait_listening(port: int) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "pproxy did not start"
            time.sleep(0.05)
