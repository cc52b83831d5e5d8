"""A local pool of worker processes with per-item timeouts and recycling (pebble).

pebble gives what the standard pools lack: a task over its timeout has its worker killed
and replaced, and workers are replaced after ``max_tasks`` items. Workers are started by a
fork server, so they never inherit the driver's threads (the embedding stage) or its
database connection.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from concurrent.futures import Future

import pebble.common
from pebble import ProcessPool

from gristmill.config import Settings
from gristmill.runtime.worker import WorkOptions, WorkResult, init_worker, process_item

__all__ = ["LocalExecutor", "start_fork_server"]

# Imported once in the fork server so each new worker starts with them loaded. The
# office libraries (python-docx, python-pptx, openpyxl: ~0.3 s of imports) are left to
# the registry's lazy loading: a worker imports them on its first office file, once per
# worker lifetime, instead of every run paying for them before its first file.
_PRELOAD = ["gristmill.runtime.worker", "gristmill.extract.pdf", "gristmill.extract.html",
            "gristmill.extract.text"]


# pebble's manager thread notices a worker that retired (max_tasks, or our RSS limit) on
# its next tick, 0.1 s by default, and a core idles until then: ~7 % of the throughput
# when recycling every 100 PDFs. Its maintainer points at this constant for faster
# response (noxdafox/pebble#65); one check every 20 ms costs nothing measurable.
pebble.common.CONSTS.sleep_unit = 0.02


def start_fork_server() -> multiprocessing.context.BaseContext:
    """Start the fork server now, without waiting for it.

    It spends ~0.4 s importing the extractors; called before discovery, that happens
    while the driver walks and hashes the source instead of before the first file.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context


class LocalExecutor:
    """Runs :func:`process_item` in a pool of processes on this machine."""

    def __init__(self, settings: Settings, options: WorkOptions) -> None:
        context = start_fork_server()
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
