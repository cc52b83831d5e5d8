"""A gate that holds a real job's extraction until the test lets items through.

The job runs in real ``gristmill`` processes; the gate works through ``pace/sitecustomize.py``,
which every process of the run imports at start-up (see its docstring). A steered job
thus stops, pauses or dies at a point the test chose, on a fast machine or a slow one.
"""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

_PACE = Path(__file__).parent / "pace"


class Gate:
    """A folder of tickets: each lets one item's extraction through; ``open`` lets all."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self._numbers = itertools.count(1)

    def env(self, env: dict[str, str]) -> dict[str, str]:
        """``env`` with this gate in front of every extraction of the run it starts."""
        path = os.pathsep.join(p for p in (str(_PACE), env.get("PYTHONPATH")) if p)
        return {**env, "PYTHONPATH": path, "GRISTMILL_TEST_GATE": str(self.folder)}

    def admit(self, n: int) -> None:
        """Let ``n`` more items through."""
        for _ in range(n):
            (self.folder / f"ticket-{next(self._numbers):06d}").touch()

    def open(self) -> None:
        """Let every item through from now on."""
        (self.folder / "open").touch()

    def close(self) -> None:
        """Hold every item from now on (tickets not yet taken are withdrawn)."""
        (self.folder / "open").unlink(missing_ok=True)
        for ticket in self.folder.glob("ticket-*"):
            ticket.unlink(missing_ok=True)

    def passed(self) -> list[str]:
        """The paths of the items let through so far, in the order they passed."""
        log = self.folder / "passed"
        return log.read_text().splitlines() if log.exists() else []


def wait_for_pause_seen(home: Path, job_id: int, timeout: float = 120) -> None:
    """Wait until the driver of ``job_id`` has taken its pause (its log says so): from
    then on it claims nothing, whatever the gate lets through."""
    log = home / "logs" / "gristmill.log"
    deadline = time.monotonic() + timeout
    while f"job {job_id}: pause requested" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, f"the driver of job {job_id} never took the pause"
        time.sleep(0.05)
