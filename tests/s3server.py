"""A real S3-compatible server on loopback for the tests: moto in server mode, in its own
process (it enforces If-None-Match on PUT and on completing a multipart upload)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

KEY_ID = "AKIDBULKFETCHTEST"
SECRET = "bulkfetch-test-secret-never-printed"


class MotoServer:
    def __init__(self, *, auth: bool = False, free_actions: int = 1,
                 recording: str | None = None) -> None:
        self.port = _free_port()
        self.auth = auth
        self.free_actions = free_actions
        self.recording = recording  # a file: moto writes each request it gets there
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def env(self, **more: str) -> dict[str, str]:
        """The CLI's environment: AWS_* as the AWS tools take them, nothing else of AWS."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        env.update(AWS_ACCESS_KEY_ID=KEY_ID, AWS_SECRET_ACCESS_KEY=SECRET,
                   AWS_REGION="us-east-1", AWS_ENDPOINT_URL=self.endpoint,
                   AWS_CONFIG_FILE=os.devnull, AWS_SHARED_CREDENTIALS_FILE=os.devnull)
        env.update(more)
        return env

    def start(self) -> MotoServer:
        env = self.env()
        if self.auth:  # the first actions (creating the bucket) are free, then keys are checked
            env["INITIAL_NO_AUTH_ACTION_COUNT"] = str(self.free_actions)
        if self.recording:
            env.update(MOTO_ENABLE_RECORDING="1", MOTO_RECORDER_FILEPATH=self.recording)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=1).close()
                return self
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "moto did not start"
                time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(10)

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name="us-east-1",
            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

    def requests(self) -> list[dict[str, Any]]:
        """What moto was sent since it started (with `recording`): method, URL, headers."""
        import json

        assert self.recording is not None
        with open(self.recording) as file:
            return [json.loads(line) for line in file if line.strip()]

    def user(self, name: str) -> tuple[str, str]:
        """An IAM user who may do anything in S3, and its access key: with `auth`, moto then
        checks every request's SigV4 signature against this secret (4 free actions)."""
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1",
                           aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=(
            '{"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*",'
            ' "Resource": "*"}]}'))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name


def objects(client: Any, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under `prefix` by key, with its body."""
    found: dict[str, bytes] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for entry in page.get("Contents", []):
            got = client.get_object(Bucket=bucket, Key=entry["Key"])
            found[entry["Key"]] = got["Body"].read()
    return found


def open_uploads(client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
