"""Runs of ``gristmill`` killed with SIGKILL at points chosen by progress, not by time.

Each killed run is let through the :class:`gate.Gate` a set number of items, waited on
until the catalog shows them committed, and killed -9 (its whole process group) while
the items it claimed next are held mid-extraction at the gate. Every kill thus lands
after real progress and before the end, on a fast machine or a slow one; a final run
with the gate open goes to the end.
"""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

from backends import query
from gate import Gate
from process_tools import start

DEADLINE = 300.0  # seconds a run may take to commit its share (a loaded CI machine)


def finished(home: Path) -> int:
    """Items of ``home`` committed past extraction (0 before its catalog exists)."""
    rows = query(home, "SELECT count(*) FROM items WHERE status IN "
                 "('extracted', 'indexed', 'skipped', 'failed')", missing_ok=True)
    return rows[0][0] if rows else 0


def _claimed(home: Path) -> int:
    rows = query(home, "SELECT count(*) FROM items WHERE status = 'processing'",
                 missing_ok=True)
    return rows[0][0] if rows else 0


def crash_by_progress(args: list[str], env: dict[str, str], home: Path, gate: Gate, *,
                      kills: int, step: int, seed: int) -> int:
    """Run ``gristmill ARGS`` (catalog at ``home``) ``kills`` times, each killed -9 once
    ``step`` more items are committed and others are claimed, held at the gate; then
    once more, the gate open, to the end. Returns how many runs were killed.

    Just before each kill a few more items (0-3, drawn from ``seed``) are let through
    and the kill waits a random moment, so that it may also land while those are
    extracted, batched or committed: where it lands then varies with the machine, and
    must not matter.
    """
    rng = random.Random(seed)
    env = gate.env(env)
    for _ in range(kills):
        gate.close()
        before = finished(home)
        proc = start(*args, env=env)
        gate.admit(step)
        deadline = time.monotonic() + DEADLINE
        # Its share committed, every ticket taken, and the next items claimed: those
        # wait at the gate, so the run cannot have ended and cannot end by itself.
        while not (finished(home) >= before + step and not list(gate.folder.glob("ticket-*"))
                   and _claimed(home) > 0):
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before it was killed (exit "
                                     f"{proc.returncode})\n{out}\n{err}")
            assert time.monotonic() < deadline, "the run never committed its share"
            time.sleep(0.05)
        gate.admit(rng.randint(0, 3))
        time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, "the run ended with items held at the gate"
        os.killpg(proc.pid, signal.SIGKILL)  # the driver, its workers, the fork server
        proc.communicate()
    gate.open()
    proc = start(*args, env=env)
    out, err = proc.communicate(timeout=DEADLINE)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
    return kills
