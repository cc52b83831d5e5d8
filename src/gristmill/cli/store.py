"""``gristmill store``: the store of originals (the ``store`` setting)."""

from __future__ import annotations

from typing import Annotated

import typer

from gristmill.cli._shared import (
    CollectionOpt,
    DatabaseOpt,
    EnvFileOpt,
    Home,
    JsonOpt,
    _kb,
    _print_json,
    _say,
    app,
    err,
    out,
)

store_app = typer.Typer(help="The store of originals (the `store` setting).\n\n"
                        "Example: gristmill store push --dry-run", no_args_is_help=True)
app.add_typer(store_app, name="store")


@store_app.command("push")
def push(
    collection: CollectionOpt = None,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Only ask the store which originals it holds; count the "
        "others, read and write nothing.")] = False,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Put into the store every original it lacks: items ingested before `store` was
    set, or copied from a twin. Each is read from its source and checked against the
    sha256 recorded at ingest; a file changed since is reported, not stored. Running it
    again (after a kill, too) sends nothing already there. Exit 0 when the store holds
    every original (a dry run: already), 1 otherwise.

    Example: gristmill store push --collection docs
    """
    from gristmill.ops.store_push import push_originals

    with _kb(home, None, database, env_file=env_file) as kb:
        report = push_originals(kb.db, kb.settings, collection=collection,
                                dry_run=dry_run, progress=lambda line: _say(err, line))
    for problem in report.problems:
        _say(err, (f"{problem.problem}: ", "red"), f"{problem.source}: {problem.reason}")
    not_pushed = report.missing_source + report.changed + report.failed
    if not_pushed > len(report.problems):
        _say(err, f"... and {not_pushed - len(report.problems):,} more not pushed (counted "
             "below)")
    if json_out:
        _print_json(report.to_dict())
    else:
        verb = "would push" if report.dry_run else "pushed"
        _say(out, f"Store {report.store}: {report.originals:,} originals, "
             f"{report.already_stored:,} already there, {verb} {report.pushed:,} "
             f"({report.bytes / 2**20:,.1f} MB); not pushed: {report.missing_source:,} "
             f"missing source, {report.changed:,} changed since ingested, "
             f"{report.failed:,} failed ({report.seconds:.1f} s).")
    if not report.complete:
        raise typer.Exit(1)
