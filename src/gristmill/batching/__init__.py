"""Batched writes: many small writes become few transactions.

:class:`BatchWriter` is the library API. ``writer.insert("events", row)`` puts a row on
that table's queue and returns a :class:`Ticket`. Background flushers write a table's
queue ``max_rows`` rows at a time, or once its oldest row has waited ``max_delay``
seconds, in one transaction: on PostgreSQL with ``COPY ... FROM STDIN`` over at most
``pool_size`` connections, on SQLite with one writer (``BEGIN IMMEDIATE`` +
``executemany``). At most ``max_queue`` rows wait at once; beyond that ``insert`` blocks
(backpressure). :class:`Batcher` is the synchronous core the runner drives from its own
thread, handing buffered operations to a ``write`` callable.

Both share one failure policy. A busy or unreachable database is retried 8 times with
jittered backoff (about 6 s in all; on SQLite each attempt also waits up to 5 s for the
lock). A batch the database rejects is bisected until each bad row
is alone: bad rows go to the dead-letter table (``BatchWriter``) or to ``on_dead``
(``Batcher``), every other row commits.

What an acknowledgement means
-----------------------------
``insert`` returning means the row is queued in this process's memory, nothing more:

- The row is **durable once its ticket completes without error** (``ticket.result()``
  returns, or its done-callback runs). A ticket completes only after the COMMIT of the
  transaction holding its row has returned: on PostgreSQL (``synchronous_commit`` on, its
  default) the commit is in the write-ahead log on disk; on SQLite the writer uses
  ``synchronous=FULL``. A completed row survives ``kill -9`` of this process.
- **Until then the row exists only in memory.** ``kill -9``, an OOM kill, a crash of the
  interpreter, ``os._exit`` or a power cut lose every row whose ticket has not completed.
  Keep the source of truth elsewhere until the ticket completes if that matters.
- A **clean shutdown flushes**: ``close()``, leaving a ``with`` block, the normal end of
  the interpreter (``atexit``), and SIGTERM or SIGINT, whose handlers flush (for at most
  ``SHUTDOWN_FLUSH_SECONDS``) and then hand over to the handler that was there before.
- A ticket can also complete with an error: :class:`DeadLettered` (the database rejected
  this row; it is in the dead-letter table with the error, and the rest of its batch
  committed) or :class:`~gristmill.errors.StoreBusy` (the database stayed unreachable
  through the retries; the row is in neither table: insert it again).
- A row is committed at most once, with one exception no client can rule out: if the
  connection breaks while COMMIT itself is in flight, the retry may write the batch a
  second time. Give the table a unique key if duplicates must be impossible.

Order: rows of one batch are written in the order they were enqueued, but on PostgreSQL
up to ``pool_size`` batches commit at once, so a later batch of a table can become
visible before an earlier one; ``pool_size=1`` keeps commits in enqueue order. Values
are adapted by the driver (psycopg, sqlite3): wrap a dict meant for a ``jsonb`` column
in ``psycopg.types.json.Jsonb``.
"""

from __future__ import annotations

from gristmill.batching.batcher import Batcher, BatcherStats
from gristmill.batching.metrics import register_metrics
from gristmill.batching.tickets import Ticket
from gristmill.batching.writer import (
    SHUTDOWN_FLUSH_SECONDS,
    BatchWriter,
    DeadLettered,
    QueueFull,
    WriterClosed,
)

__all__ = [
    "SHUTDOWN_FLUSH_SECONDS",
    "BatchWriter",
    "Batcher",
    "BatcherStats",
    "DeadLettered",
    "QueueFull",
    "Ticket",
    "WriterClosed",
    "register_metrics",
]
