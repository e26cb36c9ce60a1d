"""The real CLI, in a subprocess, against a real server on 127.0.0.1 that injects faults."""

from __future__ import annotations

import gzip
import re
import uuid
from pathlib import Path

import orjson
import pytest

from tests.helpers import MANIFEST, assert_tidy, fetch_cli, read_manifest, run_cli, write_list
from tests.server import GZIPPED, Server, body


def key() -> str:
    return uuid.uuid4().hex[:8]


def test_fetches_every_url_with_a_truthful_manifest(server: Server, tmp_path: Path) -> None:
    """Every body lands intact, and the manifest has one complete line per URL."""
    urls = [server.url(f"/bytes/{n}") for n in (0, 1, 1000, 65_536, 300_000)]
    proc = run_cli(str(write_list(tmp_path / "urls.txt", urls)), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert set(rows) == set(urls)
    for url, row in rows.items():
        size = int(url.rsplit("/", 1)[1])
        assert row["status"] == "ok" and row["http_status"] == 200 and row["bytes"] == size
        assert row["attempts"] == 1 and row["error"] is None
        assert (tmp_path / "out" / row["path"]).read_bytes() == body(url[len(server.base):], size)
        assert list(row) == ["url", "status", "path", "http_status", "bytes", "received", "sha256",
                             "attempts", "elapsed", "error", "final_url", "content_type",
                             "fetched_at"]
        assert row["final_url"] == url
        assert row["content_type"] == ("application/octet-stream" if size else None)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", row["fetched_at"])
    assert_tidy(tmp_path / "out", rows)


def test_retries_5xx_until_success(server: Server, tmp_path: Path) -> None:
    """A 503 twice and then a 200 is ok after three attempts."""
    url = server.url(f"/flaky/{key()}/2/503")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    row = rows[url]
    assert (row["status"], row["attempts"], row["http_status"]) == ("ok", 3, 200)
    assert server.stats.count(url[len(server.base):]) == 3


def test_gives_up_after_the_retries(server: Server, tmp_path: Path) -> None:
    """--retries 1 means two attempts in all, then failed with the last status."""
    url = server.url(f"/flaky/{key()}/5/500")
    proc, rows = fetch_cli(tmp_path, [url], "--retries", "1")
    assert proc.returncode == 1
    row = rows[url]
    assert (row["status"], row["attempts"], row["http_status"]) == ("failed", 2, 500)
    assert "HTTP 500" in row["error"] and row["path"] is None
    assert server.stats.count(url[len(server.base):]) == 2
    assert f"failed: {url}: HTTP 500" in proc.stderr


def test_waits_for_retry_after(server: Server, tmp_path: Path) -> None:
    """429 with Retry-After: 2 delays the next attempt by at least two seconds."""
    url = server.url(f"/flaky/{key()}/1/429?retry_after=2")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    row = rows[url]
    assert row["attempts"] == 2 and row["elapsed"] >= 2.0


def test_a_404_is_asked_once(server: Server, tmp_path: Path) -> None:
    """A 404 is final: one request, failed, nothing written."""
    url = server.url("/status/404")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 1
    row = rows[url]
    assert (row["status"], row["http_status"], row["attempts"]) == ("failed", 404, 1)
    assert row["error"] == "HTTP 404 Not Found"
    assert server.stats.count("/status/404") == 1
    assert_tidy(tmp_path / "out", {url: row})


def test_a_body_cut_short_is_retried(server: Server, tmp_path: Path) -> None:
    """A body shorter than Content-Length is retried; only the whole body is published."""
    url = server.url(f"/truncate/{key()}/1")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    assert rows[url]["attempts"] == 2 and rows[url]["status"] == "ok"
    assert_tidy(tmp_path / "out", rows)


def test_a_reset_connection_is_retried(server: Server, tmp_path: Path) -> None:
    """Resets are retried. aiohttp itself resends once on a dropped connection (RFC 9112
    9.3.1.1), so two resets are needed before bulkfetch's own retry shows."""
    url = server.url(f"/reset/{key()}/2")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    assert rows[url]["status"] == "ok" and rows[url]["attempts"] == 2
    assert server.stats.count(url[len(server.base):]) == 3
    assert_tidy(tmp_path / "out", rows)


def test_a_body_always_cut_short_fails_and_leaves_nothing(
    server: Server, tmp_path: Path
) -> None:
    """When every attempt is cut short, the URL fails and no file or temp file remains."""
    url = server.url(f"/truncate/{key()}/9")
    proc, rows = fetch_cli(tmp_path, [url], "--retries", "1")
    assert proc.returncode == 1
    assert rows[url]["error"].startswith("body cut short")
    assert_tidy(tmp_path / "out", rows)


def test_a_stall_times_out(server: Server, tmp_path: Path) -> None:
    """A server that stops sending fails the attempt after --timeout, and it says so."""
    url = server.url("/stall/30")
    proc, rows = fetch_cli(tmp_path, [url], "--timeout", "0.5", "--retries", "1", timeout=20)
    assert proc.returncode == 1
    row = rows[url]
    assert row["error"] == "timed out after 0.5s (--timeout) (gave up after 2 attempts)"
    assert row["attempts"] == 2


def test_redirects_are_followed(server: Server, tmp_path: Path) -> None:
    """A chain of ten redirects is followed; the final answer is saved under the asked URL."""
    url = server.url("/redirect/10")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    row = rows[url]
    assert row["status"] == "ok" and row["bytes"] == 1000
    assert (tmp_path / "out" / row["path"]).read_bytes() == body("redirect-end", 1000)


@pytest.mark.parametrize(("path", "error"), [
    ("/loop", "too many redirects"),
    ("/redirect/11", "too many redirects"),
    ("/to-ftp", "redirected to an unusable URL"),
])
def test_bad_redirects_fail_without_retries(
    server: Server, tmp_path: Path, path: str, error: str
) -> None:
    """A redirect loop, an over-long chain or a redirect off http(s) fails at once."""
    url = server.url(path)
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 1
    row = rows[url]
    assert row["error"].startswith(error) and row["attempts"] == 1


def test_concurrency_bound_and_connection_reuse(server: Server, tmp_path: Path) -> None:
    """With -c 4, the server never sees more than 4 requests or 4 connections for 300 URLs."""
    urls = [server.url(f"/bytes/{100 + i}?delay=0.005") for i in range(300)]
    proc, rows = fetch_cli(tmp_path, urls, "-c", "4")
    assert proc.returncode == 0, proc.stderr
    assert len(server.stats.paths) == 300
    assert server.stats.max_in_flight == 4  # reached, and never passed
    assert len(server.stats.peers) <= 4
    assert_tidy(tmp_path / "out", rows)


def test_duplicates_are_fetched_once(server: Server, tmp_path: Path) -> None:
    """The same URL on several lines and in several sources is one request and one line."""
    url = server.url("/bytes/10")
    first = write_list(tmp_path / "a", [url, url, "# comment", "", url])
    second = write_list(tmp_path / "b", [url])
    proc = run_cli(str(first), str(second), "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    assert server.stats.count("/bytes/10") == 1
    assert len(read_manifest(tmp_path / "out" / MANIFEST)) == 1


def test_tricky_urls_all_land_in_distinct_files(server: Server, tmp_path: Path) -> None:
    """Long, unicode, folder-like and query- or case-differing URLs are all saved, apart."""
    paths = [
        "/dir", "/dir/", "/dir/x", "/dir/x/", "/" + "a" * 300, "/" + "a" * 300 + "/b",
        "/caf%C3%A9/na%C3%AFve.txt", "/x?q=1", "/x?q=2", "/X", "/x", "/../../etc/passwd",
        "/%2e%2e/%2e%2e/up", "/a%2Fb", "/.hidden", "/..", "/%00nul", "/sp%20ace", "/",
    ]
    urls = [server.base + p for p in paths]
    proc, rows = fetch_cli(tmp_path, urls)
    assert proc.returncode == 0, proc.stderr
    assert len(rows) == len(urls)
    assert len({row["path"] for row in rows.values()}) == len(urls)
    assert all(row["status"] == "ok" for row in rows.values())
    assert_tidy(tmp_path / "out", rows)
    assert not list(tmp_path.glob("etc*")) and not (tmp_path / "up").exists()


def test_names_are_used_and_traversal_refused(server: Server, tmp_path: Path) -> None:
    """NAME places a file; a NAME that leaves --out or clashes fails that line only."""
    lines = [
        f"{server.url('/bytes/1')}\tsub/one.bin",
        f"{server.url('/bytes/2')}  two words.bin",
        f"{server.url('/bytes/3')}\t../escape.bin",
        f"{server.url('/bytes/4')}\t/etc/abs.bin",
        f"{server.url('/bytes/5')}\tsub/one.bin",
        f"{server.url('/bytes/6')}\tsub/one.bin/deeper",
        f"{server.url('/bytes/7')}\t.bulkfetch/x",
        f"{server.url('/bytes/8')}\tsub/../sub2/./eight.bin",
    ]
    out = tmp_path / "out"
    proc = run_cli(str(write_list(tmp_path / "u", lines)), "-o", str(out))
    assert proc.returncode == 1
    rows = read_manifest(out / MANIFEST)
    paths = {url.rsplit("/", 1)[1]: row["path"] for url, row in rows.items()}
    assert paths == {"1": "sub/one.bin", "2": "two words.bin", "3": None, "4": None,
                     "5": None, "6": None, "7": None, "8": "sub2/eight.bin"}
    errors = {url.rsplit("/", 1)[1]: row["error"] for url, row in rows.items()}
    assert errors["3"] == "u:3: NAME '../escape.bin' leaves --out".replace("u:", f"{tmp_path}/u:")
    assert "is absolute" in errors["4"] and "already used" in errors["5"]
    assert "a file and a folder" in errors["6"] and ".bulkfetch" in errors["7"]
    assert server.stats.count("/bytes/3") == 0
    assert_tidy(out, rows)
    assert not (tmp_path / "escape.bin").exists()


def test_bad_lines_are_reported_and_the_rest_run(server: Server, tmp_path: Path) -> None:
    """A line that is not an http(s) URL fails with its source and line number."""
    good = server.url("/bytes/10")
    src = write_list(tmp_path / "urls.txt", ["ftp://x/y", "# ok", good, "not a url", "http://"])
    proc = run_cli(str(src), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert rows["ftp://x/y"]["error"] == f"{src}:1: not an http(s) URL: 'ftp://x/y'"
    assert rows["not"]["error"] == f"{src}:4: not an http(s) URL: 'not'"
    assert rows["http://"]["status"] == "failed"
    assert rows[good]["status"] == "ok"


def test_reads_standard_input(server: Server, tmp_path: Path) -> None:
    """`-` reads the list from standard input."""
    url = server.url("/bytes/77")
    proc = run_cli("-", "-o", str(tmp_path / "out"), "--manifest", str(tmp_path / "run.jsonl"),
                   stdin=f"{url}\n")
    assert proc.returncode == 0, proc.stderr
    rows = read_manifest(tmp_path / "run.jsonl")
    assert rows[url]["bytes"] == 77
    assert rows[url]["error"] is None


def test_sends_extra_headers_and_asks_for_identity(server: Server, tmp_path: Path) -> None:
    """-H adds headers (repeatable); bulkfetch asks for the body uncompressed by default."""
    url = server.url("/headers")
    proc, rows = fetch_cli(tmp_path, [url], "-H", "X-Token: abc: def", "-H", "User-Agent: mine/1")
    assert proc.returncode == 0, proc.stderr
    sent = server.stats.headers[0]
    assert sent["X-Token"] == "abc: def"
    assert sent["User-Agent"] == "mine/1"
    assert sent["Accept-Encoding"] == "identity"
    row = rows[url]
    assert orjson.loads((tmp_path / "out" / row["path"]).read_bytes())["X-Token"] == "abc: def"


def test_compressed_bodies_are_saved_as_sent(server: Server, tmp_path: Path) -> None:
    """A gzip body is saved byte for byte: size, Content-Length and sha256 agree."""
    url = server.url("/gzipped")
    proc, rows = fetch_cli(tmp_path, [url])
    assert proc.returncode == 0, proc.stderr
    row = rows[url]
    saved = (tmp_path / "out" / row["path"]).read_bytes()
    assert saved == GZIPPED and row["bytes"] == len(GZIPPED)
    assert gzip.decompress(saved) == body("gzipped", 50_000)


def test_same_url_same_path_in_any_list(server: Server, tmp_path: Path) -> None:
    """The path of a URL does not depend on what else is in the list or its order."""
    urls = [server.url(f"/p/{i}.txt") for i in range(5)]
    run_cli(str(write_list(tmp_path / "a", urls)), "-o", str(tmp_path / "a-out"))
    run_cli(str(write_list(tmp_path / "b", [urls[3], server.url("/other")])),
            "-o", str(tmp_path / "b-out"))
    first = read_manifest(tmp_path / "a-out" / MANIFEST)[urls[3]]["path"]
    second = read_manifest(tmp_path / "b-out" / MANIFEST)[urls[3]]["path"]
    assert first == second and first.startswith(f"127.0.0.1_{server.port}/3-")


@pytest.mark.parametrize(("args", "message"), [
    (["--concurrency", "0"], "--concurrency"),
    (["--timeout", "abc"], "--timeout"),
    (["--bogus"], "--bogus"),
    (["-H", "no colon here"], "expected 'Name: value'"),
    ([], "Missing argument"),
])
def test_usage_errors_are_one_line_and_exit_2(
    tmp_path: Path, args: list[str], message: str
) -> None:
    """A bad option is one line on stderr and exit code 2."""
    src = write_list(tmp_path / "u", ["http://127.0.0.1:9/"])
    proc = run_cli(*([str(src)] if args else []), *args, "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr
    assert proc.stderr.startswith("bulkfetch: error: ")


def test_an_unreadable_source_is_a_usage_error(tmp_path: Path) -> None:
    """A missing or unreadable list is exit 2, before anything is fetched."""
    proc = run_cli(str(tmp_path / "missing.txt"), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert proc.stderr == (
        f"bulkfetch: error: '{tmp_path}/missing.txt': cannot read: No such file or directory\n"
    )
    proc = run_cli(str(tmp_path), "-o", str(tmp_path / "out"))
    assert proc.returncode == 2 and "Is a directory" in proc.stderr


def test_out_that_is_a_file_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    proc = run_cli(str(write_list(tmp_path / "u", ["http://127.0.0.1:9/"])), "-o",
                   str(tmp_path / "f"))
    assert proc.returncode == 2 and "--out" in proc.stderr


def test_quiet_keeps_stdout_empty(server: Server, tmp_path: Path) -> None:
    """-q: nothing on stdout; stderr has the failure and a short summary."""
    proc = run_cli(str(write_list(tmp_path / "u", [server.url("/status/410")])),
                   "-o", str(tmp_path / "out"), "-q")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert "HTTP 410 Gone" in proc.stderr and len(proc.stderr.splitlines()) <= 4


def test_a_line_over_1_mib_fails_alone_and_the_rest_run(server: Server, tmp_path: Path) -> None:
    before, after = server.url("/bytes/10"), server.url("/bytes/11")
    src = tmp_path / "u"
    huge = b"http://127.0.0.1/" + b"x" * (2 * 1024 * 1024)
    src.write_bytes(f"{before}\n".encode() + huge + f"\n{after}\n".encode() + huge)
    proc = run_cli(str(src), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert rows[before]["status"] == rows[after]["status"] == "ok"
    failed = sorted(row["error"] for row in rows.values() if row["status"] == "failed")
    assert failed == [f"{src}:{n}: line too long (over 1 MiB); skipped" for n in (2, 4)]
    assert len(proc.stderr) < 2000  # the line is named by its start, not printed whole


def test_an_unwritable_summary_json_is_one_line_before_any_request(
    server: Server, tmp_path: Path
) -> None:
    src = write_list(tmp_path / "u", [server.url("/bytes/10")])
    for where in (tmp_path / "missing" / "s.json", tmp_path):
        proc = run_cli(str(src), "-o", str(tmp_path / "out"), "--summary-json", str(where))
        assert proc.returncode == 2 and "--summary-json" in proc.stderr
        assert proc.stderr.count("\n") == 1
    assert server.stats.paths == [] and not list(tmp_path.glob(".*.part"))


def test_an_unwritable_manifest_is_one_line_before_any_request(
    server: Server, tmp_path: Path
) -> None:
    listing = write_list(tmp_path / "u", [server.url("/bytes/10")])
    proc = run_cli(str(listing), "-o", str(tmp_path / "out"), "--manifest", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"bulkfetch: error: --manifest '{tmp_path}': cannot write: Is a directory"
    ]
    assert server.stats.count("/bytes/10") == 0


def test_the_line_limit_is_exact_and_an_undecodable_url_is_not_requested(
    server: Server, tmp_path: Path
) -> None:
    """A whole line of 1 MiB and a few bytes fails as too long; a URL holding a byte that is
    not UTF-8 fails unrequested (it is not the URL that was written); the rest run."""
    good = server.url("/bytes/12")
    src = tmp_path / "u"
    over = b"http://127.0.0.1/" + b"x" * (1024 * 1024 - 10)  # 1 MiB + 7 bytes
    bad = server.url("/bytes/13").encode() + b"\xff"
    src.write_bytes(over + b"\n" + bad + b"\n" + f"{good}\n".encode())
    proc = run_cli(str(src), "-o", str(tmp_path / "out"))
    assert proc.returncode == 1, proc.stderr
    rows = read_manifest(tmp_path / "out" / MANIFEST)
    assert rows[good]["status"] == "ok"
    errors = sorted(row["error"] for row in rows.values() if row["status"] == "failed")
    assert errors == [f"{src}:1: line too long (over 1 MiB); skipped",
                      f"{src}:2: not an http(s) URL: it holds bytes that are not UTF-8: "
                      f"'{server.url('/bytes/13')}\\xff'"]
    assert server.stats.paths == ["/bytes/12"]
    assert len(proc.stderr) < 2000
