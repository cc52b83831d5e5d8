"""``gristmill sync``: push the knowledge base to stores elsewhere (sinks)."""

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

sync_app = typer.Typer(help="Push the knowledge base to a store elsewhere (a sink).\n\n"
                       "Example: gristmill sync openai --vector-store vs_abc123",
                       no_args_is_help=True)
app.add_typer(sync_app, name="sync")


@sync_app.command("openai")
def sync_openai(
    vector_store: Annotated[str | None, typer.Option(
        "--vector-store", help="The id of the OpenAI vector store to sync (vs_...).",
        show_default=False)] = None,
    create: Annotated[str | None, typer.Option(
        "--create", help="Create a vector store with this name and sync to it (then use "
        "--vector-store with its id).", show_default=False)] = None,
    collection: CollectionOpt = None,
    original: Annotated[bool, typer.Option(
        "--original", help="Upload each item's original file instead of its extracted "
        "text (items that are not files on this machine still send their text).")] = False,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Make an OpenAI vector store hold the knowledge base's indexed items, one file
    each, with item_id, source and collection as attributes: new items are uploaded,
    changed ones replaced, deleted ones removed; unchanged ones are not sent again.
    Resumable: a sync killed part way continues where it stopped.

    Example: gristmill sync openai --vector-store vs_abc123 --collection docs
    """
    from gristmill.sinks import sync_openai as run_sync

    with _kb(home, None, database, env_file=env_file) as kb:
        report = run_sync(kb.db, kb.settings, vector_store=vector_store, create=create,
                          collection=collection, original=original,
                          progress=lambda line: _say(err, line))
    for source, reason in report.failures:
        _say(err, ("failed: ", "red"), f"{source}: {reason}")
    if json_out:
        _print_json(report.to_dict())
        return
    _say(out, f"Synced to {report.vector_store}: {report.uploaded} uploaded, "
         f"{report.replaced} replaced, {report.deleted} deleted, {report.unchanged} "
         f"unchanged, {report.failed} failed in {report.seconds:.1f} s.")
