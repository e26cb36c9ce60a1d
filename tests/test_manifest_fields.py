"""The manifest describes the data: final URL, type, time; unchanged files described too; cut
off URLs listed; the last run's manifest kept; every line and the summary JSON match the
schemas in docs/schema/."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import jsonschema
import orjson

from tests.helpers import (
    MANIFEST,
    bulkfetch_cmd,
    cli_env,
    fetch_cli,
    read_manifest,
    run_cli,
    wait_for,
    write_list,
)
from tests.server import Server

SCHEMAS = Path(__file__).resolve().parent.parent / "docs" / "schema"


def schema(name: str) -> jsonschema.protocols.Validator:
    loaded = orjson.loads((SCHEMAS / name).read_bytes())
    return jsonschema.Draft202012Validator(loaded)


def test_lines_and_summary_match_the_schemas_in_every_state(
    server: Server, tmp_path: Path
) -> None:
    ok = server.url("/redirect/2")
    (server.root / "same.bin").write_bytes(b"x" * 100)
    same = server.url("/static/same.bin")
    urls = [ok, same, server.url("/status/404"), "ftp://x/"]
    src = write_list(tmp_path / "u", urls)
    out = tmp_path / "out"
    for _ in range(2):  # the second run: not_modified lines
        run_cli(str(src), "-o", str(out), "--summary-json", str(tmp_path / "s.json"))
        lines = schema("manifest-line.schema.json")
        for row in read_manifest(out / MANIFEST).values():
            lines.validate(row)
        schema("summary.schema.json").validate(orjson.loads((tmp_path / "s.json").read_bytes()))
    row = read_manifest(out / MANIFEST)[ok]
    assert row["final_url"] == server.url("/redirect/0")
    assert read_manifest(out / MANIFEST)[same]["status"] == "not_modified"
    skipped = run_cli(str(src), "-o", str(out), "--skip-existing")
    assert skipped.returncode == 1
    rows = read_manifest(out / MANIFEST)
    assert rows[ok]["status"] == "skipped" and rows[ok]["sha256"] == row["sha256"]
    for line in rows.values():
        schema("manifest-line.schema.json").validate(line)
    kept = sorted((out / ".bulkfetch" / "runs").glob("manifest-*.jsonl"))
    assert len(kept) == 2  # the two runs before the last one
    assert [read_manifest(path)[ok]["status"] for path in kept] == ["ok", "ok"]


def test_no_password_reaches_the_final_url(server: Server, tmp_path: Path) -> None:
    target = f"http://pat:s3cret@127.0.0.1:{server.port}/bytes/5"
    url = server.url(f"/go?to={target}")
    proc, rows = fetch_cli(tmp_path, [url])
    (row,) = rows.values()
    assert "s3cret" not in (tmp_path / "out" / MANIFEST).read_text() + proc.stderr
    assert row["final_url"] == f"http://127.0.0.1:{server.port}/bytes/5"  # no userinfo


def test_urls_cut_off_by_sigterm_get_an_interrupted_line(server: Server, tmp_path: Path) -> None:
    stalled = [server.url(f"/stall/60?before={600 * 1024}&n={n}") for n in range(3)]
    out = tmp_path / "out"
    proc = subprocess.Popen(
        bulkfetch_cmd(str(write_list(tmp_path / "u", stalled)), "-o", str(out),
                      "--summary-json", str(tmp_path / "s.json")),
        env=cli_env(), stderr=subprocess.PIPE, text=True)
    wait_for(lambda: len(list(out.rglob(".bulkfetch-*.part"))) == 3)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 143
    rows = read_manifest(out / MANIFEST)
    assert sorted(rows) == sorted(stalled)
    assert {row["status"] for row in rows.values()} == {"interrupted"}
    assert "3 URLs cut off" in stderr
    summary = orjson.loads((tmp_path / "s.json").read_bytes())
    assert summary["interrupted"] == 3 and summary["exit_code"] == 143
