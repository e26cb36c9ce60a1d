"""TLS against a local HTTPS server whose CA is made here with openssl."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import MANIFEST, bulkfetch_cmd, cli_env, read_manifest, run_cli, write_list
from tests.server import Server


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA, a server certificate for 127.0.0.1, and a client certificate, all signed by it."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=bulkfetch test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", *ext, cwd=d)
    return d


def https_server(pki: Path, *, client_cert: bool) -> Server:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki / "server.pem", pki / "server.key")
    if client_cert:
        ctx.load_verify_locations(pki / "ca.pem")
        ctx.verify_mode = ssl.CERT_REQUIRED
    return Server(ssl_context=ctx).start()


@pytest.fixture(scope="module")
def https(pki: Path) -> Iterator[Server]:
    server = https_server(pki, client_cert=False)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def mtls(pki: Path) -> Iterator[Server]:
    server = https_server(pki, client_cert=True)
    yield server
    server.stop()


def fetch_one(tmp_path: Path, url: str, *args: str) -> dict[str, object]:
    tmp_path.mkdir(exist_ok=True)
    run_cli(str(write_list(tmp_path / "u", [url])), "-o", str(tmp_path / "out"),
            "--retries", "0", *args)
    return read_manifest(tmp_path / "out" / MANIFEST)[url]


def test_verified_with_cacert(https: Server, pki: Path, tmp_path: Path) -> None:
    row = fetch_one(tmp_path, https.url("/bytes/100"), "--cacert", str(pki / "ca.pem"))
    assert row["status"] == "ok" and row["bytes"] == 100


def test_cacert_replaces_the_systems_store(https: Server, pki: Path, tmp_path: Path) -> None:
    """With SSL_CERT_FILE (OpenSSL's system store) trusting the server's CA, --cacert naming
    another CA refuses it, as curl does: --cacert is instead of the system's, not beside."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out",
            "other.pem", "-days", "2", "-subj", "/CN=another CA", cwd=pki)
    url = https.url("/bytes/100")
    rows = {}
    for name, args in (("system", []), ("other", ["--cacert", str(pki / "other.pem")])):
        out = tmp_path / name
        subprocess.run(
            bulkfetch_cmd(str(write_list(tmp_path / "u", [url])), "-o", str(out),
                          "--retries", "0", *args),
            env={**cli_env(), "SSL_CERT_FILE": str(pki / "ca.pem")}, timeout=60, check=False)
        rows[name] = read_manifest(out / MANIFEST)[url]
    assert rows["system"]["status"] == "ok"
    assert rows["other"]["status"] == "failed" and "not trusted" in rows["other"]["error"]


def test_rejected_without_cacert_in_one_clear_line(https: Server, tmp_path: Path) -> None:
    row = fetch_one(tmp_path, https.url("/bytes/100"))
    error = str(row["error"])
    assert row["status"] == "failed" and row["attempts"] == 1
    assert error.startswith(f"TLS: the certificate of 127.0.0.1:{https.port} is not trusted")
    assert "\n" not in error


def test_accepted_with_insecure(https: Server, tmp_path: Path) -> None:
    assert fetch_one(tmp_path, https.url("/bytes/100"), "--insecure")["status"] == "ok"


def test_client_certificate(mtls: Server, pki: Path, tmp_path: Path) -> None:
    url = mtls.url("/bytes/100")
    ca = ["--cacert", str(pki / "ca.pem")]
    assert fetch_one(tmp_path / "a", url, *ca)["status"] == "failed"
    row = fetch_one(tmp_path / "b", url, *ca, "--cert", str(pki / "client.pem"),
                    "--key", str(pki / "client.key"))
    assert row["status"] == "ok"


@pytest.mark.parametrize(("option", "name", "content", "says"), [
    ("--cacert", "missing.pem", None, "cannot read: No such file or directory"),
    ("--cacert", "garbage.pem", "not a certificate", "not a usable certificate or key"),
    ("--cert", "garbage.pem", "not a certificate", "not a usable certificate or key"),
])
def test_a_bad_tls_file_is_named_in_one_line(
    tmp_path: Path, option: str, name: str, content: str | None, says: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    proc = run_cli(str(write_list(tmp_path / "u", ["https://127.0.0.1:9/"])), option, str(path))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"bulkfetch: error: {option} {str(path)!r}: {says}")
