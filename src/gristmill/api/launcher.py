"""Starts each job in a process of its own, outside the server.

Extraction never runs in the server's process: a job is ``gristmill jobs run ID``,
started in a new session so that stopping or restarting the server (and the signals a
terminal sends its process group) leaves it running. Its output goes to
``HOME/logs/job-ID.log``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import psutil

from gristmill.catalog.jobs import JobStore
from gristmill.catalog.sqlite import lease_owner_token
from gristmill.config import Settings

__all__ = ["JobLauncher"]


class JobLauncher:
    """Starts job processes and reaps those that ended (no zombies in a long-lived server)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()

    def launch(self, jobs: JobStore, job_id: int) -> int:
        """Start the process that claims and runs the queued job ``job_id``; its pid."""
        home = self.settings.home.resolve()
        log_path = self.settings.log_path.parent.resolve() / f"job-{job_id}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # --home and --embedder explicitly: the server may have been given them as flags,
        # which its environment (inherited by the child) does not carry.
        command = [sys.executable, "-m", "gristmill", "jobs", "run", str(job_id),
                   "--home", str(home), "--embedder", self.settings.embedder]
        env = dict(os.environ)
        if self.settings.database_url is not None:
            # In the environment, not as --database: a command line (and the password
            # in the URL) is visible to every user of the machine.
            env["GRISTMILL_DATABASE_URL"] = self.settings.database_url.get_secret_value()
        env["GRISTMILL_POOL_SIZE"] = str(self.settings.pool_size)
        with open(log_path, "ab") as log:
            child = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=env)
        with self._lock:
            self._children = [c for c in self._children if c.poll() is None]
            self._children.append(child)
        # From here the child answers for the queued job: should it die before claiming
        # it, the job shows as interrupted instead of staying queued for ever.
        try:
            jobs.hand_over(job_id, _owner_token(child.pid))
        except psutil.Error:
            pass  # it already ended; the server's own token still stands for the job
        return child.pid

    def reap(self) -> None:
        """Collect the exit status of children that ended."""
        with self._lock:
            self._children = [c for c in self._children if c.poll() is None]


def _owner_token(pid: int) -> str:
    """What :func:`lease_owner_token` returns inside process ``pid``."""
    mine = lease_owner_token()
    host = mine.rsplit(":", 2)[0]
    return f"{host}:{pid}:{psutil.Process(pid).create_time():.2f}"
