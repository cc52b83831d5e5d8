"""Moving a knowledge base: ``export``, ``import``, ``migrate`` and ``verify``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gristmill.cli._shared import (
    CollectionOpt,
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    Home,
    JsonOpt,
    _print_json,
    _say,
    app,
    err,
    out,
)

if TYPE_CHECKING:
    from gristmill.ops.moving import MoveReport
    from gristmill.ops.verify import Verification


def _finish(report: MoveReport, json_out: bool, headline: str) -> None:
    """Print ``report``: JSON, or a summary; notes and count mismatches stand out."""
    if json_out:
        _print_json(report.to_dict())
    else:
        rows = sum(report.tables.values())
        _say(out, headline + f": {rows:,} rows in {len(report.tables)} tables"
             + (f", {report.members} members, {report.bytes / 1e6:,.1f} MB"
                if report.members else "") + f" in {report.seconds:.1f} s.")
        if report.resumed:
            _say(out, f"Resumed: {', '.join(report.resumed)} were staged by an interrupted "
                 "run and kept.")
        if report.same_items or report.conflicts:
            _say(out, f"Merged: {report.same_items:,} items were there already with the "
                 f"same content; {len(report.conflicts):,} conflicts (the target's kept).")
            for line in report.conflicts[:20]:
                _say(out, ("  conflict: ", "yellow"), line)
    for note in report.notes:
        loud = note.startswith("SECRETS")
        _say(err, ("warning: " if loud else "note: ", "bold red" if loud else "yellow"), note)
    for line in report.mismatches:
        _say(err, ("mismatch: ", "red"), line)
    if report.mismatches:
        raise typer.Exit(1)


@app.command()
def export(
    archive: Annotated[Path, typer.Argument(help="The archive file to write.")],
    collection: CollectionOpt = None,
    include_secrets: Annotated[bool, typer.Option(
        "--include-secrets", help="Keep credentials (database_url, api_token, *_key, "
        "*token*, *password*) in the archived settings files.")] = False,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Write the knowledge base to one archive file: a consistent snapshot, safe while
    jobs run (catalog, chunks, vectors, audio events and clips, settings).

    Example: gristmill export kb.gristmill
    """
    from gristmill.config import Settings
    from gristmill.ops.moving import export_archive

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    report = export_archive(settings, archive, collection=collection,
                            include_secrets=include_secrets,
                            progress=lambda line: _say(err, line))
    _finish(report, json_out, f"Exported to {archive}")


@app.command("import")
def import_(
    archive: Annotated[Path, typer.Argument(help="The archive file to read.")],
    merge: Annotated[bool, typer.Option(
        "--merge", help="Add the archive's items to a knowledge base that has items (same "
        "source and sha256: the same item; other content: a conflict, the target's kept)."
    )] = False,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Import an archive into a new home (or PostgreSQL database, --database). Every
    checksum is checked before anything is visible; run again after a crash, it resumes.

    Example: gristmill import kb.gristmill --home ~/kb
    """
    from gristmill.config import Settings
    from gristmill.ops.moving import import_archive

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    report = import_archive(settings, archive, merge=merge,
                            progress=lambda line: _say(err, line))
    _finish(report, json_out, f"Imported {archive} into {report.target}"
            if not report.already_done else f"{archive} was imported already")


@app.command()
def migrate(
    to: Annotated[str, typer.Option(
        "--to", help="postgresql://user:password@host/dbname, or the folder of a new "
        "SQLite home.", show_default=False)],
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """Copy the knowledge base into another database (PostgreSQL, or a new SQLite home)
    without an archive file, then check the copy; safe while jobs run, resumable.

    Example: gristmill migrate --to postgresql://gristmill@db/kb
    """
    from gristmill.config import Settings
    from gristmill.ops.moving import migrate_catalog

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    report = migrate_catalog(settings, to, progress=lambda line: _say(err, line))
    _finish(report, json_out, f"Migrated to {report.target}")
    if not json_out:
        where = ("--database with that URL (or set GRISTMILL_DATABASE_URL to it)"
                 if to.startswith(("postgresql://", "postgres://"))
                 else f"--home {report.target} (or set GRISTMILL_HOME)")
        _say(out, f"Next: use {where} from now on; `gristmill status` there shows the copy.")


@app.command()
def verify(
    archive: Annotated[Path | None, typer.Argument(
        help="An archive from `gristmill export` to check instead of the knowledge base.",
        show_default=False)] = None,
    sources: Annotated[bool, typer.Option(
        "--sources", help="Also check that every item's file is still at its source, "
        "and every audio clip in the home.")] = False,
    repair: Annotated[bool, typer.Option(
        "--repair", help="Apply the safe fixes (rebuild the keyword index, return "
        "left-behind leases to pending, delete orphans, queue items whose vectors or "
        "chunks are wrong to be made again), then check again.")] = False,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Check that a knowledge base holds together: every chunk in the keyword index,
    every vector of its model's length, every indexed chunk with a vector, no orphans,
    no leases left behind, chunk counts as recorded. With ARCHIVE: the archive's
    checksums and row counts against its manifest. Read-only unless --repair.

    Prints one line per problem, saying how to fix it, then a summary; exits 0 only
    when there is none.

    Example: gristmill verify --sources && gristmill verify kb.gristmill
    """
    from gristmill.ops.verify import verify_archive

    if archive is not None:
        if repair:
            _say(err, ("error:", "red"), " --repair mends a knowledge base, not an archive: "
                 "import the archive, then run `gristmill verify --repair`")
            raise typer.Exit(2)
        result, repaired = verify_archive(archive), None
    else:
        result, repaired = _verify_knowledge_base(home, embedder, database, env_file,
                                                  sources=sources, repair=repair)
    if json_out:
        _print_json({**result.to_dict(),
                     **({"repaired": repaired} if repaired is not None else {})})
    else:
        for line in repaired or ():
            _say(out, ("repaired:", "green"), f" {line}")
        for finding in result.findings:
            _say(out, ("error:", "red"), f" {finding.line()}")
        # Every name is a regular plural: "1 source file", "2 source files".
        looked = ", ".join(f"{count:,} {name.replace('_', ' ').removesuffix('s' * (count == 1))}"
                           for name, count in result.checked.items())
        count = len(result.findings)
        verdict = ("no problems found" if result.ok
                   else f"{count} problem{'s' if count > 1 else ''} found")
        _say(out, f"Checked {looked or 'nothing'}: {verdict}.")
    if not result.ok:
        raise typer.Exit(1)


def _verify_knowledge_base(home: Path | None, embedder: str | None, database: str | None,
                           env_file: Path | None, *, sources: bool, repair: bool
                           ) -> tuple[Verification, list[str] | None]:
    """The knowledge base's verification (after the repairs, with ``repair``), and the
    repairs made."""
    from gristmill.catalog import open_database
    from gristmill.config import Settings
    from gristmill.home import require_knowledge_base
    from gristmill.ops.verify import repair_database, verify_database

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    require_knowledge_base(settings)
    # Read-only unless repairing: a verify run beside a job never takes its write lock.
    db = open_database(settings, readonly=not repair)
    try:
        result = verify_database(db, settings, sources=sources)
        if not repair:
            return result, None
        repaired = repair_database(db, result.findings)
        if repaired:
            result = verify_database(db, settings, sources=sources)
        return result, repaired
    finally:
        db.close()
