"""Scanned recordings and their sound events: the ``audio_recordings`` and
``audio_events`` tables.

A recording is an item of an audio scan's collection. It has one row per model
revision that scanned it (keyed by item and model, the model file's sha256): whose it
is, which detection settings (canonical JSON) found that model's events, which content
(the file's sha256) they were found in, and what its audio track is. Its events carry
the model that found them and the path of their clip file, if one was cut. Both go with
their item (``ON DELETE CASCADE``), so a recording whose file is gone loses its events
with it.

The runner writes a recording with :meth:`AudioStore.replace`, inside the transaction
that settles its item: the model's new row and events replace that model's old ones at
once, or not at all, and a re-run writes the same rows again (idempotent); other models'
revisions of the same content stay beside it, those of older content go. Clip files
are the caller's: ``replace`` returns the paths no event names any more, to delete once
committed.

Which revision a listing shows (:meth:`AudioStore.events`): the one of the model
configured now where the recording has it, else its most recent scan; or, asked for,
one model's.
"""

from __future__ import annotations

import functools
import string
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gristmill.audio.events import Event
from gristmill.catalog.backend import CatalogDatabase, Transaction
from gristmill.errors import ConfigError

__all__ = ["AudioStore", "ScannedRecording", "StoredEvent"]


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
    events: Sequence[Event] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event as ``gristmill audio events`` lists it: whose recording, which model
    revision found it, and the event itself."""

    user: str
    source: str
    model: str  # the sha256 of the model that found it
    event: Event

    @property
    def start(self) -> float:
        """Seconds from the recording's start."""
        return self.event.start

    @property
    def end(self) -> float:
        """Seconds from the recording's start."""
        return self.event.end

    @property
    def label(self) -> str:
        """The class's name."""
        return self.event.label

    @property
    def score(self) -> float:
        """The event's peak (smoothed) score."""
        return self.event.peak

    @property
    def clip(self) -> str | None:
        """The clip file, if one was cut."""
        return self.event.clip

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
        """Store ``recording`` as the item's revision by its model, beside the other
        models' revisions of the same content; revisions of other content (the file
        changed since) go. None: the recording is unreadable now, every revision goes.
        Returns the clip paths of the events gone that no remaining event names, for
        the caller to delete after the commit.

        Call it after the item's row has its new sha256 (the settle), in the same
        transaction: that sha256 says which revisions are of the same content.
        """
        row = txn.execute("SELECT sha256 FROM items WHERE id = ?", (item_id,)).fetchone()
        content = row[0] if row else None
        # The revisions that stay: other models' scans of these very bytes. Unknown
        # bytes (no sha256) prove nothing, so nothing stays then.
        kept = [] if recording is None or content is None else [
            str(model) for model, sha256 in txn.execute(
                "SELECT model, sha256 FROM audio_recordings WHERE item_id = ?", (item_id,))
            if sha256 == content and model != recording.model]
        others, others_params = ("", ()) if not kept else (
            f" AND model NOT IN ({','.join('?' * len(kept))})", tuple(kept))
        old = {str(r[0]) for r in txn.execute(
            f"SELECT clip FROM audio_events WHERE item_id = ? AND clip IS NOT NULL{others}",
            (item_id, *others_params))}
        txn.execute(f"DELETE FROM audio_events WHERE item_id = ?{others}",
                    (item_id, *others_params))
        txn.execute(f"DELETE FROM audio_recordings WHERE item_id = ?{others}",
                    (item_id, *others_params))
        if recording is not None:
            txn.execute(
                "INSERT INTO audio_recordings (item_id, model, sha256, user_name, settings, "
                "duration, sample_rate, channels, codec, compute_seconds, scanned_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (item_id, recording.model, content, recording.user, recording.settings,
                 recording.duration, recording.sample_rate, recording.channels,
                 recording.codec, recording.compute_seconds, time.time()))
            if recording.events:
                txn.executemany(
                    "INSERT INTO audio_events (item_id, model, label, class_index, start_s, "
                    "end_s, peak, mean, clip) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    [(item_id, recording.model, e.label, e.class_index, e.start, e.end,
                      e.peak, e.mean, e.clip) for e in recording.events])
        # A re-scan names the same clip files again (it wrote over them): those stay.
        named = {str(r[0]) for r in txn.execute(
            "SELECT clip FROM audio_events WHERE item_id = ? AND clip IS NOT NULL",
            (item_id,))}
        return sorted(old - named)

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
               modified_since_ns: int | None = None, current_model: str | None = None,
               model: str | None = None) -> list[StoredEvent]:
        """Every stored event (of one collection, one user, recordings whose file was
        modified since ``modified_since_ns``), by user, recording and time.

        One revision per recording: by default the one of ``current_model`` (the
        sha256 of the model configured now) where the recording has one, else its most
        recent scan; with ``model`` (a sha256 or its first characters), that model's,
        for the recordings it scanned.

        Raises:
            ConfigError: ``model`` is not hexadecimal, or names several models.
        """
        where, params = _filters(collection, user, modified_since_ns)
        revision, revision_params = (self._one_model(model) if model is not None
                                     else _latest_revision(current_model))
        rows = self.db.conn.execute(
            f"SELECT r.user_name, i.source, r.model, e.label, e.class_index, e.start_s, "
            f"e.end_s, e.peak, e.mean, e.clip FROM audio_events e "
            f"JOIN audio_recordings r ON r.item_id = e.item_id AND r.model = e.model "
            f"JOIN items i ON i.id = e.item_id WHERE {revision}{where} "
            f"ORDER BY r.user_name, i.source, e.start_s, e.class_index",
            (*revision_params, *params)).fetchall()
        return [StoredEvent(str(user_name), str(source), str(found_by), Event(
                    str(label), int(index), float(start), float(end), float(peak),
                    float(mean), clip))
                for (user_name, source, found_by, label, index, start, end, peak, mean,
                     clip) in rows]

    def clips(self, user: str) -> set[str]:
        """The clip files the events of ``user``'s recordings name (every collection,
        every model revision)."""
        return {str(row[0]) for row in self.db.conn.execute(
            "SELECT e.clip FROM audio_events e JOIN audio_recordings r "
            "ON r.item_id = e.item_id AND r.model = e.model "
            "WHERE r.user_name = ? AND e.clip IS NOT NULL", (user,))}

    def totals(self, *, collection: str | None = None, user: str | None = None,
               current_model: str | None = None) -> dict[str, float]:
        """``recordings``, ``events`` and ``audio_seconds`` stored (of one collection,
        one user), counted over the revisions :meth:`events` lists by default."""
        where, params = _filters(collection, user, None)
        revision, revision_params = _latest_revision(current_model)
        recordings, seconds = self.db.conn.execute(
            f"SELECT count(*), sum(coalesce(r.duration, 0)) FROM audio_recordings r "
            f"JOIN items i ON i.id = r.item_id WHERE {revision}{where}",
            (*revision_params, *params)).fetchone()
        events = self.db.conn.execute(
            f"SELECT count(*) FROM audio_events e JOIN audio_recordings r "
            f"ON r.item_id = e.item_id AND r.model = e.model "
            f"JOIN items i ON i.id = e.item_id WHERE {revision}{where}",
            (*revision_params, *params)).fetchone()[0]
        return {"recordings": int(recordings), "events": int(events),
                "audio_seconds": float(seconds or 0.0)}

    def _one_model(self, prefix: str) -> tuple[str, tuple[object, ...]]:
        """The revision clause for the one model whose sha256 starts with ``prefix``."""
        wanted = prefix.strip().lower()
        if not wanted or any(c not in string.hexdigits for c in wanted):
            raise ConfigError(f"--model {prefix!r} is not a model's sha256: give the first "
                              "characters of one (gristmill doctor prints the configured "
                              "model's)")
        models = [str(row[0]) for row in self.db.conn.execute(
            "SELECT DISTINCT model FROM audio_recordings WHERE model LIKE ? ORDER BY model",
            (wanted + "%",))]
        if len(models) > 1:
            raise ConfigError(f"--model {prefix!r} names {len(models)} models ("
                              + ", ".join(m[:12] for m in models)
                              + "): give more of its sha256")
        # No such model: a clause that lists nothing, as for a user with no events.
        return "r.model = ?", (models[0] if models else wanted,)


def _latest_revision(current_model: str | None) -> tuple[str, tuple[object, ...]]:
    """A WHERE clause keeping, of each recording ``r``, the revision of
    ``current_model`` if it has one, else the most recent (ties: by model, so the
    choice is the same every time)."""
    return ("r.model = (SELECT r2.model FROM audio_recordings r2 "
            "WHERE r2.item_id = r.item_id ORDER BY CASE WHEN r2.model = ? THEN 0 ELSE 1 "
            "END, r2.scanned_at DESC, r2.model LIMIT 1)", (current_model or "",))


def _filters(collection: str | None, user: str | None,
             modified_since_ns: int | None) -> tuple[str, tuple[object, ...]]:
    """AND clauses over ``i`` (items) and ``r`` (recordings), and their parameters."""
    clauses: list[str] = []
    params: list[object] = []
    for clause, value in (("i.collection = ?", collection), ("r.user_name = ?", user),
                          ("i.mtime_ns >= ?", modified_since_ns)):
        if value is not None:
            clauses.append(clause)
            params.append(value)
    return "".join(f" AND {clause}" for clause in clauses), tuple(params)
