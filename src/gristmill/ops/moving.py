"""Moving a knowledge base: :func:`export_archive`, :func:`import_archive` and
:func:`migrate_catalog`, the library calls behind ``gristmill export``, ``import`` and
``migrate``.

An export reads one snapshot (:class:`~gristmill.catalog.transfer.CatalogSnapshot`) into an
archive (:mod:`gristmill.ops.archive`); an import reads the archive, every member checked
as it streams, into staging, then publishes it in one transaction
(:class:`~gristmill.catalog.transfer.Staging`); a migration does both at once, from the
snapshot straight into the target's staging. Imports and migrations resume after a
kill: what was staged and checked is kept, the rest is staged again, and nothing is
visible before the publish.
"""

from __future__ import annotations

import datetime
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gristmill.catalog.backend import CatalogDatabase, open_database
from gristmill.catalog.integrity import verify_database
from gristmill.catalog.migrations import postgres as pg_migrations
from gristmill.catalog.migrations.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from gristmill.catalog.transfer import (
    CatalogSnapshot,
    Staging,
    live_columns,
    row_counts,
    source_identity,
)
from gristmill.config import Settings
from gristmill.errors import ConfigError
from gristmill.home import make_home, require_knowledge_base
from gristmill.ops.archive import (
    ArchiveProblem,
    ArchiveReader,
    ArchiveRefused,
    ArchiveWriter,
    Column,
)

__all__ = ["MoveReport", "export_archive", "import_archive", "migrate_catalog",
           "scrub_secrets"]

Progress = Callable[[str], None]
T = TypeVar("T")

_CLIPS = "files/clips/"
_SETTINGS_FILES = {"config/gristmill.toml": "gristmill.toml", "config/env": ".env"}
_UPGRADE = "upgrade with pip install -U gristmill"
# Setting names whose values are credentials: left out of an export unless asked.
# ``token`` as a word of the name (api_token, github_token_file), not ``tokens`` (counts:
# chunk_tokens, embed_batch_tokens).
_SECRET = re.compile(r"(^|_)(database_url|token)($|_)|(^|_)key$|password|passwd|secret",
                     re.IGNORECASE)
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*=")


def _version() -> str:
    from gristmill import __version__

    return __version__


@dataclass(slots=True)
class MoveReport:
    """What an export, import or migration did."""

    #: ``export``, ``import`` or ``migrate``.
    action: str
    #: The archive written or read (export, import), or None (migrate).
    archive: str | None = None
    #: Where the copy went (import, migrate): the home folder or the database.
    target: str | None = None
    #: Rows per table: written (export) or added (import, migrate).
    tables: dict[str, int] = field(default_factory=dict)
    members: int = 0
    bytes: int = 0
    seconds: float = 0.0
    #: Tables found already staged by an interrupted run, not read again.
    resumed: list[str] = field(default_factory=list)
    #: Import with ``merge``: items the target had with the same content (kept).
    same_items: int = 0
    #: Import with ``merge``: items the target had with other content (target's kept).
    conflicts: list[str] = field(default_factory=list)
    #: Rows of the copy not added, per table (merge: items the target had, and theirs).
    skipped: dict[str, int] = field(default_factory=dict)
    #: Count checks after the copy that failed; empty when the copy is whole.
    mismatches: list[str] = field(default_factory=list)
    #: What the user should know (secrets included, jobs that were running...).
    notes: list[str] = field(default_factory=list)
    #: Nothing was done: this very copy had been published before.
    already_done: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return asdict(self)


# -- export ------------------------------------------------------------------------

_PROGRESS_EVERY = 5.0  # seconds between progress lines within one big table


def _counting(rows: Iterable[T], table: str, say: Progress) -> Iterator[T]:
    """``rows``, saying every few seconds how many have gone by (a big table takes
    minutes; a table's own line comes when it is done)."""
    next_line = time.monotonic() + _PROGRESS_EVERY
    for count, row in enumerate(rows, start=1):
        yield row
        if count % 1000 == 0 and time.monotonic() >= next_line:
            say(f"{table}: {count:,} rows so far")
            next_line = time.monotonic() + _PROGRESS_EVERY


def _open_snapshot(settings: Settings) -> CatalogSnapshot:
    require_knowledge_base(settings)
    if settings.database_url is not None:
        return CatalogSnapshot(url=settings.database_url.get_secret_value())
    return CatalogSnapshot(path=settings.database_path)


def _source_name(settings: Settings) -> str:
    if settings.database_url is None:
        return str(settings.database_path.absolute())
    from gristmill.catalog.postgres import display_url

    return display_url(settings.database_url.get_secret_value())


def export_archive(settings: Settings, archive: Path, *, collection: str | None = None,
                   include_secrets: bool = False, progress: Progress | None = None
                   ) -> MoveReport:
    """Write the knowledge base ``settings`` name (``collection`` only, when given) to
    ``archive``, from one consistent snapshot; jobs may be running meanwhile.

    Raises:
        NoKnowledgeBase: there is nothing to export.
        StoreError: the catalog cannot be read.
    """
    say = progress or (lambda _: None)
    started = time.monotonic()
    report = MoveReport("export", archive=str(archive))
    archive.parent.mkdir(parents=True, exist_ok=True)
    home = settings.home.absolute()
    with _open_snapshot(settings) as snapshot, ArchiveWriter(archive) as writer:
        if collection is not None and snapshot.count("items", collection) == 0:
            raise ConfigError(f"no collection {collection!r} in {_source_name(settings)}: "
                              "`gristmill status` lists the collections")
        for spec in snapshot.tables:
            rows = writer.add_table(spec.name, spec.columns,
                                    _counting(snapshot.rows(spec, collection), spec.name, say))
            report.tables[spec.name] = rows
            say(f"{spec.name}: {rows:,} rows")
        clips, missing = _add_clips(writer, snapshot.clips(collection), home)
        if clips:
            say(f"clips: {clips:,} files")
        if missing:
            report.notes.append(f"{missing} clip files named by events are missing and "
                                "were not exported")
        _add_settings_files(writer, home, include_secrets, report)
        running = snapshot.running_jobs()
        manifest = writer.finish({
            "gristmill": _version(),
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "source": {"backend": snapshot.backend, "schema_version": snapshot.schema_version,
                       "home": str(home)},
            "collection": collection,
            "secrets_included": include_secrets,
            "models": _with_sha256(snapshot.models(collection)),
            "audio_models": snapshot.audio_models(collection),
            "jobs_running": running,
        })
    if running:
        report.notes.append(f"{running} jobs were running: what they write after the "
                            "snapshot is not in the archive (run the same ingest again "
                            "after the import to catch up)")
    report.members = len(manifest["members"]) + 1
    report.bytes = archive.stat().st_size
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _with_sha256(models: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each embedding model with the sha256 of its file where gristmill pins one (the
    bundled MiniLM); remote models are known by name only (null)."""
    from gristmill.embed.minilm import MODEL_ID, MODEL_SHA256

    return [{**m, "sha256": MODEL_SHA256 if m["model"] == MODEL_ID else None}
            for m in models]


def _add_clips(writer: ArchiveWriter, clips: Iterator[str], home: Path) -> tuple[int, int]:
    """Add the clip files under ``home/clips``; (added, missing)."""
    root = home / "clips"
    added = missing = 0
    for clip in clips:
        path = Path(clip)
        if not path.is_relative_to(root):
            continue  # cut into a folder of the user's own: not the home's to move
        if not path.is_file():
            missing += 1
            continue
        writer.add_file(_CLIPS + path.relative_to(root).as_posix(), path)
        added += 1
    return added, missing


def scrub_secrets(text: str) -> tuple[str, list[str]]:
    """``text`` (a ``gristmill.toml`` or an env file) without the lines setting a
    credential (``database_url``, ``api_token``, any ``*_key``, ``*_token*``,
    ``*password*``, ``*secret*``), each replaced by a comment; the names removed."""
    kept, removed = [], []
    for line in text.splitlines(keepends=True):
        match = _ASSIGNMENT.match(line)
        name = match.group(1) if match else None
        bare = name.lower().removeprefix("gristmill_") if name else None
        if name and bare and _SECRET.search(bare):
            removed.append(name)
            kept.append(f"# {name} removed by gristmill export (a secret): set it again\n")
        else:
            kept.append(line)
    return "".join(kept), removed


def _add_settings_files(writer: ArchiveWriter, home: Path, include_secrets: bool,
                        report: MoveReport) -> None:
    for member, name in _SETTINGS_FILES.items():
        path = home / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if include_secrets:
            report.notes.append(f"SECRETS INCLUDED: {member} holds credentials as they are "
                                "in the home; keep the archive as safe as the passwords")
        else:
            text, removed = scrub_secrets(data.decode("utf-8", errors="replace"))
            if removed:
                report.notes.append(f"left out of {member}: {', '.join(removed)} (secrets; "
                                    "--include-secrets keeps them)")
            data = text.encode()
        writer.add_bytes(member, data)


# -- import ------------------------------------------------------------------------


def _refuse_newer(what: str, written_by: str, schema: Any, reason: str) -> ArchiveRefused:
    return ArchiveRefused(ArchiveProblem(
        f"{what} was written by gristmill {written_by}, schema {schema}; this is "
        f"gristmill {_version()} ({reason})", _UPGRADE))


def _check_compatible(db: CatalogDatabase, tables: dict[str, Sequence[Column]],
                      what: str, written_by: str, backend: str, schema: int) -> None:
    """Refuse a copy whose tables or columns this gristmill's schema lacks: a newer
    gristmill wrote it. Fewer columns or tables (an older one) are fine."""
    known = len(SQLITE_MIGRATIONS) if backend == "sqlite" else len(pg_migrations.MIGRATIONS)
    if schema > known:
        raise _refuse_newer(what, written_by, schema, f"which knows {backend} schema {known}")
    with db.transaction() as txn:
        for table, columns in tables.items():
            present = {c for c, _ in live_columns(txn, db.backend, table)}
            if not present:
                raise _refuse_newer(what, written_by, schema, f"no table {table}")
            unknown = [c for c, _ in columns if c not in present]
            if unknown:
                raise _refuse_newer(what, written_by, schema,
                                    f"no column {table}.{unknown[0]}")


def _live_items(db: CatalogDatabase) -> int:
    return row_counts(db, ["items"])["items"]


def _target_name(settings: Settings) -> str:
    if settings.database_url is None:
        return str(settings.home.absolute())
    return _source_name(settings)


def import_archive(settings: Settings, archive: Path, *, merge: bool = False,
                   progress: Progress | None = None) -> MoveReport:
    """Import ``archive`` into the knowledge base ``settings`` name (made when missing).

    Every member is checked against the manifest as it streams into staging; nothing is
    visible before all of it is published at once. Run again after a kill, it resumes.

    Raises:
        ArchiveRefused: the archive is damaged, incomplete or from a newer gristmill.
        ConfigError: the target holds items and ``merge`` is off.
    """
    say = progress or (lambda _: None)
    started = time.monotonic()
    report = MoveReport("import", archive=str(archive), target=_target_name(settings))
    home = settings.home.absolute()
    with ArchiveReader(archive) as reader:
        manifest = reader.manifest
        source = manifest.get("source") or {}
        make_home(settings)
        db = open_database(settings)
        try:
            _check_compatible(db, {t: [(c[0], c[1]) for c in m["columns"]]
                                   for t, m in reader.tables.items()},
                              str(archive), str(manifest.get("gristmill")),
                              str(source.get("backend")), int(source.get("schema_version", 0)))
            staging = Staging(db)
            copy_id = f"archive:{reader.manifest_sha256}"
            if staging.published(copy_id):
                report.already_done = True
                report.notes.append("this archive was imported here already: nothing to do")
                _write_settings_files(_read_settings_files(reader), home, report,
                                      bool(manifest.get("secrets_included")), only_new=True)
                return report
            items = _live_items(db)
            if items and not merge:
                raise ConfigError(
                    f"{report.target} already holds {items:,} items: import into a new home "
                    "(--home) or database (--database), or pass --merge to add the "
                    "archive's items to these")
            done, discarded = staging.begin(copy_id)
            if discarded:
                report.notes.append("an interrupted import of another archive was "
                                    "discarded")
            for table, meta in reader.tables.items():
                if table in done:
                    report.resumed.append(table)
                    say(f"{table}: staged before, kept")
                    continue
                columns = [(c[0], c[1]) for c in meta["columns"]]
                count = staging.load(copy_id, table, columns,
                                     _counting(reader.rows(table), table, say))
                say(f"{table}: {count:,} rows checked and staged")
            old_root = str(Path(str(source.get("home", ""))) / "clips") + os.sep
            staging.rewrite_prefix("audio_events", "clip", old_root,
                                   str(home / "clips") + os.sep)
            clips = _extract_clips(reader, home)
            if clips:
                say(f"clips: {len(clips):,} files checked")
            # Read (and so checked) before the publish: nothing of a damaged archive is
            # to become visible, its settings files included.
            settings_files = _read_settings_files(reader)
            before = row_counts(db, reader.tables)
            published = staging.publish(copy_id, merge=merge,
                                        before_commit=lambda: _put_in_place(clips))
            after = row_counts(db, reader.tables)
        finally:
            db.close()
        _write_settings_files(settings_files, home, report,
                              bool(manifest.get("secrets_included")))
        report.tables = published.tables
        report.same_items = published.same
        report.conflicts = published.conflicts
        report.skipped = published.skipped
        for table, meta in reader.tables.items():
            added, left_out = published.tables.get(table, 0), published.skipped.get(table, 0)
            # Left out without --merge: only rows the target had under the same key (a
            # cached vector of the same text) may be; an item or chunk never is.
            lost = left_out and not merge and table in ("items", "chunks", "audio_events")
            if after[table] - before[table] != added or added + left_out != meta["rows"] \
                    or lost:
                report.mismatches.append(
                    f"{table}: the archive has {meta['rows']:,} rows; {added:,} were added "
                    f"({after[table]:,} there now), {left_out:,} left out")
        report.members = len(manifest["members"]) + 1
    report.bytes = archive.stat().st_size
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _extract_clips(reader: ArchiveReader, home: Path) -> list[tuple[Path, Path]]:
    """Write each clip beside its final path (checked); (partial, final) pairs."""
    placed = []
    for member in reader.files():
        if not member.startswith(_CLIPS):
            continue
        relative = Path(member[len(_CLIPS):])
        if relative.is_absolute() or ".." in relative.parts:
            raise ArchiveRefused(ArchiveProblem(
                f"{reader.path}: member {member} points outside the clips folder",
                "export it again with gristmill"))
        final = home / "clips" / relative
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + ".importing")
        with open(partial, "wb") as file:
            reader.copy_file(member, file)
        placed.append((partial, final))
    return placed


def _put_in_place(files: Sequence[tuple[Path, Path]]) -> None:
    # Inside the publish transaction, before its commit: once the rows naming these
    # files are visible, the files are there (a kill before the commit leaves files no
    # row names yet, which the next run writes again).
    for partial, final in files:
        os.replace(partial, final)


def _read_settings_files(reader: ArchiveReader) -> dict[str, bytes]:
    """The archive's settings files (checked), by their name in a home."""
    return {name: reader.read_file(member) for member, name in _SETTINGS_FILES.items()
            if member in reader.manifest["members"]}


def _write_settings_files(files: dict[str, bytes], home: Path, report: MoveReport,
                          secrets: bool, *, only_new: bool = False) -> None:
    """Put the archive's settings files in ``home``: beside the home's own ones (as
    ``NAME.imported``) where it has them, unless ``only_new``."""
    for name, data in files.items():
        target = home / name
        if target.exists():
            if only_new:
                continue
            target = home / f"{name}.imported"
            report.notes.append(f"{home / name} was there already: the archive's is "
                                f"{target}; merge what you need by hand")
        target.write_bytes(data)
        if name == ".env":
            target.chmod(0o600)  # it may hold credentials (--include-secrets)
    if secrets and files:
        report.notes.append("SECRETS INCLUDED: the archive's settings files hold "
                            "credentials; delete the archive once the move is done")


# -- migrate -----------------------------------------------------------------------


def _is_url(to: str) -> bool:
    return to.startswith(("postgresql://", "postgres://"))


@contextmanager
def _target_database(to: str, settings: Settings) -> Iterator[tuple[CatalogDatabase, Path]]:
    """The database ``to`` names, migrated to this schema, and the home its clips go to
    (a PostgreSQL target keeps the current home's)."""
    if _is_url(to):
        from gristmill.catalog.postgres import PostgresDatabase

        db: CatalogDatabase = PostgresDatabase(to, pool_size=2,
                                               retry_seconds=settings.store_retry_seconds)
        home = settings.home.absolute()
    else:
        from gristmill.catalog.sqlite import SqliteDatabase

        home = Path(to).expanduser().absolute()
        if home.suffix == ".db" or home.is_file():
            raise ConfigError(f"--to {to}: give the folder of the new home (its catalog "
                              "is gristmill.db in it), or a postgresql:// URL")
        make_home(Settings.load(home=home))
        db = SqliteDatabase(home / "gristmill.db")
    try:
        yield db, home
    finally:
        db.close()


def migrate_catalog(settings: Settings, to: str, *, progress: Progress | None = None
                    ) -> MoveReport:
    """Copy the knowledge base ``settings`` name into ``to`` (a ``postgresql://`` URL or
    the folder of a new SQLite home) from one snapshot, through staging; then check
    the copy. Run again after a kill, it resumes if the source has not changed since.

    Raises:
        ConfigError: ``to`` is the source itself, or already holds items.
        StoreError: either database cannot be used.
    """
    say = progress or (lambda _: None)
    started = time.monotonic()
    source_home = settings.home.absolute()
    same = (to == settings.database_url.get_secret_value() if settings.database_url
            else not _is_url(to) and Path(to).expanduser().absolute() == source_home)
    if same:
        raise ConfigError(f"--to {to} is the knowledge base itself: name another database "
                          "or folder")
    with _open_snapshot(settings) as snapshot, _target_database(to, settings) as (db, home):
        from gristmill.catalog.postgres import display_url

        report = MoveReport("migrate", target=display_url(to) if _is_url(to) else str(home))
        _check_compatible(db, {s.name: s.columns for s in snapshot.tables},
                          _source_name(settings), _version(), snapshot.backend,
                          snapshot.schema_version)
        staging = Staging(db)
        fingerprint = snapshot.fingerprint()
        copy_id = f"migrate:{source_identity(fingerprint)}"
        if staging.published(copy_id):
            report.already_done = True
            report.notes.append("this knowledge base was migrated there already, and has "
                                "not changed since: nothing to do")
            return report
        items = _live_items(db)
        if items:
            raise ConfigError(f"{report.target} already holds {items:,} items: migrate into "
                              "an empty database or a new folder")
        done, discarded = staging.begin(copy_id)
        if discarded:
            report.notes.append("the knowledge base changed since the interrupted migration: "
                                "started again")
        for spec in snapshot.tables:
            if spec.name in done:
                report.resumed.append(spec.name)
                say(f"{spec.name}: staged before, kept")
                continue
            count = staging.load(copy_id, spec.name, spec.columns,
                                 _counting(snapshot.rows(spec), spec.name, say))
            say(f"{spec.name}: {count:,} rows staged")
        clips: list[tuple[Path, Path]] = []
        if home != source_home:
            staging.rewrite_prefix("audio_events", "clip", str(source_home / "clips") + os.sep,
                                   str(home / "clips") + os.sep)
            clips = _copy_clips(snapshot.clips(), source_home, home)
        published = staging.publish(copy_id, before_commit=lambda: _put_in_place(clips))
        report.tables = published.tables
        counts = {s.name: int(fingerprint[s.name][0]) for s in snapshot.tables}
        running = snapshot.running_jobs()
    report.mismatches = _compare_counts(to, home, counts)
    if running:
        report.notes.append(f"{running} jobs were running: what they wrote after the "
                            "snapshot is not in the copy; run the same ingest against the "
                            "new home to catch up (unchanged files are skipped)")
    report.seconds = round(time.monotonic() - started, 3)
    return report


def _copy_clips(clips: Iterator[str], source_home: Path, home: Path
                ) -> list[tuple[Path, Path]]:
    root = source_home / "clips"
    placed = []
    for clip in clips:
        path = Path(clip)
        if not path.is_relative_to(root) or not path.is_file():
            continue
        final = home / "clips" / path.relative_to(root)
        final.parent.mkdir(parents=True, exist_ok=True)
        partial = final.with_name(final.name + ".importing")
        shutil.copyfile(path, partial)
        placed.append((partial, final))
    return placed


def _compare_counts(to: str, home: Path, counts: dict[str, int]) -> list[str]:
    """Row counts of the published copy against the snapshot's, and the verify checks
    where they are there: one line per difference."""
    overrides: dict[str, Any] = {"home": home}
    if _is_url(to):
        overrides["database_url"] = to
    target = Settings.load(**overrides)
    db = open_database(target, readonly=True)
    try:
        lines = []
        found_counts = row_counts(db, counts)
        for table, expected in counts.items():
            found = found_counts[table]
            if found != expected:
                lines.append(f"{table}: {found:,} rows in the copy, {expected:,} in the "
                             "source snapshot")
        lines += [f.line() for f in verify_database(db).findings]
        return lines
    finally:
        db.close()
