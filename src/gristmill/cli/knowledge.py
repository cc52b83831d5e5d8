"""The commands that fill and read a knowledge base: ingest, rebuild, watch, search,
status, errors, reset."""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer
from rich.text import Text

from gristmill.cli._shared import (
    CollectionOpt,
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    ExcludeOpt,
    Home,
    IncludeOpt,
    JsonOpt,
    TargetCollection,
    WorkersOpt,
    _kb,
    _print_json,
    _say,
    _start_workers_early,
    app,
    err,
    out,
)
from gristmill.display import Column, print_table
from gristmill.progress import TerminalProgress, format_duration


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(
        help="Folders, files or s3://bucket/prefix/ URLs to ingest.")],
    collection: TargetCollection = "default",
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    max_files: Annotated[int | None, typer.Option(
        "--max-files", min=1, help="Stop discovering after N files.")] = None,
    workers: WorkersOpt = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed",
                                               help="Try failed items again.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run",
                                          help="Only report what would be done.")] = False,
    ocr_lang: Annotated[str | None, typer.Option(
        "--ocr-lang", help="OCR languages, Tesseract codes joined by + (eng+deu) "
        "[env: GRISTMILL_OCR_LANG; default eng].", show_default=False)] = None,
    include_vendored: Annotated[bool, typer.Option(
        "--include-vendored", help="In git work trees, also read vendored and generated "
        "folders (node_modules, vendor, target, build, dist...).")] = False,
    json_out: JsonOpt = False,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Discover, extract, chunk, embed and index files. Re-running resumes.

    Example: gristmill ingest ~/papers s3://bucket/reports/ --include '*.pdf'
    """
    if not dry_run:
        _start_workers_early()
    with _kb(home, embedder, database, env_file=env_file, create=True, workers=workers,
             ocr_lang=ocr_lang, include_vendored=include_vendored or None) as kb:
        with TerminalProgress(err, embedding=kb.settings.embedder != "none") as progress:
            report = kb.ingest(sources, collection=collection, include=include or (),
                               exclude=exclude or (), max_files=max_files,
                               retry_failed=retry_failed, dry_run=dry_run,
                               on_progress=None if json_out else progress)
        _finish_run(report, json_out)


@app.command()
def rebuild(
    collection: Annotated[str, typer.Option(
        "--collection", "-c", help="Collection to rebuild.")] = "default",
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Extract, chunk and index a collection again from the store of originals (the
    `store` setting), without reading its sources: after a move, for a new extractor
    version or other chunk settings, or over a damaged index. Re-running continues.

    Example: gristmill rebuild --collection papers
    """
    _start_workers_early()
    with _kb(home, embedder, database, env_file=env_file, workers=workers) as kb:
        with TerminalProgress(err, embedding=kb.settings.embedder != "none") as progress:
            report = kb.rebuild(collection, on_progress=None if json_out else progress)
        if json_out:
            _print_json(report.to_dict())
        else:
            _print_rebuild_summary(report)
        if report.stopped:
            raise typer.Exit(130)


def _print_rebuild_summary(report: Any) -> None:
    _say(out, "Collection ", (str(report.collection), "bold"),
         f": rebuilt {report.processed} items from the store of originals "
         f"({report.discovered.outdated} to do in this run).")
    _print_outcome(report)


def _finish_run(report: Any, json_out: bool) -> None:
    if json_out:
        _print_json(report.to_dict())
    else:
        _print_ingest_summary(report)
    if report.stopped:
        raise typer.Exit(130)


def _print_ingest_summary(report: Any) -> None:
    d = report.discovered
    if report.dry_run:
        out.print(f"Would process {d.new} new and {d.changed} changed files; "
                  f"{d.unchanged} unchanged, {d.skipped} not regular files.")
        return
    timings = report.timings
    _say(
        out, "Collection ", (str(report.collection), "bold"), f": discovered {d.seen} files "
        f"({d.new} new, {d.changed} changed, {d.unchanged} unchanged, {d.removed} removed"
        f"{f', {d.outdated} redone by newer extractors' if d.outdated else ''}) "
        f"in {format_duration(timings.get('discovery'))}.")
    _print_outcome(report)


def _print_outcome(report: Any) -> None:
    """The phases, the items by status, and the job's state, with what to do next."""
    items = report.items
    _say(out, _phases_line(report))
    total, members = sum(items.values()), report.members
    # The walk counts files; the catalog also holds what was found inside them.
    inside = (f" ({total:,} = {total - members:,} files + {members:,} attachments/members)"
              if members else "")
    _say(out,
         f"Items{inside}: {items['indexed']} indexed, {items['extracted']} "
         f"awaiting vectors, {items['skipped']} skipped, {items['failed']} failed, "
         f"{items['pending']} pending. Chunks: {report.chunks:,}.")
    if report.state == "cancelled":
        out.print(f"[yellow]Job {report.job_id} was cancelled.[/yellow]")
    elif report.state == "paused":
        if report.reason:
            _say(out, ("Paused: ", "yellow"), report.reason)
        out.print(f"[yellow]Job {report.job_id} is paused; resume it with `gristmill jobs "
                  f"resume {report.job_id}` (or run the same command again).[/yellow]")
    elif report.state in ("queued", "running"):  # resumed while this run drained
        out.print(f"[yellow]Job {report.job_id} was resumed; its new run carries on with "
                  f"it.[/yellow]")
    if items["failed"] or items["skipped"]:
        out.print("Run [bold]gristmill errors[/bold] to see why items failed or were skipped.")


def _phases_line(report: Any) -> str:
    """What the run did and how long each phase took (they overlap: each time is from
    the start)."""
    timings, phases = report.timings, report.progress
    total = f"Total {format_duration(timings.get('total'))}."
    if report.unchanged_only:
        return f"Nothing changed: {report.discovered.unchanged} items unchanged. {total}"
    parts = [f"Extracted {report.processed} items"]
    if timings.get("extraction") is not None:
        parts[0] += (f" in {format_duration(timings['extraction'])} (keyword search "
                     f"complete from then)")
    embed = phases.get("embed")
    if embed is not None:
        vectors = f"vectors: {embed['texts_embedded']:,} texts embedded"
        if timings.get("embedding") is not None:
            vectors += f", every chunk had its vector after {format_duration(timings['embedding'])}"
        elif embed["texts_waiting"]:
            vectors += f", {embed['texts_waiting']:,} still waiting"
        parts.append(vectors)
    return "; ".join(parts) + f". {total}"


@app.command()
def watch(
    sources: Annotated[list[str], typer.Argument(help="Folders (or files) to watch.")],
    collection: TargetCollection = "default",
    include: IncludeOpt = None,
    exclude: ExcludeOpt = None,
    debounce: Annotated[float | None, typer.Option(
        "--debounce", help="Seconds a changed file must stay quiet before it is indexed "
        "[env: GRISTMILL_WATCH_DEBOUNCE; default 0.5].", show_default=False)] = None,
    workers: WorkersOpt = None,
    json_out: JsonOpt = False,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Keep a collection in step with folders: catch up with what changed while no
    watch ran, then index every save, move and delete as it happens, until Ctrl-C or
    SIGTERM (exit status 0). Stopping loses nothing: the next start catches up.

    Example: gristmill watch ~/notes --collection notes --exclude '*.log'
    """
    _start_workers_early()
    def changed(kind: str, counts: Any) -> None:
        if kind == "caught-up":
            _say(err, f"Caught up: {_counts_line(counts, unchanged=True)}. Watching "
                 f"{', '.join(sources)} (Ctrl-C to stop).")
        elif kind == "rescan" or counts.new or counts.changed or counts.removed:
            what = "events were lost, rescanned: " if kind == "rescan" else ""
            _say(err, f"{time.strftime('%H:%M:%S')} {what}{_counts_line(counts)}")

    with _kb(home, embedder, database, env_file=env_file, create=True, workers=workers,
             watch_debounce=debounce) as kb:
        report = kb.watch(sources, collection=collection, include=include or (),
                          exclude=exclude or (), on_change=None if json_out else changed)
        if json_out:
            _print_json(report.to_dict())
            return
        items = report.items
        out.print(f"Watch (job {report.job_id}) {report.state} after "
                  f"{format_duration(report.seconds)}: {_counts_line(report.changes)} by "
                  f"events; items {items['indexed']} indexed, {items['pending']} pending, "
                  f"{items['failed']} failed.", highlight=False)


def _counts_line(counts: Any, *, unchanged: bool = False) -> str:
    line = f"{counts.new} new, {counts.changed} changed, {counts.removed} removed"
    return line + (f", {counts.unchanged} unchanged" if unchanged else "")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="What to look for (any text is safe).")],
    collection: CollectionOpt = None,
    k: Annotated[int, typer.Option("-k", min=1, max=1000, help="Number of results.")] = 10,
    mode: Annotated[str, typer.Option("--mode", help="hybrid, keyword or vector.")] = "hybrid",
    language: Annotated[str | None, typer.Option(
        "--language", help="Code only, in this language (java, python, ...).")] = None,
    kind: Annotated[str | None, typer.Option(
        "--kind", help="Code entities of this kind only (method, class, function, ...).")
    ] = None,
    path: Annotated[str | None, typer.Option(
        "--path", help="Files whose path matches this glob ('src/*/billing/*.java').")
    ] = None,
    json_out: JsonOpt = False,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Search the knowledge base: BM25 and vectors fused, exact matches first.

    Example: gristmill search "how do leases expire" -k 5 --json
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        hits = kb.search(query, collection=collection, k=k, mode=mode,  # type: ignore[arg-type]
                         language=language, kind=kind, path=path)
        if json_out:
            _print_json([hit.to_dict(query) for hit in hits])
            return
        if not hits:
            out.print("No results.")
            if not kb.index.chunk_count(collection):  # nothing to find, not a bad query
                at = (kb.db.display_name if kb.settings.database_url
                      else kb.settings.home.absolute())
                if collection:
                    _say(err, f"Collection {collection!r} of the knowledge base at {at} "
                         "holds nothing: add files with `gristmill ingest PATH --collection "
                         f"{collection}`.")
                else:
                    _say(err, f"The knowledge base at {at} is empty: add files with "
                         "`gristmill ingest PATH`, or point --home at another one.")
        for rank, hit in enumerate(hits, start=1):
            where = hit.source + (f" (page {hit.page})" if hit.page else "")
            if hit.lines:  # path:first-last, as editors and grep read it
                where = f"{hit.source}:{hit.lines[0]}-{hit.lines[1]}"
            _say(out, (f"{rank}.", "bold"), " ", (where, "cyan"), "  ",
                 (f"{hit.score:.4f}", "dim"))
            if hit.entity:
                _say(out, "   ", (f"{hit.kind} ", "dim"), (hit.entity, "italic"))
            if hit.heading:
                _say(out, "   ", (hit.heading, "italic"))
            # The passage around the query's words, those words styled by offset: the
            # chunk's text is never read as markup.
            passage = hit.snippet(query)
            line = Text("   " + passage.text)
            for start, end in passage.highlights:
                line.stylize("bold yellow", start + 3, end + 3)
            out.print(line, highlight=False)


@app.command()
def status(json_out: JsonOpt = False, home: Home = None, database: DatabaseOpt = None,
           env_file: EnvFileOpt = None,
           embedder: EmbedderOpt = None) -> None:
    """Items by status and chunk counts, overall and per collection; running jobs and
    their write batcher (flushes, rows, flush and commit latency).

    Example: gristmill status --json
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        data = kb.status()
        if json_out:
            _print_json(data)
            return
        statuses = ("pending", "processing", "extracted", "indexed", "skipped", "failed")
        entries = [*((Text(name), entry) for name, entry in data["collections"].items()),
                   (Text("all", style="bold"), data)]
        rows: list[list[str | Text]] = [
            [name, *(f"{entry['items'][s]:,}" for s in statuses), f"{entry['chunks']:,}"]
            for name, entry in entries]
        # On a narrow terminal, a status no item is in is the column to leave out.
        columns = [Column("collection"),
                   *(Column(s, "right", optional=int(s != "indexed" and all(
                       row[1 + i] == "0" for row in rows))) for i, s in enumerate(statuses)),
                   Column("chunks", "right")]
        print_table(out, columns, rows)
        if data["members"]:
            _say(out, f"Items include {data['members']:,} attachments and archive members "
                 "(found inside other files; an ingest's `discovered` counts files only).")
        if "vectors" in data:
            _say(out, f"Vectors: {data['vectors']:,} stored, one per distinct chunk text; "
                 f"{data['chunks_with_vectors']:,} of {data['chunks']:,} chunks have one.")
        cache = data["embedding_cache"]
        if cache["hits"] or cache["misses"]:
            _say(out, f"Embedding cache: {cache['hit_rate']:.0%} hits ({cache['hits']:,} "
                 f"chunks found a stored vector, {cache['misses']:,} texts embedded).")
        for job in data["running"]:
            line = (f"job {job['job']} running ({job['collection']}): {job['done']:,} done, "
                    f"{job['rate']:.1f} items/s")
            stats = job["batcher"]
            if stats:
                line += (f"; batcher: {stats['flushes']:,} flushes, {stats['rows']:,} rows, "
                         f"flush p99 {stats['flush_p99'] * 1000:.0f} ms, commit p99 "
                         f"{stats['latency_p99'] * 1000:.0f} ms, {stats['dead']} dead")
            _say(out, line)


@app.command()
def errors(collection: CollectionOpt = None,
           job: Annotated[int | None, typer.Option(
               "--job", help="Only the items this job saw.", show_default=False)] = None,
           json_out: JsonOpt = False, home: Home = None, database: DatabaseOpt = None,
           env_file: EnvFileOpt = None,
           embedder: EmbedderOpt = None) -> None:
    """Failed and skipped items, grouped by the pattern of their reason.

    Example: gristmill errors --job 7 --json
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        groups = kb.errors(collection, job)
        if json_out:
            _print_json([g.to_dict() for g in groups])
            return
        if not groups:
            out.print("No failed or skipped items.")
        for group in groups:
            colour = "red" if group.status == "failed" else "yellow"
            _say(out, (group.status, colour), f" x{group.count}: {group.pattern}")
            for example in group.examples:
                _say(out, f"    {example['source']}: {example['error']}")


@app.command()
def reset(
    failed: Annotated[bool, typer.Option("--failed", help="Re-queue failed items.")] = False,
    skipped: Annotated[bool, typer.Option(
        "--skipped", help="Re-queue skipped files (e.g. after installing LibreOffice).")] = False,
    collection: CollectionOpt = None,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Re-queue items so the next ingest tries them again.

    Example: gristmill reset --failed && gristmill ingest ~/papers
    """
    if not (failed or skipped):
        err.print("Nothing to reset: pass --failed and/or --skipped.")
        raise typer.Exit(2)
    with _kb(home, embedder, database, env_file=env_file) as kb:
        if failed:
            n = kb.reset_failed(collection)
            out.print(f"Re-queued {n} failed item(s); run `gristmill ingest` on their source.")
        if skipped:
            n = kb.reset_skipped(collection)
            out.print(f"Re-queued {n} skipped file(s); run `gristmill ingest` on their source.")


