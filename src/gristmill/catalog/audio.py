"""Scanned recordings and their sound events: the ``audio_recordings`` and
``audio_events`` tables.

A recording is an item of an audio scan's collection. Its row says whose it is, which
model (the file's sha256) and which detection settings (canonical JSON) found its
events, and what its audio track is; its events carry the model that found them and
the path of their clip file, if one was cut. Both go with their item (``ON DELETE
CASCADE``), so a recording whose file is gone loses its events with it.

The runner writes a recording with :meth:`AudioStore.replace`, inside the transaction
that settles its item: the new row and events replace the old ones at once, or not at
all, and a re-run writes the same rows again (idempotent). Clip files are the caller's:
``replace`` returns the paths no event names any more, to delete once committed.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gristmill.catalog.backend import CatalogDatabase, Transaction

__all__ = ["AudioStore", "EventRow", "ScannedRecording", "StoredEvent"]


@dataclass(frozen=True, slots=True)
class EventRow:
    """One sound event of a recording, as stored (times in seconds from its start)."""

    label: str
    class_index: int
    start: float
    end: float
    peak: float
    mean: float
    clip: str | None = None


@dataclass(frozen=True, slots=True)
class ScannedRecording:
    """What a scan of one recording found, to store with its item."""

    user: str
    model: str  # the model file's sha256
    settings: str  # the detection settings, canonical JSON (see AudioOptions.settings_key)
    duration: float | None = None
    sample_rate: int | None = None
    channels: int | None = None
    codec: str | None = None
    compute_seconds: float | None = None
    events: Sequence[EventRow] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as ``gristmill audio events`` lists it."""

    user: str
    source: str
    start: float
    end: float
    label: str
    score: float  # the event's peak (smoothed) score
    clip: str | None
    mean: float
    class_index: int

    def to_dict(self) -> dict[str, Any]:
        """The CLI's and the API's shape: ``{user, source, start, end, label, score,
        clip}``."""
        return {"user": self.user, "source": self.source, "start": round(self.start, 3),
                "end": round(self.end, 3), "label": self.label,
                "score": round(self.score, 4), "clip": self.clip}


class AudioStore:
    """The recordings and events of audio scans, on SQLite or PostgreSQL."""

    def __init__(self, db: CatalogDatabase) -> None:
        self.db = db

    @staticmethod
    def replace(txn: Transaction, item_id: int, recording: ScannedRecording | None
                ) -> list[str]:
        """Make ``recording`` the item's one scan (None: it has none any more, being
        unreadable now); returns the clip paths of its former events that no new event
        names, for the caller to delete after the commit."""
        old = {row[0] for row in txn.execute(
            "SELECT clip FROM audio_events WHERE item_id = ? AND clip IS NOT NULL",
            (item_id,))}
        # Every model's events go: a recording has one scan, the one its row describes.
        txn.execute("DELETE FROM audio_events WHERE item_id = ?", (item_id,))
        txn.execute("DELETE FROM audio_recordings WHERE item_id = ?", (item_id,))
        if recording is None:
            return sorted(old)
        txn.execute(
            "INSERT INTO audio_recordings (item_id, user_name, model, settings, duration, "
            "sample_rate, channels, codec, compute_seconds, scanned_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (item_id, recording.user, recording.model, recording.settings,
             recording.duration, recording.sample_rate, recording.channels, recording.codec,
             recording.compute_seconds, time.time()))
        if recording.events:
            txn.executemany(
                "INSERT INTO audio_events (item_id, model, label, class_index, start_s, "
                "end_s, peak, mean, clip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(item_id, recording.model, e.label, e.class_index, e.start, e.end, e.peak,
                  e.mean, e.clip) for e in recording.events])
        return sorted(old - {e.clip for e in recording.events if e.clip})

    def requeue_rescans(self, collection: str, roots: Sequence[str], user: str, model: str,
                        settings: str, *, modified_since_ns: int | None = None) -> int:
        """Send back to ``pending`` the finished recordings under ``roots`` that were not
        scanned for ``user`` with this model and these settings (the model file or a
        detection setting changed since): discovery then finds them unchanged and the
        run scans them again. With ``modified_since_ns``, only files modified since
        then (those the run looks at). Returns how many."""
        marks = ",".join("?" * len(roots))
        since, since_params = ("", ()) if modified_since_ns is None else (
            " AND mtime_ns >= ?", (modified_since_ns,))
        ids = [row[0] for row in self.db.conn.execute(
            f"SELECT id FROM items WHERE collection = ? AND root IN ({marks}) "
            f"AND parent_id IS NULL AND status IN ('extracted', 'indexed'){since} "
            f"AND NOT EXISTS (SELECT 1 FROM audio_recordings r WHERE r.item_id = items.id "
            f"AND r.user_name = ? AND r.model = ? AND r.settings = ?)",
            (collection, *roots, *since_params, user, model, settings))]

        def requeue(txn: Transaction, part: list[int]) -> None:
            # Only while still finished: a run may have claimed one meanwhile.
            txn.execute(
                f"UPDATE items SET status = 'pending', attempts = 0, crashes = 0, "
                f"not_before = NULL, error = NULL, error_type = NULL, updated_at = ? "
                f"WHERE id IN ({','.join('?' * len(part))}) "
                f"AND status IN ('extracted', 'indexed')", (time.time(), *part))

        for start in range(0, len(ids), 500):
            self.db.transact(functools.partial(requeue, part=ids[start:start + 500]))
        return len(ids)

    def events(self, *, collection: str | None = None, user: str | None = None,
               modified_since_ns: int | None = None) -> list[StoredEvent]:
        """Every stored event (of one collection, one user, recordings whose file was
        modified since ``modified_since_ns``), by user, recording and time."""
        where, params = _filters(collection, user, modified_since_ns)
        rows = self.db.conn.execute(
            f"SELECT r.user_name, i.source, e.start_s, e.end_s, e.label, e.peak, e.clip, "
            f"e.mean, e.class_index FROM audio_events e "
            f"JOIN audio_recordings r ON r.item_id = e.item_id AND r.model = e.model "
            f"JOIN items i ON i.id = e.item_id{where} "
            f"ORDER BY r.user_name, i.source, e.start_s, e.class_index", params).fetchall()
        return [StoredEvent(str(user_name), str(source), float(start), float(end),
                            str(label), float(peak), clip, float(mean), int(index))
                for user_name, source, start, end, label, peak, clip, mean, index in rows]

    def clips(self, user: str) -> set[str]:
        """The clip files the events of ``user``'s recordings name (every collection)."""
        return {str(row[0]) for row in self.db.conn.execute(
            "SELECT e.clip FROM audio_events e JOIN audio_recordings r "
            "ON r.item_id = e.item_id WHERE r.user_name = ? AND e.clip IS NOT NULL",
            (user,))}

    def totals(self, *, collection: str | None = None, user: str | None = None
               ) -> dict[str, float]:
        """``recordings``, ``events`` and ``audio_seconds`` stored (of one collection,
        one user)."""
        where, params = _filters(collection, user, None)
        recordings, seconds = self.db.conn.execute(
            f"SELECT count(*), sum(coalesce(r.duration, 0)) FROM audio_recordings r "
            f"JOIN items i ON i.id = r.item_id{where}", params).fetchone()
        events = self.db.conn.execute(
            f"SELECT count(*) FROM audio_events e JOIN audio_recordings r "
            f"ON r.item_id = e.item_id AND r.model = e.model "
            f"JOIN items i ON i.id = e.item_id{where}", params).fetchone()[0]
        return {"recordings": int(recordings), "events": int(events),
                "audio_seconds": float(seconds or 0.0)}


def _filters(collection: str | None, user: str | None,
             modified_since_ns: int | None) -> tuple[str, tuple[object, ...]]:
    """A WHERE clause over ``i`` (items) and ``r`` (recordings), and its parameters."""
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (("i.collection = ?", collection), ("r.user_name = ?", user),
                          ("i.mtime_ns >= ?", modified_since_ns)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)
