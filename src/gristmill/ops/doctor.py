"""``gristmill doctor``: whether this machine can do everything the settings ask.

Each check names what it looked at and, when something is missing, the command that
fixes it. Optional parts (OCR, LibreOffice, pgvector) only cost the formats or the speed
that need them, so a missing one is a warning; a broken required part (the home folder,
the embedding model the settings name, SQLite without FTS5, an unreachable PostgreSQL)
is an error.
"""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

from gristmill.errors import GristmillError, HomeUnwritable

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["Check", "run_checks"]

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Check:
    """One finding.

    Attributes:
        name: what was checked (``"ocr"``).
        level: ``ok``, ``warning`` (some formats will be skipped) or ``error``.
        detail: what was found, and what to do when it is not ``ok``.
    """

    name: str
    level: Level
    detail: str

    def to_dict(self) -> dict[str, str]:
        """For ``--json``."""
        return asdict(self)


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    database = _sqlite() if settings.database_url is None else _postgres(settings)
    return [_home(settings), database, _embedder(settings), _ocr(settings), _libreoffice()]


def _home(settings: Settings) -> Check:
    from gristmill.home import unwritable_reason

    home = settings.home.absolute()
    reason = unwritable_reason(home)
    if reason is not None:  # the very sentence every other command says
        return Check("home", "error", str(HomeUnwritable(home, reason)))
    existing = next(p for p in (home, *home.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    state = "exists" if home.exists() else "will be created"
    return Check("home", "ok", f"{home} ({state}; {free / 2**30:.1f} GiB free)")


def _sqlite() -> Check:
    from gristmill.catalog.sqlite import sqlite_has_fts5

    if not sqlite_has_fts5():
        return Check("sqlite", "error", f"SQLite {sqlite3.sqlite_version} has no FTS5: use a "
                     "Python built with a standard SQLite (python.org, Debian, conda)")
    return Check("sqlite", "ok", f"SQLite {sqlite3.sqlite_version} with FTS5")


def _postgres(settings: Settings) -> Check:
    from gristmill.catalog.postgres import PostgresDatabase
    from gristmill.index.postgres import NO_PGVECTOR, vector_search_check

    assert settings.database_url is not None
    try:
        # Read-only: a check neither creates the schema nor migrates it (ingest does).
        db = PostgresDatabase(settings.database_url.get_secret_value(), pool_size=1,
                              readonly=True)
    except GristmillError as exc:
        return Check("postgresql", "error", f"PostgreSQL: {exc}")
    try:
        version = db.server_version()
        level, vectors = vector_search_check(db)
        schema = db.schema_version
        where = f"PostgreSQL {version} at {db.display_name} " + (
            f"(schema {schema})" if schema else "(no knowledge base yet: the first ingest "
            "creates its tables)")
    except GristmillError as exc:
        return Check("postgresql", "error", f"PostgreSQL: {exc}")
    finally:
        db.close()
    if level != "ok":
        hint = (" (Debian: postgresql-NN-pgvector, NN the server's major version)"
                if vectors == NO_PGVECTOR else "")
        return Check("postgresql", "warning", f"{where}; {vectors}{hint}")
    return Check("postgresql", "ok", f"{where}; {vectors}")


def _embedder(settings: Settings) -> Check:
    if settings.embedder == "none":
        return Check("embedder", "ok", "none: keyword search only")
    from gristmill.embed.minilm import model_file

    try:
        path = model_file(settings.model_path)
    except GristmillError as exc:
        return Check("embedder", "error", str(exc))
    return Check("embedder", "ok", f"{settings.embedder}: {path} (sha256 verified)")


def _ocr(settings: Settings) -> Check:
    from gristmill.extract.ocr import doctor, engine

    if settings.ocr_engine != "tesseract":
        try:
            engine(settings.ocr_engine)  # loads its models: the real test
        except GristmillError as exc:
            return Check("ocr", "warning", f"{exc} (until then images and scanned PDF "
                         "pages are skipped)")
        return Check("ocr", "ok", f"{settings.ocr_engine}: models loaded")

    found = doctor(settings.ocr_lang)
    if found.ok:
        # osd is Tesseract's page-orientation model, not a language anyone reads.
        languages = [lang for lang in found.languages if lang != "osd"]
        osd = "; osd is the orientation model" if "osd" in found.languages else ""
        return Check("ocr", "ok", f"Tesseract {found.version or '(unknown version)'} at "
                     f"{found.binary}; OCR languages: using {settings.ocr_lang} (installed: "
                     f"{', '.join(languages) or 'none'}{osd})")
    return Check("ocr", "warning", f"{found.problem} (until then images and scanned PDF "
                 "pages are skipped)")


def _libreoffice() -> Check:
    from gristmill.extract.legacy import PACKAGES

    for program in ("soffice", "libreoffice"):
        if found := shutil.which(program):
            return Check("libreoffice", "ok", f"{found} (reads .doc .xls .ppt .rtf .odt .ods "
                         ".odp)")
    return Check("libreoffice", "warning", f"LibreOffice is not installed: install "
                 f"{PACKAGES} (until then .doc .xls .ppt .rtf .odt .ods .odp are skipped)")
