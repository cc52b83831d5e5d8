"""Which items' originals belong in the store of originals, read in keyset pages.

A worker keeps a top-level item's original once its bytes were read (see
``runtime/worker.py``, ``_keeps``): extracted or indexed, failed (a later gristmill may
read it), or skipped for holding no text; not one skipped as unsupported, too large,
outside the source roots or not a regular file, whose bytes were never read or hold
nothing gristmill reads. :func:`kept_originals` selects the same items, so that
``gristmill store push`` fills a store set after the items were ingested (or copied
from a twin, which no worker read) with exactly what an ingest would have put there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gristmill.catalog.backend import CatalogDatabase
from gristmill.catalog.item import ErrorType, Status

__all__ = ["NOT_KEPT", "KeptOriginal", "kept_originals", "other_holders"]

#: Error types of skipped items whose originals are not kept (the worker's list).
NOT_KEPT = frozenset({ErrorType.TOO_LARGE.value, ErrorType.UNSUPPORTED.value,
                      ErrorType.OUTSIDE_ROOTS.value, ErrorType.NOT_A_REGULAR_FILE.value})

_READ = (Status.EXTRACTED.value, Status.INDEXED.value, Status.FAILED.value)


@dataclass(frozen=True, slots=True)
class KeptOriginal:
    """A top-level item whose original the store keeps, as discovery recorded it."""

    id: int
    collection: str
    source: str  # a path, or a URL (s3://..., gdrive://...)
    size: int | None
    sha256: str


def _kept(alias: str, collection: str | None) -> tuple[str, tuple[object, ...]]:
    """The condition (on table alias ``alias``) for an item whose original is kept."""
    read = ", ".join("?" * len(_READ))
    not_kept = ", ".join("?" * len(NOT_KEPT))
    where = (f"{alias}.parent_id IS NULL AND {alias}.sha256 IS NOT NULL AND "
             f"({alias}.status IN ({read}) OR ({alias}.status = ? AND "
             f"({alias}.error_type IS NULL OR {alias}.error_type NOT IN ({not_kept}))))")
    params: tuple[object, ...] = (*_READ, Status.SKIPPED.value, *sorted(NOT_KEPT))
    if collection is not None:
        where += f" AND {alias}.collection = ?"
        params += (collection,)
    return where, params


def kept_originals(db: CatalogDatabase, *, after: int, collection: str | None,
                   limit: int) -> list[KeptOriginal]:
    """Items whose originals are kept, ``id > after``, in id order (keyset pages: the
    caller holds one page, however many items there are); of items holding the same
    bytes, only the first (its sha256 is asked of the store once).

    ``collection``: only that collection's items.
    """
    outer, outer_params = _kept("i", collection)
    inner, inner_params = _kept("o", collection)
    # The first holder of each sha256 stands for all of them: the items_sha256 index
    # answers the NOT EXISTS per row, and no set of every hash seen is held here.
    rows = db.conn.execute(
        f"SELECT i.id, i.collection, i.source, i.size, i.sha256 FROM items i "
        f"WHERE i.id > ? AND {outer} AND NOT EXISTS (SELECT 1 FROM items o WHERE "
        f"o.sha256 = i.sha256 AND o.id < i.id AND {inner}) ORDER BY i.id LIMIT ?",
        (after, *outer_params, *inner_params, limit)).fetchall()
    return [_original(row) for row in rows]


def other_holders(db: CatalogDatabase, sha256: str, *, after: int,
                  collection: str | None, limit: int = 20) -> list[KeptOriginal]:
    """Other items whose originals are kept and hold ``sha256``, ``id > after``, in id
    order: where else the bytes may be read when the first holder's source is gone or
    has changed."""
    where, params = _kept("i", collection)
    rows = db.conn.execute(
        f"SELECT i.id, i.collection, i.source, i.size, i.sha256 FROM items i "
        f"WHERE i.sha256 = ? AND i.id > ? AND {where} ORDER BY i.id LIMIT ?",
        (sha256, after, *params, limit)).fetchall()
    return [_original(row) for row in rows]


def _original(row: Sequence[Any]) -> KeptOriginal:
    return KeptOriginal(int(row[0]), str(row[1]), str(row[2]),
                        None if row[3] is None else int(row[3]), str(row[4]))
