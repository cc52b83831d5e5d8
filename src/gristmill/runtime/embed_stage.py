"""The embedding stage: a thread that turns batches of chunk texts into vectors.

It runs beside extraction, never in its way: the driver hands it work from the index's
backlog (chunks without vectors), it hands back vectors, and the driver writes them. The
model's inference releases the GIL, so a thread is enough; the queues are bounded, so at
most a couple of batches of text are held at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass

import numpy as np

from gristmill.embed import Embedder

__all__ = ["EmbedStage", "EmbedWork"]

log = logging.getLogger(__name__)

_STOP = object()


@dataclass(slots=True)
class EmbedWork:
    """Distinct texts to embed and the items waiting on them."""

    hashes: list[str]
    texts: list[str]
    item_ids: set[int]
    vectors: np.ndarray | None = None
    error: BaseException | None = None
    seconds: float = 0.0


class EmbedStage:
    """Owns one embedder and one thread; ``submit`` and ``results`` never block."""

    def __init__(self, embedder: Embedder, depth: int = 2) -> None:
        self.embedder = embedder
        self._todo: queue.Queue[object] = queue.Queue(maxsize=depth)
        self._done: queue.Queue[EmbedWork] = queue.Queue()
        self._busy = 0
        self._thread = threading.Thread(target=self._loop, name="gristmill-embed", daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """Whether work is queued, running, or waiting to be collected."""
        return self._busy > 0

    @property
    def has_room(self) -> bool:
        """Whether ``submit`` would accept work now."""
        return not self._todo.full()

    def submit(self, work: EmbedWork) -> bool:
        """Queue ``work``; False when the queue is full (try again later)."""
        try:
            self._todo.put_nowait(work)
        except queue.Full:
            return False
        self._busy += 1
        return True

    def results(self) -> list[EmbedWork]:
        """Finished work (vectors or an error), oldest first."""
        out: list[EmbedWork] = []
        while True:
            try:
                out.append(self._done.get_nowait())
            except queue.Empty:
                break
        self._busy -= len(out)
        return out

    def close(self) -> None:
        """Stop the thread: queued work is dropped (its chunks stay without vectors for
        the next run), the batch being embedded is finished, and the thread is joined.

        Joined without a timeout: a process that exits while this thread is inside
        onnxruntime is aborted ("terminate called without an active exception"), so
        the wait is for one batch at most.
        """
        while True:
            try:
                self._todo.get_nowait()
            except queue.Empty:
                break
        self._todo.put(_STOP)  # room: the queue was just emptied, and only we put
        self._thread.join()

    def _loop(self) -> None:
        while True:
            work = self._todo.get()
            if work is _STOP:
                return
            assert isinstance(work, EmbedWork)
            started = time.perf_counter()
            try:
                work.vectors = self.embedder.embed(work.texts)
            except Exception as exc:  # reported to the driver, which logs and moves on
                log.exception("embedding a batch of %d texts failed", len(work.texts))
                work.error = exc
            work.seconds = time.perf_counter() - started
            self._done.put(work)
