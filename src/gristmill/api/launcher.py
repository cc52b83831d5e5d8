"""Starts each job in a process of its own, outside the server, a few at a time.

Extraction never runs in the server's process: a job is ``gristmill jobs run ID``,
started in a new session so that stopping or restarting the server (and the signals a
terminal sends its process group) leaves it running. Its output goes to
``HOME/logs/job-ID.log``.

At most ``max_running_jobs`` of these processes run at once (each holds its own worker
pool, a few hundred MB): a job submitted beyond that stays ``queued``, answered for by
the server, and starts, oldest first, when one of them exits.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
from collections import deque

import psutil

from gristmill.catalog.jobs import JobState, JobStore
from gristmill.catalog.leases import lease_owner_token
from gristmill.config import Settings

__all__ = ["JobLauncher"]

log = logging.getLogger(__name__)


class JobLauncher:
    """Starts job processes, at most ``max_running_jobs`` at once, and reaps those that
    ended (no zombies in a long-lived server)."""

    def __init__(self, settings: Settings, owner: str) -> None:
        """Args:
        settings: the server's settings.
        owner: the server's ``lease_owner_token``, which answers for waiting jobs.
        """
        self.settings = settings
        self.owner = owner
        self._children: list[subprocess.Popen[bytes]] = []
        self._lock = threading.Lock()
        self._waiting: deque[int] = deque()  # queued job ids, oldest first
        self._vouched = 0.0  # when the waiting jobs' rows were last refreshed

    @property
    def waiting(self) -> int:
        """Queued jobs waiting for a free slot."""
        return len(self._waiting)

    @property
    def running(self) -> int:
        """Job processes started here that are still alive."""
        self.reap()
        return len(self._children)

    def submit(self, jobs: JobStore, job_id: int) -> str | None:
        """Start the queued job ``job_id`` now if a slot is free, else once one is.

        Returns:
            Why its process could not be started (the job is then ``failed``), or None.
        """
        self._waiting.append(job_id)
        return self.dispatch(jobs).get(job_id)

    def dispatch(self, jobs: JobStore) -> dict[int, str]:
        """Start waiting jobs, oldest first, while fewer than ``max_running_jobs`` run.

        Call it from one thread at a time (the server calls it under its catalog lock).

        Returns:
            The jobs whose process could not start, with why (each is now ``failed``).
        """
        failed: dict[int, str] = {}
        while self._waiting and self.running < self.settings.max_running_jobs:
            job_id = self._waiting.popleft()
            if jobs.state(job_id) != JobState.QUEUED:
                continue  # cancelled, or claimed by a `jobs resume`, while it waited
            try:
                self.launch(jobs, job_id)
            except OSError as exc:  # no process: the job must not wait queued for ever
                failed[job_id] = f"could not start its process: {exc}"
                jobs.fail_queued(job_id, failed[job_id])
                log.error("job %d %s", job_id, failed[job_id])
        now = time.monotonic()
        if self._waiting and now - self._vouched > self.settings.lease_seconds / 3:
            # A queued row whose heartbeat is older than the lease reads `interrupted`:
            # the server, alive, keeps vouching for the jobs it has yet to start.
            for job_id in self._waiting:
                jobs.hand_over(job_id, self.owner)
            self._vouched = now
        return failed

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
        if self.settings.env_file is not None:
            # The server's env file (perhaps given as --env-file): the job reads the same.
            env["GRISTMILL_ENV_FILE"] = str(self.settings.env_file.resolve())
        # The job reads only inside the server's source roots, whatever the settings it
        # would find on its own: containment is enforced in the job, where files are read.
        env["GRISTMILL_SOURCE_ROOTS"] = os.pathsep.join(map(str, self.settings.source_roots))
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
