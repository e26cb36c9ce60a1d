"""HTTPS from an origin whose certificate a private CA signed: each tool told to trust that CA.

    .venv/bin/python bench/https.py [--rounds 3]

Uses bench.py's fixtures and nginx, with two TLS 1.3 servers added (a certificate for
127.0.0.1 from a CA made here with openssl; connections kept alive):
https       5,000 x 4 KiB at full speed, c=50: files/s and CPU per file, beside the same list
            over plain HTTP in the same rounds (what TLS costs each tool).
https20     the same 5,000 with each answer held 20 ms by the origin, c=50: the share of the
            2,500 files/s ceiling.
bulkfetch --cacert, curl --cacert, wget2 and aria2c --ca-certificate. A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench

HERE = Path(__file__).resolve().parent
HTTPS_PORT, HTTPS20_PORT = 18443, 18444
FILES = 5_000
PEERS = ("bulkfetch", "curl", "wget2", "aria2c")


def pki(folder: Path) -> Path:
    """A CA and a server certificate for 127.0.0.1 signed by it; the CA's file."""
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=bulkfetch bench CA")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
            "server.csr", "-subj", "/CN=127.0.0.1")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "san.ext")
    return folder / "ca.pem"


def servers(folder: Path) -> str:
    tls = (f"ssl_certificate {folder}/server.pem; ssl_certificate_key {folder}/server.key; "
           "ssl_protocols TLSv1.3;")
    return (f"  server {{ listen 127.0.0.1:{HTTPS_PORT} ssl; {tls} root {bench.WORK}/www; }}\n"
            f"  server {{ listen 127.0.0.1:{HTTPS20_PORT} ssl; {tls} root {bench.WORK}/www; "
            "location / { access_by_lua_block { ngx.sleep(0.02) } } }\n")


def url_list(name: str, base: str, files: list[str]) -> Path:
    path = bench.WORK / f"{name}.txt"
    urls = [f"{base}/small/{n}" for n in files]
    path.write_text("".join(f"{u}\n" for u in urls))
    Path(f"{path}.curl").write_text("".join(f'url = "{u}"\n' for u in urls))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bench.WORK.mkdir(parents=True, exist_ok=True)
    folder = bench.make_fixtures("small", *bench.SCENARIOS["small"])
    files = sorted(os.listdir(folder))[:FILES]
    size = bench.SCENARIOS["small"][1]
    ca = pki(bench.WORK / "pki")
    bench.start_nginx(servers(bench.WORK / "pki"))
    report = [f"## https {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
              f"(`.venv/bin/python bench/https.py --rounds {args.rounds}`)", "",
              "TLS 1.3 from nginx (1 worker) with a certificate of a private CA, each tool told "
              "to trust it; connections kept alive; output on tmpfs; tools rotated.", ""]
    try:
        plain = url_list("plain5k", f"http://127.0.0.1:{bench.PORT}", files)
        https = url_list("https5k", f"https://127.0.0.1:{HTTPS_PORT}", files)
        https20 = url_list("https20", f"https://127.0.0.1:{HTTPS20_PORT}", files)
        for title, urls, ceiling in (
                (f"plain HTTP ({FILES:,} x 4 KiB, c=50), for comparison", plain, None),
                (f"https ({FILES:,} x 4 KiB over TLS, c=50)", https, None),
                (f"https20 ({FILES:,} x 4 KiB over TLS, answers held 20 ms, c=50; ceiling "
                 f"2,500 files/s = {FILES / 2500:.1f} s)", https20, FILES / 2500)):
            runs = bench.measure(PEERS, urls, bench.WORK / "out", FILES, size, args.rounds,
                                 cacert=None if urls == plain else ca)
            lines = bench.table(title, FILES, size, runs, ceiling)
            print("\n".join(lines), flush=True)
            report += lines
    finally:
        bench.stop_nginx()
        shutil.rmtree(bench.WORK / "out", ignore_errors=True)
    with (HERE / "RESULTS.md").open("a") as f:
        f.write("\n".join(report) + "\n")


if __name__ == "__main__":
    main()
