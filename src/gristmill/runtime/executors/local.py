"""A local pool of worker processes with per-item timeouts and recycling (pebble).

pebble gives what the standard pools lack: a task over its timeout has its worker killed
and replaced, and workers are replaced after ``max_tasks`` items. Workers are started by a
fork server, so they never inherit the driver's threads (the embedding stage) or its
database connection.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future

from pebble import ProcessPool

from gristmill.config import Settings
from gristmill.runtime.worker import WorkOptions, WorkResult, init_worker, process_item

__all__ = ["LocalExecutor"]

# Imported once in the fork server so each new worker starts with them loaded.
_PRELOAD = ["gristmill.runtime.worker", "gristmill.extract.pdf", "gristmill.extract.office",
            "gristmill.extract.html", "gristmill.extract.text"]


class LocalExecutor:
    """Runs :func:`process_item` in a pool of processes on this machine."""

    def __init__(self, settings: Settings, options: WorkOptions) -> None:
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(_PRELOAD)
        settings.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._options = options
        self._timeout = settings.item_timeout
        self._pool = ProcessPool(
            max_workers=settings.workers,
            max_tasks=settings.max_tasks_per_worker,
            initializer=init_worker,
            initargs=(str(settings.log_path), settings.worker_max_rss_mb,
                      settings.worker_memory_limit_mb),
            context=context,
        )

    def submit(self, source: str) -> Future[WorkResult]:
        """Schedule one item; the future fails with ``TimeoutError`` or
        ``pebble.ProcessExpired`` when the worker hangs or dies."""
        return self._pool.schedule(process_item, (source, self._options), timeout=self._timeout)

    def shutdown(self, *, kill: bool = False) -> None:
        """Stop the pool: let workers finish (``kill=False``) or terminate them now."""
        if kill:
            self._pool.stop()
        else:
            self._pool.close()
        self._pool.join(timeout=10)
