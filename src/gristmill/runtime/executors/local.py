"""A local pool of worker processes with per-item timeouts and recycling (pebble).

pebble gives what the standard pools lack: a dead worker is replaced and its task
failed, and workers are replaced after ``max_tasks`` items. Workers are started by a
fork server, so they never inherit the driver's threads (the embedding stage) or its
database connection.

Timeouts measure progress, not age: a 300-page scan takes many minutes and is fine as
long as pages keep coming. Each worker keeps a progress file (named for its pid, holding
the token of its current attempt; its mtime is the last page done). :meth:`overdue`
kills a worker whose attempt made no progress for ``item_timeout`` seconds. pebble's own
timeout stays as a backstop, at :data:`HARD_TIMEOUT_FACTOR` times that.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import time
from concurrent.futures import Future
from pathlib import Path

import pebble.common
import psutil
from pebble import ProcessPool

from gristmill.config import Settings
from gristmill.runtime.fork_server import start_fork_server
from gristmill.runtime.worker import WorkOptions, WorkResult, init_worker, process_item

__all__ = ["HARD_TIMEOUT_FACTOR", "LocalExecutor"]

#: pebble kills an attempt this many times ``item_timeout`` after it started, progress
#: or not: the backstop for a worker that cannot even write its progress file.
HARD_TIMEOUT_FACTOR = 12

# pebble's manager thread notices a worker that retired (max_tasks, or our RSS limit) on
# its next tick, 0.1 s by default, and a core idles until then: ~7 % of the throughput
# when recycling every 100 PDFs. Its maintainer points at this constant for faster
# response (noxdafox/pebble#65); one check every 20 ms costs nothing measurable.
pebble.common.CONSTS.sleep_unit = 0.02


class LocalExecutor:
    """Runs :func:`process_item` in a pool of processes on this machine."""

    def __init__(self, settings: Settings, options: WorkOptions) -> None:
        context = start_fork_server()
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._options = options
        self._timeout = settings.item_timeout
        self._beats = _beats_dir(settings.home / "run" / "beats")
        self._tokens = itertools.count(1)
        self._attempts: dict[int, Future[WorkResult]] = {}
        self._timed_out: set[Future[WorkResult]] = set()
        self._pool = ProcessPool(
            max_workers=settings.workers,
            max_tasks=settings.max_tasks_per_worker,
            initializer=init_worker,
            initargs=(str(settings.log_path), settings.worker_max_rss_mb,
                      settings.worker_memory_limit_mb, str(self._beats)),
            context=context,
        )

    def submit(self, source: str, members: tuple[str, ...] = (),
               expected: tuple[int, int] | None = None, *,
               item_id: int = 0, sha256: str | None = None) -> Future[WorkResult]:
        """Schedule one item (a file, or ``members`` down inside it; ``expected``: the
        file's size and mtime as recorded with its sha256; ``item_id``: its id, which
        names a recording's clips; ``sha256``: the file's, for the store of originals);
        the future fails with ``TimeoutError`` or ``pebble.ProcessExpired`` when the
        worker hangs or dies (see :meth:`timed_out`)."""
        token = next(self._tokens)
        future = self._pool.schedule(process_item,
                                     (source, self._options, token, members, expected,
                                      item_id, sha256),
                                     timeout=self._timeout * HARD_TIMEOUT_FACTOR)
        self._attempts[token] = future
        future.add_done_callback(lambda _f: self._attempts.pop(token, None))
        return future

    def overdue(self) -> int:
        """Kill the workers whose attempt made no progress for ``item_timeout`` seconds;
        their futures fail with ``ProcessExpired`` and :meth:`timed_out` says why.
        Returns how many were killed. Cheap: one small file per worker."""
        killed = 0
        deadline = time.time() - self._timeout
        for entry in os.scandir(self._beats):
            try:
                if entry.stat().st_mtime > deadline:
                    continue
                token = int(Path(entry.path).read_text() or 0)
            except (OSError, ValueError):
                continue  # gone, or being rewritten by a worker starting its next item
            future = self._attempts.get(token)
            if future is None or future.done() or future in self._timed_out:
                continue  # a finished attempt: the worker is idle or between items
            self._timed_out.add(future)
            _kill_tree(int(entry.name))
            killed += 1
        return killed

    def timed_out(self, future: Future[WorkResult]) -> bool:
        """Whether :meth:`overdue` killed the worker of ``future``."""
        if future in self._timed_out:
            self._timed_out.discard(future)
            return True
        return False

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop the pool: let workers finish (``kill=False``) or terminate them now."""
        # Held until join() has reaped every worker (see _start_locks), then let go.
        locks = _start_locks(self._pool)
        if kill:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join(timeout=10)
        del locks
        shutil.rmtree(self._beats, ignore_errors=True)


def _start_locks(pool: ProcessPool) -> tuple[object, ...]:
    """The named semaphores a worker unpickles when it starts (its channel's locks).

    Stopping, pebble drops its last reference to them (which unlinks them) and only then
    stops its workers, one by one, giving each up to 3 s to answer SIGTERM. A worker
    still starting meanwhile (slow on a loaded machine) cannot open them and prints a
    ``SemLock._rebuild ... FileNotFoundError`` traceback (CPython #94765). Holding a
    reference until ``join`` has reaped every worker closes that window. These are
    pebble internals: where they are missing, nothing is held and nothing breaks.
    """
    manager = getattr(getattr(pool, "_pool_manager", None), "worker_manager", None)
    mutex = getattr(getattr(manager, "workers_channel", None), "mutex", None)
    return (getattr(mutex, "reader_mutex", None), getattr(mutex, "writer_mutex", None))


def _beats_dir(parent: Path) -> Path:
    """This driver's folder of progress files; folders of drivers that are gone (killed
    runs) are removed on the way."""
    parent.mkdir(parents=True, exist_ok=True)
    for entry in os.scandir(parent):
        if entry.name.isdigit() and not psutil.pid_exists(int(entry.name)):
            shutil.rmtree(entry.path, ignore_errors=True)
    mine = parent / str(os.getpid())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and what it started (Tesseract, LibreOffice)."""
    with contextlib.suppress(psutil.Error):
        worker = psutil.Process(pid)
        for child in worker.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                child.kill()
        worker.kill()
