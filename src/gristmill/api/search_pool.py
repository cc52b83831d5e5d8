"""The server's search threads: a fixed few, each with its own read-only connection,
running at a lower CPU priority than the jobs they share the machine with.

A search is short but CPU-bound (BM25 over the matching chunks, a vector product, an
embedding of the query). Run on the web framework's own thread pool (40 threads), a
burst of them all compete for the cores at once with the job's processes: on 2 cores
that slowed a running job by a quarter and queued searches behind each other
(BENCHMARKS.md, "HTTP API under load"). A pool of one thread per core bounds how many
run at once (the rest wait in line, which costs them less than thrashing would), and a
nice increment on those threads only lets the job's processes take the CPU first while
searches still get their share.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

from gristmill.index import Hit
from gristmill.knowledge_base import KnowledgeBase, Searcher, SearchMode

__all__ = ["SearchPool"]

log = logging.getLogger(__name__)


class SearchPool:
    """``threads`` search threads at nice ``+nice``, sharing one embedder and one
    in-memory vector cache; each keeps its own read-only connection."""

    def __init__(self, kb: KnowledgeBase, threads: int, nice: int) -> None:
        self._kb = kb
        self._nice = nice
        self.vectors = kb.vector_cache()
        self._local = threading.local()
        self._searchers: list[Searcher] = []
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(threads, thread_name_prefix="gristmill-search",
                                            initializer=self._lower_priority)

    def start(self) -> None:
        """Start building the vector cache in the background (if there is one)."""
        if self.vectors is not None:
            self.vectors.start()

    async def search(self, query: str, *, collection: str | None, k: int,
                     mode: SearchMode) -> list[Hit]:
        """Run one search on a pool thread; waits its turn when all are busy."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: self._searcher().search(
                query, collection=collection, k=k, mode=mode))

    async def results(self, query: str, *, collection: str | None, k: int,
                      mode: SearchMode, language: str | None = None,
                      kind: str | None = None, path: str | None = None
                      ) -> list[dict[str, object]]:
        """Run one search and turn its hits into JSON objects with their snippets, all on
        a pool thread: snippets cost CPU too (~0.3 ms a hit), which the event loop that
        serves every other request must not spend."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, lambda: [hit.to_dict(query) for hit in self._searcher().search(
                query, collection=collection, k=k, mode=mode, language=language,
                kind=kind, path=path)])

    def close(self) -> None:
        """Wait for running searches, then close every connection and the cache."""
        self._executor.shutdown(wait=True, cancel_futures=True)
        if self.vectors is not None:
            self.vectors.close()
        with self._lock:
            for searcher in self._searchers:
                searcher.close()
            self._searchers.clear()

    def _searcher(self) -> Searcher:
        searcher: Searcher | None = getattr(self._local, "searcher", None)
        if searcher is None:
            searcher = self._local.searcher = self._kb.searcher(self.vectors)
            with self._lock:
                self._searchers.append(searcher)
        return searcher

    def _lower_priority(self) -> None:
        # On Linux a thread is a task of its own: setpriority on its id changes that
        # thread alone. Elsewhere it would renice the whole server, so leave it be.
        if self._nice <= 0 or not sys.platform.startswith("linux"):
            return
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(),
                           os.getpriority(os.PRIO_PROCESS, 0) + self._nice)
        except OSError as exc:  # a container may forbid it: searches still run
            log.warning("cannot lower the search threads' priority (%s); they run at "
                        "the server's own", exc)
