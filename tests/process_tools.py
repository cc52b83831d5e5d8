"""Run the real ``gristmill`` command in a subprocess and watch its process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from backends import ON_POSTGRES, url_for


def env_for(home: Path, embedder: str = "none", **settings: str) -> dict[str, str]:
    """The environment of a CLI run against ``home`` (settings as GRISTMILL_* vars), on
    the suite's catalog backend (a PostgreSQL database of the test's for each home, when
    the suite runs on PostgreSQL)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    if ON_POSTGRES:
        env["GRISTMILL_DATABASE_URL"] = url_for(home / "gristmill.db")
    env["GRISTMILL_HOME"] = str(home)
    env["GRISTMILL_EMBEDDER"] = embedder
    env.update({f"GRISTMILL_{k.upper()}": v for k, v in settings.items()})
    return env


def gristmill(
    *args: str, env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``gristmill ARGS`` to completion."""
    return subprocess.run([sys.executable, "-m", "gristmill", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def gristmill_json(*args: str, env: dict[str, str]) -> Any:
    """Run ``gristmill ARGS --json`` and parse its output; fail loudly on a bad exit."""
    done = gristmill(*args, "--json", env=env)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return json.loads(done.stdout)


def start(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``gristmill ARGS`` in its own process group (so it can be killed whole)."""
    return subprocess.Popen([sys.executable, "-m", "gristmill", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, start_new_session=True)


class PeakTreeRss:
    """Samples the RSS of a process and all its descendants until stopped."""

    def __init__(self, pid: int, every: float = 0.02) -> None:
        self.peak = 0
        self._root = psutil.Process(pid)
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self._root, *self._root.children(recursive=True)]
            except psutil.NoSuchProcess:
                return
            for proc in procs:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak = max(self.peak, total)
            time.sleep(self._every)

    def stop(self) -> int:
        """Stop sampling; the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak
