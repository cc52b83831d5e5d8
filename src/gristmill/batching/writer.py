"""BatchWriter: per-table write-behind queues flushed by background threads."""

from __future__ import annotations

import atexit
import logging
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from types import FrameType
from typing import Any

from gristmill.batching.batcher import _percentile
from gristmill.batching.policy import _write_or_bisect, _write_with_backoff
from gristmill.batching.stores import Row, _describe_error, _open_store
from gristmill.batching.tickets import Ticket, _Batch
from gristmill.errors import ConfigError, StoreBusy, StoreError

log = logging.getLogger(__name__)

#: How long a flush on SIGTERM, SIGINT or at exit may take before the rest is given up.
SHUTDOWN_FLUSH_SECONDS = 30.0
_RATE_WINDOW = 10.0  # seconds of commits behind rows_per_second


# -- errors (sit under StoreError in the gristmill.errors tree) ------------------------


class QueueFull(StoreBusy):
    """``insert`` waited ``timeout`` seconds for room in the writer's queue."""

    http_status = 503  # the database is behind: ask again later


class DeadLettered(StoreError):
    """The database rejected this row; it is in the dead-letter table with the error."""

    http_status = 500

    def __init__(self, table: str, row: Row, error: BaseException, dead_letter_table: str):
        super().__init__(f"row rejected by {table}: {_describe_error(error)} "
                         f"(kept in {dead_letter_table})")
        self.table = table
        self.row = row
        self.error = error


class WriterClosed(StoreError):
    """``insert`` was called after ``close()``."""

    http_status = 500  # a bug in the caller, not the request's fault


# -- BatchWriter -----------------------------------------------------------------------


class BatchWriter:
    """Per-table write-behind queues flushed in batches; see :mod:`gristmill.batching`.

    Example::

        with BatchWriter("postgresql://localhost/app") as writer:
            ticket = writer.insert("events", {"id": 1, "kind": "saved"})
            ticket.result()  # durable from here on
    """

    def __init__(
        self,
        url_or_path: str | os.PathLike[str],
        *,
        max_rows: int = 500,
        max_delay: float = 1.0,
        max_queue: int = 10_000,
        pool_size: int = 3,
        dead_letter_table: str = "gristmill_dead_letters",
        handle_signals: bool = True,
        name: str = "default",
    ) -> None:
        """Open the store and start the flushers.

        Args:
            url_or_path: ``postgresql://...`` or the path of a SQLite file.
            max_rows: a table's queue is flushed when it holds this many rows...
            max_delay: ...or when its oldest row has waited this many seconds.
            max_queue: rows accepted but not yet finished, all tables together, beyond
                which ``insert`` blocks.
            pool_size: PostgreSQL connections (and flusher threads) at most; SQLite: 1.
            dead_letter_table: where rejected rows go, created when first needed.
            handle_signals: flush on SIGTERM and SIGINT (main thread only).
            name: the ``writer`` label of its metrics.
        """
        for setting, value, low in (("max_rows", max_rows, 1), ("max_queue", max_queue, 1),
                                    ("pool_size", pool_size, 1)):
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"{setting} must be an integer >= {low}, not {value!r}")
        if not max_delay > 0:
            raise ConfigError(f"max_delay must be > 0 seconds, not {max_delay!r}")
        self.name = name
        self.dead_letter_table = dead_letter_table
        self._max_rows = max_rows
        self._max_delay = max_delay
        self._max_queue = max_queue
        self._store = _open_store(url_or_path, pool_size, dead_letter_table)
        self.backend = self._store.backend
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # flushers: work is ready or due
        self._room = threading.Condition(self._lock)  # producers: the queue has room
        self._open: dict[str, _Batch] = {}  # each table's batch still taking rows
        self._ready: deque[_Batch] = deque()  # sealed, waiting for a flusher
        self._unfinished: set[_Batch] = set()
        self._queued = 0
        self._depth: dict[str, int] = {}
        self._closed = self._stopping = False
        self._started = time.monotonic()
        self._flushes = self._rows = self._dead = self._failed = 0
        self._flush_sizes: deque[int] = deque(maxlen=1000)
        self._flush_seconds: deque[float] = deque(maxlen=1000)
        self._latencies: deque[float] = deque(maxlen=10_000)
        self._recent: deque[tuple[float, int]] = deque()
        # A signal handler runs on the main thread between two bytecodes, possibly while
        # that thread holds self._lock: it then only notes the signal (_deferred) and the
        # main thread acts on it when it leaves the lock (see _Guard).
        self._main_ident = threading.main_thread().ident
        self._main_inside = 0
        self._deferred: list[tuple[int, FrameType | None]] = []
        self._in_signal_flush = False
        self._previous: dict[int, Any] = {}
        self._threads = [threading.Thread(target=self._run_flusher, daemon=True,
                                          name=f"gristmill-writer-{name}-{i}")
                         for i in range(self._store.writers)]
        for thread in self._threads:
            thread.start()
        atexit.register(self._close_at_exit)
        if handle_signals:
            self._install_signal_handlers()

    # -- producing -----------------------------------------------------------------

    def insert(self, table: str, row: Mapping[str, Any], *,
               timeout: float | None = None) -> Ticket:
        """Queue ``row`` (column -> value, copied) for ``table``; blocks while the queue is full.

        Raises:
            QueueFull: no room within ``timeout`` seconds (None: wait as long as it takes).
            WriterClosed: after :meth:`close`.
        """
        record = dict(row)
        with _Guard(self):
            return self._enqueue(table, record, timeout)

    def insert_many(self, table: str, rows: Iterable[Mapping[str, Any]], *,
                    timeout: float | None = None) -> list[Ticket]:
        """Queue several rows for ``table``; ``timeout`` applies to each wait for room."""
        records = [dict(row) for row in rows]
        if not all(records):
            raise ValueError("a row needs at least one column")
        tickets: list[Ticket] = []
        for start in range(0, len(records), self._max_rows):
            # A batch's worth at a time, so the flushers get the lock in between.
            with _Guard(self):
                tickets.extend(self._enqueue(table, record, timeout)
                               for record in records[start:start + self._max_rows])
        return tickets

    def _enqueue(self, table: str, record: Row, timeout: float | None) -> Ticket:
        if not record:
            raise ValueError("a row needs at least one column")
        if self._closed:
            raise WriterClosed(f"batch writer {self.name!r} is closed")
        if self._queued >= self._max_queue:
            self._wait_for_room(timeout)
        now = time.monotonic()
        batch = self._open.get(table)
        if batch is None:
            batch = self._open[table] = _Batch(table, now)
            self._unfinished.add(batch)
            self._wake.notify()  # a flusher starts the max_delay clock of this batch
        batch.rows.append(record)
        batch.times.append(now)
        self._queued += 1
        self._depth[table] = self._depth.get(table, 0) + 1
        ticket = Ticket(batch, len(batch.rows) - 1)
        if len(batch.rows) >= self._max_rows:
            self._seal(table)
        return ticket

    def _wait_for_room(self, timeout: float | None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._queued >= self._max_queue:
            if self._closed:
                raise WriterClosed(f"batch writer {self.name!r} is closed")
            if self._queued == sum(len(b.rows) for b in self._open.values()):
                # Every waiting row sits in a batch still taking rows: seal them, or the
                # producers would wait max_delay for nothing.
                for table in list(self._open):
                    self._seal(table)
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise QueueFull(f"batch writer {self.name!r}: {self._queued} rows waiting "
                                f"(max_queue) for {timeout} s; the database is behind")
            main = threading.get_ident() == self._main_ident
            if main:
                self._main_inside -= 1  # the lock is free while waiting: signals may act
            try:
                self._room.wait(remaining)
            finally:
                if main:
                    self._main_inside += 1

    def _seal(self, table: str) -> None:
        self._ready.append(self._open.pop(table))
        self._wake.notify()

    # -- flushing ------------------------------------------------------------------

    def flush(self, timeout: float | None = None) -> bool:
        """Write everything enqueued so far; False if ``timeout`` passed first."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("flush() from a done-callback would wait for itself")
        with _Guard(self):
            for table in list(self._open):
                self._seal(table)
            waiting = list(self._unfinished)
        deadline = None if timeout is None else time.monotonic() + timeout
        for batch in waiting:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not batch.done.wait(remaining):
                return False
        return True

    def close(self, timeout: float | None = None) -> bool:
        """Flush, stop the flushers and close the connections; False if ``timeout`` passed."""
        if threading.current_thread() in self._threads:
            raise RuntimeError("close() from a done-callback would wait for itself")
        with _Guard(self):
            if self._stopping:
                return not any(t.is_alive() for t in self._threads)
            self._closed = self._stopping = True
            self._wake.notify_all()
            self._room.notify_all()
        deadline = None if timeout is None else time.monotonic() + timeout
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        left = self._queued
        if left:
            log.error("batch writer %r closed with %d rows not written", self.name, left)
        else:
            self._store.close()
        atexit.unregister(self._close_at_exit)
        self._restore_signal_handlers()
        return not left

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _run_flusher(self) -> None:
        while (batch := self._next_batch()) is not None:
            try:
                self._flush(batch)
            except Exception as exc:  # a bug here must not leave tickets hanging forever
                log.exception("batch writer %r: flush failed", self.name)
                if not batch.done.is_set():
                    self._finish(batch, dict.fromkeys(range(len(batch.rows)), exc), 0, 0.0)

    def _next_batch(self) -> _Batch | None:
        with self._lock:
            while True:
                if self._ready:
                    return self._ready.popleft()
                now, deadline = time.monotonic(), None
                for table, batch in list(self._open.items()):
                    due = batch.first + self._max_delay
                    if due <= now or self._stopping:
                        self._seal(table)
                    elif deadline is None or due < deadline:
                        deadline = due
                if self._ready:
                    continue
                if self._stopping:
                    return None
                self._wake.wait(None if deadline is None else deadline - now)

    def _flush(self, batch: _Batch) -> None:
        started = time.monotonic()
        ops = list(enumerate(batch.rows))
        committed: list[Sequence[tuple[int, Row]]] = []
        dead: list[tuple[tuple[int, Row], Exception]] = []

        def write(part: Sequence[tuple[int, Row]], *, bulk: bool) -> None:
            self._store.write(batch.table, [row for _, row in part], bulk=bulk)
            committed.append(part)  # after COMMIT returned: these rows are durable

        errors: dict[int, BaseException] = {}
        try:
            _write_or_bisect(partial(write, bulk=True), ops,
                             lambda op, exc: dead.append((op, exc)),
                             split_write=partial(write, bulk=False))
        except StoreBusy as exc:
            settled = {i for part in committed for i, _ in part} | {i for (i, _), _ in dead}
            errors = {i: exc for i, _ in ops if i not in settled}
            log.error("batch writer %r: %d rows for %s not written: %s", self.name,
                      len(errors), batch.table, exc)
        dead_count = 0
        if dead:
            dead_errors = self._dead_letter(batch.table, dead)
            dead_count = sum(isinstance(e, DeadLettered) for e in dead_errors.values())
            errors.update(dead_errors)
        self._finish(batch, errors, dead_count, time.monotonic() - started)

    def _dead_letter(self, table: str, dead: list[tuple[tuple[int, Row], Exception]]
                     ) -> dict[int, BaseException]:
        records = [(table, row, exc) for (_, row), exc in dead]
        log.warning("batch writer %r: %d rows rejected by %s, sent to %s; first: %s",
                    self.name, len(dead), table, self.dead_letter_table,
                    _describe_error(dead[0][1]))
        try:
            # Their own transaction: the good rows of the batch are already committed.
            _write_with_backoff(self._store.write_dead, records)
        except Exception as exc:
            log.error("batch writer %r: could not write %d rows to %s: %s", self.name,
                      len(dead), self.dead_letter_table, exc)
            return {i: StoreError(f"row rejected ({_describe_error(error)}) and not saved "
                                  f"to {self.dead_letter_table}: {_describe_error(exc)}")
                    for (i, _), error in dead}
        return {i: DeadLettered(table, row, error, self.dead_letter_table)
                for (i, row), error in dead}

    def _finish(self, batch: _Batch, errors: dict[int, BaseException], dead: int,
                took: float) -> None:
        now = time.monotonic()
        n = len(batch.rows)
        with self._lock:
            committed = n - len(errors)
            self._queued -= n
            left = self._depth[batch.table] - n
            if left:
                self._depth[batch.table] = left
            else:
                del self._depth[batch.table]
            self._unfinished.discard(batch)
            self._flushes += 1
            self._rows += committed
            self._dead += dead
            self._failed += len(errors) - dead
            self._flush_sizes.append(n)
            self._flush_seconds.append(took)
            self._latencies.extend(now - t for t in batch.times)
            self._recent.append((now, committed))
            while self._recent and self._recent[0][0] < now - _RATE_WINDOW:
                self._recent.popleft()
            self._room.notify_all()
        batch.finish(errors)

    # -- figures -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """A JSON-ready snapshot: queue depth per table, flushes, rows, latencies, rate.

        ``flushes``, ``rows``, ``dead``, ``flush_p50/p99`` and ``latency_p50/p99`` mean
        what they mean in :meth:`BatcherStats.summary`, except that the latencies here are
        per row (enqueue to durable commit, last 10,000 rows), not per flush.
        """
        with _Guard(self):
            now = time.monotonic()
            window = min(_RATE_WINDOW, max(now - self._started, 1e-9))
            recent = sum(rows for at, rows in self._recent if at >= now - _RATE_WINDOW)
            return {
                "name": self.name, "backend": self.backend,
                "queued": self._queued, "queue_depth": dict(self._depth),
                "max_queue": self._max_queue,
                "flushes": self._flushes, "rows": self._rows, "dead": self._dead,
                "failed": self._failed,
                "flush_rows_p50": _percentile(self._flush_sizes, 50),
                "flush_rows_p99": _percentile(self._flush_sizes, 99),
                "flush_p50": _percentile(self._flush_seconds, 50),
                "flush_p99": _percentile(self._flush_seconds, 99),
                "latency_p50": _percentile(self._latencies, 50),
                "latency_p99": _percentile(self._latencies, 99),
                "rows_per_second": round(recent / window, 1),
            }

    # -- shutdown ------------------------------------------------------------------

    def _close_at_exit(self) -> None:
        self.close(timeout=SHUTDOWN_FLUSH_SECONDS)

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python lets only the main thread set handlers; atexit still flushes
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)

    def _restore_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig, previous in self._previous.items():
            # Only if nobody installed a handler over ours since; if someone did, ours
            # stays in their chain and just hands over (a closed writer has nothing).
            if signal.getsignal(sig) == self._on_signal:
                signal.signal(sig, previous)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._main_inside:
            self._deferred.append((signum, frame))  # acted on when the lock is released
            return
        self._handle_signal(signum, frame)

    def _handle_signal(self, signum: int, frame: FrameType | None) -> None:
        if not self._in_signal_flush:  # a second Ctrl-C skips the flush
            self._in_signal_flush = True
            try:
                log.warning("batch writer %r: %s, flushing %d rows", self.name,
                            signal.Signals(signum).name, self._queued)
                self.flush(timeout=SHUTDOWN_FLUSH_SECONDS)
            except Exception:
                log.exception("batch writer %r: flush on signal failed", self.name)
            finally:
                self._in_signal_flush = False
        previous = self._previous.get(signum, signal.SIG_DFL)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            # The default action (terminate): re-deliver the signal with it in place.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


class _Guard:
    """``with self._lock``, noting when the main thread holds it (see ``_on_signal``)."""

    __slots__ = ("_main", "_writer")

    def __init__(self, writer: BatchWriter) -> None:
        self._writer = writer
        self._main = threading.get_ident() == writer._main_ident

    def __enter__(self) -> None:
        if self._main:
            self._writer._main_inside += 1
        self._writer._lock.acquire()

    def __exit__(self, *_exc: object) -> None:
        writer = self._writer
        writer._lock.release()
        if self._main:
            writer._main_inside -= 1
            while writer._deferred and not writer._main_inside:
                writer._handle_signal(*writer._deferred.pop(0))

