"""A real `gristmill serve` in a subprocess, and a Server-Sent Events reader over httpx."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

TOKEN = "s3cret-test-token"


@dataclass
class Server:
    """A running `gristmill serve` and a client with the right token."""

    proc: subprocess.Popen[bytes]
    url: str
    home: Path
    client: httpx.Client

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (only the server: job processes run in sessions of their own)."""
        self.client.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=15)


def start_server(env: dict[str, str], home: Path, log: Path, token: str | None = TOKEN,
                 cwd: Path | None = None) -> Server:
    """Start `gristmill serve --port 0` (in ``cwd``, where it reads gristmill.toml) and
    wait until it listens."""
    seen = log.stat().st_size if log.exists() else 0  # an earlier server's lines
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gristmill", "serve", "--port", "0"],
                                env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = log.read_bytes()[seen:].decode()
        found = re.findall(r"Uvicorn running on (http://127\.0\.0\.1:\d+)", text)
        if found:
            # JSON on every request: the API refuses state changes of any other type.
            headers = {"Content-Type": "application/json",
                       **({"Authorization": f"Bearer {token}"} if token else {})}
            client = httpx.Client(base_url=found[-1], headers=headers, timeout=30)
            return Server(proc, found[-1], home, client)
        assert proc.poll() is None, log.read_text()
        time.sleep(0.1)
    raise AssertionError(f"the server did not start:\n{log.read_text()}")


def job_processes(home: Path) -> list[psutil.Process]:
    """The live `gristmill jobs run` processes working on ``home`` (an ended one the
    server has not reaped yet is a zombie, and not counted)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["status"] == psutil.STATUS_ZOMBIE:
            continue
        cmdline = proc.info["cmdline"] or []
        if "run" in cmdline and "jobs" in cmdline and str(home.resolve()) in cmdline:
            found.append(proc)
    return found


def events(client: httpx.Client, job_id: int, last_event_id: str | None = None,
           ) -> Iterator[dict[str, Any]]:
    """The job's events as ``{"id": int, "event": str, "data": dict}``, until the server
    ends the stream."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    with client.stream("GET", f"/api/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        for line in response.iter_lines():
            if line.startswith(":"):
                continue  # a comment (sse-starlette's ping)
            if line:
                name, _, value = line.partition(":")
                fields[name] = value.removeprefix(" ")
                continue
            if "data" in fields:
                yield {"id": int(fields["id"].partition(":")[0]), "raw_id": fields["id"],
                       "event": fields["event"],
                       "data": json.loads(fields["data"])}
            fields = {}


def wait_for(client: httpx.Client, job_id: int, *states: str, timeout: float = 30
             ) -> dict[str, Any]:
    """Poll the job until it is in one of ``states``; the job."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] in states:
            return job
        assert time.monotonic() < deadline, f"job stuck in {job['state']}: {job}"
        time.sleep(0.1)


def wait_for_progress(client: httpx.Client, job_id: int, timeout: float = 30
                      ) -> dict[str, Any]:
    """Poll until the job is running and has finished some items; the job."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["state"] == "running" and job["done"] > 0:
            return job
        assert job["state"] in ("queued", "running"), job
        assert time.monotonic() < deadline, f"no progress: {job}"
        time.sleep(0.05)


def wait_for_exit(home: Path, timeout: float = 30) -> None:
    """Wait until no job process works on ``home`` any more."""
    deadline = time.monotonic() + timeout
    while job_processes(home):
        assert time.monotonic() < deadline, "a job process is still running"
        time.sleep(0.1)
