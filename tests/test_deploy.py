"""deploy/kubernetes/indexed-job.yaml: valid against the real Kubernetes schema, and what its
pods would run works as one shard of the job."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import cli_env, run_cli, write_list
from tests.server import Server

ROOT = Path(__file__).resolve().parent.parent
JOB = ROOT / "deploy" / "kubernetes" / "indexed-job.yaml"
yaml = pytest.importorskip("yaml")


def test_the_indexed_job_passes_strict_schema_validation() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", str(JOB)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "passed" in proc.stdout + proc.stderr


def test_what_people_copy_from_the_files_works_as_pasted() -> None:
    """A local image with `:latest` would be pulled (Always) from a registry that has none;
    the Dockerfile's own example runs as the user (files in out/ are theirs); a checkout
    installs the extra with `.[s3]`."""
    job = yaml.safe_load(JOB.read_text())
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["imagePullPolicy"] == "IfNotPresent"
    header = (ROOT / "Dockerfile").read_text().split("\nFROM", 1)[0]
    assert '--user "$(id -u):$(id -g)"' in header
    readme = (ROOT / "README.md").read_text()
    assert "pip install '.[s3]'" in readme and "pip install 'bulkfetch[s3]'" not in readme


def test_its_pods_run_one_shard_each(server: Server, tmp_path: Path) -> None:
    job = yaml.safe_load(JOB.read_text())
    spec = job["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert spec["completionMode"] == "Indexed" and pod["restartPolicy"] == "Never"
    assert int(env["BULKFETCH_SHARD_COUNT"]) == spec["completions"]
    uid = re.search(r"--uid (\d+)", (ROOT / "Dockerfile").read_text())
    assert uid is not None and pod["securityContext"]["runAsUser"] == int(uid[1])
    data = tmp_path / "data"
    urls = [server.url(f"/bytes/{900 + n}") for n in range(10)]
    data.mkdir()
    write_list(data / "urls.txt", urls)
    args = [arg.replace("/data", str(data)) for arg in container["args"]]
    count = spec["completions"]
    for index in range(count):  # what each pod does, one after another here
        proc = subprocess.run([sys.executable, "-m", "bulkfetch", *args],
                              env={**cli_env(), **env, "JOB_COMPLETION_INDEX": str(index)},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    report = run_cli("report", str(data / "out"))
    assert report.returncode == 0 and f"{count} shards: {count} done" in report.stderr
    assert "10 ok, 0 failed" in report.stderr
