"""Chunk vectors held in memory, for a process that answers many searches.

An exact vector search reads every chunk's vector from SQLite; at 100k chunks that read
is about half a second, and the arithmetic 15 ms. A long-lived server (``gristmill
serve``) therefore keeps one matrix of a model's chunk vectors and searches that. It is
rebuilt in a background thread when the catalog's chunks or vectors change, never more
often than ten times the last build took (so refreshing costs at most a tenth of a core
while a job writes), and searches use the previous matrix meanwhile: vector results lag
the catalog by at most one refresh, keyword results never. A matrix over ``max_mb``
is not built; searches then read from SQLite as the CLI does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gristmill.catalog.backend import CatalogDatabase
from gristmill.index.base import top_k

__all__ = ["VectorCache"]

log = logging.getLogger(__name__)

_MIN_REFRESH = 2.0  # seconds between looks at the catalog, at least
_COST_FACTOR = 10.0  # rebuild at most every this many times the last build's duration


@dataclass(frozen=True, slots=True)
class _Matrix:
    ids: np.ndarray  # chunk ids, int64
    collections: np.ndarray  # index into `names`, int32
    names: tuple[str, ...]
    vectors: np.ndarray  # (n, dim) float32, L2-normalised

    @property
    def nbytes(self) -> int:
        return self.ids.nbytes + self.collections.nbytes + self.vectors.nbytes


class VectorCache:
    """One model's chunk vectors in memory, refreshed in the background.

    ``database`` is a function opening a read-only connection to the catalog
    (``open_database(settings, readonly=True)``), called again until it succeeds.
    """

    def __init__(self, database: Callable[[], CatalogDatabase], model: str, dim: int,
                 max_mb: int) -> None:
        self._database = database
        self._model = model
        self._dim = dim
        self._max_bytes = max_mb * 1024 * 1024
        self._matrix: _Matrix | None = None
        self._signature: tuple[int, ...] | None = None
        self._too_big = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Build the matrix in the background and keep it fresh until :meth:`close`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="vector-cache",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Stop refreshing and let the matrix go."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._matrix = None

    @property
    def ready(self) -> bool:
        """Whether searches are answered from memory (built, and within ``max_mb``)."""
        return self._matrix is not None and not self._too_big

    @property
    def status(self) -> str:
        """``building`` (not yet looked at the catalog), ``memory`` or ``scan`` (the
        vectors are over ``max_mb``: searches read SQLite)."""
        if self._too_big:
            return "scan"
        return "building" if self._matrix is None else "memory"

    def search(self, query_vector: np.ndarray, collection: str | None, limit: int
               ) -> list[tuple[int, float]] | None:
        """``(chunk_id, cosine similarity)`` best first, or None when the matrix is not
        available (not built yet, or too big): the caller then scans SQLite."""
        matrix = self._matrix  # one read: a refresh may swap it meanwhile
        if matrix is None or self._too_big:
            return None
        scores = matrix.vectors @ np.asarray(query_vector, dtype=np.float32).ravel()
        ids = matrix.ids
        if collection is not None:
            if collection not in matrix.names:
                return []
            keep = matrix.collections == matrix.names.index(collection)
            scores, ids = scores[keep], ids[keep]
        ids, scores = top_k(ids, scores, limit)  # the index's scans' order, ties too
        return [(int(i), float(s)) for i, s in zip(ids, scores, strict=True)]

    # -- the refresher -------------------------------------------------------------

    def _run(self) -> None:
        db: CatalogDatabase | None = None
        wait = 0.0
        try:
            while not self._stop.wait(wait):
                if db is None:
                    try:
                        db = self._database()
                    except Exception:  # an unreachable server: try again later
                        log.warning("vector cache cannot open the catalog; searches "
                                    "read it directly meanwhile", exc_info=True)
                        wait = _MIN_REFRESH
                        continue
                started = time.monotonic()
                try:
                    self._refresh(db)
                except Exception:  # a busy or damaged catalog must not kill the server
                    log.warning("vector cache refresh failed; searches read SQLite",
                                exc_info=True)
                wait = max(_MIN_REFRESH, _COST_FACTOR * (time.monotonic() - started))
        finally:
            if db is not None:
                db.close()

    def _refresh(self, db: CatalogDatabase) -> None:
        conn = db.conn
        signature = (
            *conn.execute("SELECT count(*), coalesce(max(id), 0) FROM chunks").fetchone(),
            conn.execute("SELECT count(*) FROM embeddings WHERE model = ?",
                         (self._model,)).fetchone()[0])
        if signature == self._signature:
            return
        rows = conn.execute(
            "SELECT count(*) FROM chunks c JOIN embeddings e ON e.model = ? "
            "AND e.text_hash = c.text_hash", (self._model,)).fetchone()[0]
        needed = rows * (self._dim * 4 + 12)
        if needed > self._max_bytes:
            if not self._too_big:
                log.info("vector cache off: %d vectors need %d MB, over vector_cache_mb",
                         rows, needed // 2**20)
            self._too_big, self._matrix, self._signature = True, None, signature
            return
        ids = np.empty(rows, dtype=np.int64)
        codes = np.empty(rows, dtype=np.int32)
        vectors = np.empty((rows, self._dim), dtype=np.float32)
        names: dict[str, int] = {}
        cursor = conn.execute(
            "SELECT c.id, c.collection, e.vector FROM chunks c JOIN embeddings e "
            "ON e.model = ? AND e.text_hash = c.text_hash", (self._model,))
        n = 0
        # Rows committed between the count and this read are left for the next refresh.
        while n < rows and (block := cursor.fetchmany(min(20_000, rows - n))):
            end = n + len(block)
            ids[n:end] = [row[0] for row in block]
            codes[n:end] = [names.setdefault(row[1], len(names)) for row in block]
            vectors[n:end] = np.frombuffer(b"".join(row[2] for row in block),
                                           dtype=np.float32).reshape(len(block), self._dim)
            n = end
        self._matrix = _Matrix(ids[:n], codes[:n], tuple(names), vectors[:n])
        self._too_big, self._signature = False, signature
