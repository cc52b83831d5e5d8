"""The ``gristmill`` command: parses flags, calls one library method, prints the result.

Every command takes ``--home`` (or ``GRISTMILL_HOME``), ``--embedder`` (or
``GRISTMILL_EMBEDDER``) and ``--database`` (or ``GRISTMILL_DATABASE_URL``); ``--json``
gives machine-readable output.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import logging
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.exceptions import TyperException

from gristmill.display import Column, format_when, job_lines, print_table
from gristmill.errors import GristmillError
from gristmill.progress import TerminalProgress, format_duration
from gristmill.runtime.fork_server import start_fork_server

if TYPE_CHECKING:
    # typer vendors click; a group's invoke gets that click's Context, which
    # typer.Context extends (typer does not re-export the base).
    from typer._click import Context as ClickContext

    from gristmill.knowledge_base import KnowledgeBase

__all__ = ["app", "main"]

log = logging.getLogger(__name__)


class _Commands(typer.core.TyperGroup):
    """The app's commands (sub-apps included), with the one place where what they raise
    becomes a line on stderr and an exit status: a user's mistake (a bad setting, a
    home that cannot be written, a missing knowledge base) or the machine's (an OS
    error) is one sentence saying what to do; anything else is a bug, whose traceback
    goes to the log. No traceback reaches the terminal while the log can be written."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors, --help, exits
            raise
        except GristmillError as exc:
            _log_traceback(exc, logging.INFO)  # the user's to fix: the line says how
            _fail(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # output piped into `head`: click ends quietly
            where = _log_traceback(exc)
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            _say(err, ("error:", "red"), f" {what}" + (f" (details in {where})" if where
                                                         else ""))
            raise typer.Exit(1) from None
        except Exception as exc:
            where = _log_traceback(exc)
            first = (str(exc).strip().splitlines() or [""])[0]
            _say(err, ("error:", "red"), f" unexpected {type(exc).__name__}: {first}. This "
                 "is a bug in gristmill; please report it with the traceback, which is in "
                 f"{where or 'the lines below'}.")
            if where is None:  # no log to hold it: the report needs it all the same
                traceback.print_exc(file=sys.stderr)
            raise typer.Exit(1) from None


def _log_traceback(exc: BaseException, level: int = logging.ERROR) -> str | None:
    """Log ``exc`` with its traceback; the log file's path, or None when no log file is
    open (the knowledge base was not opened, or its home cannot be written: then
    nothing is logged, lest Python's last-resort handler print it on stderr)."""
    files = [getattr(h, "baseFilename", None) for h in logging.getLogger("gristmill").handlers]
    where = next((f for f in files if f), None)
    if where is not None:
        log.log(level, "command failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return where


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("gristmill")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from gristmill import __version__ as number
        sys.stdout.write(f"gristmill {number}\n")
        raise typer.Exit()


app = typer.Typer(
    name="gristmill",
    cls=_Commands,
    help="Turn a pile of files into a searchable knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain: "[default: all cores]" must not be read as Rich markup.
    rich_markup_mode=None,
)
# One line per message: greppable when piped. No emoji codes: `:smile:` in a file name
# is text (markup is kept out of user text by _say).
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

Home = Annotated[Path | None, typer.Option(
    "--home", help="Knowledge-base folder [env: GRISTMILL_HOME; default ./.gristmill].",
    show_default=False)]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", help="postgresql://user:password@host/dbname: the catalog in PostgreSQL "
    "[env: GRISTMILL_DATABASE_URL; default: the SQLite file in the home folder].",
    show_default=False)]
EmbedderOpt = Annotated[str | None, typer.Option(
    "--embedder", help="minilm (default) or none (keyword-only) [env: GRISTMILL_EMBEDDER].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
# Shared by ingest and watch.
TargetCollection = Annotated[str, typer.Option("--collection", "-c",
                                               help="Collection to put the items in.")]
IncludeOpt = Annotated[list[str] | None, typer.Option(
    "--include", help="Only files matching this glob (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", help="Skip files matching this glob (repeatable).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Worker processes [default: all cores].")]
CollectionOpt = Annotated[str | None, typer.Option(
    "--collection", "-c", help="Limit to one collection.", show_default=False)]


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print gristmill's version and exit.")] = False) -> None:
    """Turn a pile of files into a searchable knowledge base."""


@contextmanager
def _kb(home: Path | None, embedder: str | None, database: str | None, *,
        create: bool = False, **settings: Any) -> Iterator[KnowledgeBase]:
    """Open the knowledge base for one command, and close it after. Only commands that
    write (``create=True``: ingest, watch) make a home where there is none; the others
    say that there is no knowledge base there. Errors become one line in ``_Commands``."""
    # Imported here, not at the top: the library is most of the CLI's start-up time
    # (~0.2 s), and commands that run workers start their fork server first (see
    # _start_workers_early) so that the two imports run side by side.
    from gristmill.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(home, create=create, embedder=embedder, database_url=database,
                            **settings)
    try:
        yield kb
    finally:
        kb.close()


def _start_workers_early() -> None:
    """Start the fork server that workers are made from, before the library is imported:
    its own imports (~0.1 s of a core) then run beside this process's instead of after
    them, and the first file reaches a worker that much sooner."""
    start_fork_server()


def _say(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line of ``parts``, each taken literally (a ``(text, style)`` part is
    styled): file names, reasons, queries, collections and settings are never read as
    Rich markup, which a file named ``x[/y]z.pdf`` would break and ``[red]x`` restyle."""
    console.print(Text.assemble(*parts), highlight=False)


def _fail(exc: GristmillError) -> None:
    _say(err, ("error:", "red"), f" {exc}")
    raise typer.Exit(exc.exit_code)  # 2: the user's to fix (ConfigError); 1: otherwise


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")


@app.command()
def ingest(
    sources: Annotated[list[str], typer.Argument(help="Folders or files to ingest.")],
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
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Discover, extract, chunk, embed and index files. Re-running resumes.

    Example: gristmill ingest ~/papers --collection papers --include '*.pdf'
    """
    if not dry_run:
        _start_workers_early()
    with _kb(home, embedder, database, create=True, workers=workers,
             ocr_lang=ocr_lang, include_vendored=include_vendored or None) as kb:
        with TerminalProgress(err, embedding=kb.settings.embedder != "none") as progress:
            report = kb.ingest(sources, collection=collection, include=include or (),
                               exclude=exclude or (), max_files=max_files,
                               retry_failed=retry_failed, dry_run=dry_run,
                               on_progress=None if json_out else progress)
        _finish_run(report, json_out)


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
    items = report.items
    timings = report.timings
    _say(
        out, "Collection ", (str(report.collection), "bold"), f": discovered {d.seen} files "
        f"({d.new} new, {d.changed} changed, {d.unchanged} unchanged, {d.removed} removed"
        f"{f', {d.outdated} redone by newer extractors' if d.outdated else ''}) "
        f"in {format_duration(timings.get('discovery'))}.")
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
                  f"resume {report.job_id}` (or run the same ingest again).[/yellow]")
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
    home: Home = None, database: DatabaseOpt = None,
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

    with _kb(home, embedder, database, create=True, workers=workers,
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
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Search the knowledge base: BM25 and vectors fused, exact matches first.

    Example: gristmill search "how do leases expire" -k 5 --json
    """
    with _kb(home, embedder, database) as kb:
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
           embedder: EmbedderOpt = None) -> None:
    """Items by status and chunk counts, overall and per collection; running jobs and
    their write batcher (flushes, rows, flush and commit latency).

    Example: gristmill status --json
    """
    with _kb(home, embedder, database) as kb:
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
           embedder: EmbedderOpt = None) -> None:
    """Failed and skipped items, grouped by the pattern of their reason.

    Example: gristmill errors --job 7 --json
    """
    with _kb(home, embedder, database) as kb:
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
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Re-queue items so the next ingest tries them again.

    Example: gristmill reset --failed && gristmill ingest ~/papers
    """
    if not (failed or skipped):
        err.print("Nothing to reset: pass --failed and/or --skipped.")
        raise typer.Exit(2)
    with _kb(home, embedder, database) as kb:
        if failed:
            n = kb.reset_failed(collection)
            out.print(f"Re-queued {n} failed item(s); run `gristmill ingest` on their source.")
        if skipped:
            n = kb.reset_skipped(collection)
            out.print(f"Re-queued {n} skipped file(s); run `gristmill ingest` on their source.")


@app.command()
def doctor(
    ocr_lang: Annotated[str | None, typer.Option(
        "--ocr-lang", help="OCR languages to check [env: GRISTMILL_OCR_LANG].",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Check this machine: home folder, database (SQLite or PostgreSQL), model, OCR,
    LibreOffice.

    Exits 1 when a required part is broken; a missing optional part (OCR, LibreOffice)
    is a warning naming the package to install.

    Example: gristmill doctor --ocr-lang eng+deu
    """
    from gristmill.config import Settings
    from gristmill.ops.doctor import run_checks

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             ocr_lang=ocr_lang)
    checks = run_checks(settings)
    if json_out:
        _print_json([check.to_dict() for check in checks])
    else:
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for check in checks:
            colour = colours[check.level]
            _say(out, (f"{check.level:>7}", colour), f"  {check.name}: {check.detail}")
    if any(check.level == "error" for check in checks):
        raise typer.Exit(1)


jobs_app = typer.Typer(help="Watch and steer ingest jobs (every ingest is one).\n\n"
                       "Example: gristmill jobs list --state running", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")
JobId = Annotated[int, typer.Argument(help="The job's id (see `gristmill jobs list`).")]


@jobs_app.command("list")
def jobs_list(
    state: Annotated[str | None, typer.Option(
        "--state", help="Only jobs in this state (running, paused, interrupted, ...).",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Newest N jobs.")] = 20,
    json_out: JsonOpt = False, home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """The latest jobs, newest first, with their state and progress.

    Example: gristmill jobs list --state running
    """
    with _kb(home, embedder, database) as kb:
        found = kb.jobs.recent(state, limit)
        if json_out:
            _print_json([job.to_dict() for job in found])
            return
        if not found:
            out.print("No jobs.")
            return
        # Sources wrap; on a narrow terminal chunks and items/s go first, then the
        # start time (`jobs show ID` has them all).
        columns = [Column("id", "right"), Column("state"), Column("collection"),
                   Column("sources", wraps=True), Column("done", "right"),
                   Column("failed", "right"), Column("chunks", "right", optional=1),
                   Column("items/s", "right", optional=1), Column("started", optional=2)]
        print_table(out, columns, [
            [str(job.id), job.state, job.spec.collection + (
                f" ({job.spec.kind})" if job.spec.kind != "ingest" else ""),
             ", ".join(job.spec.sources),
             f"{job.done:,}/{sum(job.items.values()):,}",
             f"{job.items.get('failed', 0):,}", f"{job.chunks:,}", f"{job.rate:.1f}",
             format_when(job.started_at, seconds=False)] for job in found])


@jobs_app.command("show")
def jobs_show(job_id: JobId, json_out: JsonOpt = False, home: Home = None,
              database: DatabaseOpt = None, embedder: EmbedderOpt = None) -> None:
    """One job: its spec, state and counters.

    Example: gristmill jobs show 7 --json
    """
    with _kb(home, embedder, database) as kb:
        job = kb.jobs.get(job_id)
        if json_out:
            _print_json(job.to_dict())
            return
        for line in job_lines(job.to_dict()):
            _say(out, line)


@jobs_app.command("pause")
def jobs_pause(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
               embedder: EmbedderOpt = None) -> None:
    """Pause a running job: no new items are started, those in flight finish, its
    driver exits and holds no worker.

    Example: gristmill jobs pause 7
    """
    with _kb(home, embedder, database) as kb:
        kb.jobs.pause(job_id)
        out.print(f"Job {job_id} is pausing: items in flight finish first. Resume it with "
                  f"`gristmill jobs resume {job_id}`.")


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
                embedder: EmbedderOpt = None) -> None:
    """Cancel a job: a running one stops within seconds (its workers are killed, its
    claims given back); what it finished stays in the knowledge base.

    Example: gristmill jobs cancel 7
    """
    with _kb(home, embedder, database) as kb:
        job = kb.jobs.cancel(job_id)
        out.print(f"Job {job_id} is {job.state}.")


@jobs_app.command("resume")
def jobs_resume(job_id: JobId, json_out: JsonOpt = False, home: Home = None,
                database: DatabaseOpt = None, embedder: EmbedderOpt = None) -> None:
    """Run a paused, interrupted or failed job again, in this terminal: its sources are
    walked afresh and only what is not finished is done.

    Example: gristmill jobs resume 7
    """
    _start_workers_early()
    with _kb(home, embedder, database) as kb:
        audio = kb.jobs.get(job_id).spec.kind == "audio"
        with TerminalProgress(err, embedding=kb.settings.embedder != "none",
                              audio=audio) as progress:
            report = kb.resume(job_id, on_progress=None if json_out else progress)
        _finish_run(report, json_out)


@jobs_app.command("run", hidden=True)
def jobs_run(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
             embedder: EmbedderOpt = None) -> None:
    """Claim a queued (or paused, interrupted, failed) job and run it to the end in this
    process, without a progress display: what `gristmill serve` starts for each job.

    Example: gristmill jobs run 7
    """
    _start_workers_early()
    with _kb(home, embedder, database) as kb:
        try:
            report = kb.resume(job_id)
        except GristmillError as exc:
            # A job that could not even start (its source is gone, the model is missing)
            # says so in its row rather than waiting in `queued`.
            kb.jobs.fail_queued(job_id, str(exc))
            raise
        _finish_run(report, json_out=False)


audio_app = typer.Typer(
    help="Scan recordings for sound events (laughter, with a YAMNet model) and list them. "
    "Set audio_model (or pass --model) first.\n\n"
    "Example: gristmill audio scan /srv/uploads --per-user --clips",
    no_args_is_help=True)
app.add_typer(audio_app, name="audio")
SinceOpt = Annotated[str | None, typer.Option(
    "--since", help="Only recordings modified on or after this date (2024-05-01, or "
    "2024-05-01T18:30; local time).", show_default=False)]


@audio_app.command("scan")
def audio_scan(
    root: Annotated[Path, typer.Argument(
        help="Folder of recordings; with --per-user, a folder of users' folders.")],
    per_user: Annotated[bool, typer.Option(
        "--per-user", help="Each first-level folder of ROOT is a user, scanned as a job "
        "of its own, one user after another.")] = False,
    user: Annotated[str | None, typer.Option(
        "--user", help="ROOT is this user's folder [default: ROOT's name].",
        show_default=False)] = None,
    model: Annotated[Path | None, typer.Option(
        "--model", help="The YAMNet .tflite or .onnx file [env: GRISTMILL_AUDIO_MODEL].",
        show_default=False)] = None,
    class_map: Annotated[Path | None, typer.Option(
        "--class-map", help="The model's class map CSV [default: beside the model].",
        show_default=False)] = None,
    threshold: Annotated[float | None, typer.Option(
        "--threshold", min=0.0, max=1.0, help="Score at which an event starts "
        "[env: GRISTMILL_AUDIO_THRESHOLD; default 0.1].", show_default=False)] = None,
    min_duration: Annotated[float | None, typer.Option(
        "--min-duration", min=0.0, help="Shorter events are dropped, in seconds "
        "[env: GRISTMILL_AUDIO_MIN_DURATION; default 0].", show_default=False)] = None,
    clips: Annotated[bool, typer.Option(
        "--clips", help="Cut a clip of each event into HOME/clips/USER/.")] = False,
    since: SinceOpt = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="If another scan is running, wait for it to end instead of "
        "exiting with status 75.")] = False,
    workers: WorkersOpt = None,
    collection: Annotated[str, typer.Option(
        "--collection", "-c", help="Collection the recordings are items of.")] = "audio",
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
) -> None:
    """Scan recordings for sound events, one user after another; store the events (and
    clips), per user, per recording, per model. Re-running scans only new and changed
    recordings (all of them again after a change of model or settings).

    Exits 75 when another scan of the same home is running (see --wait).

    Example: gristmill audio scan /srv/uploads --per-user --clips --since 2024-05-01
    """
    _start_workers_early()
    from gristmill.audio.scan import parse_since

    when = parse_since(since) if since else None

    def waiting(holder: int | None) -> None:
        who = f"process {holder}" if holder else "another process"
        _say(err, f"Another audio scan ({who}) is running; waiting for it to end.")

    with _kb(home, embedder, database, create=True, workers=workers, audio_model=model,
             audio_class_map=class_map, audio_threshold=threshold,
             audio_min_duration=min_duration) as kb:
        with TerminalProgress(err, audio=True) as progress:
            report = kb.scan_audio(
                root, per_user=per_user, user=user, collection=collection, clips=clips,
                since=when, wait=wait, on_progress=None if json_out else progress,
                on_user=None if json_out else lambda done: _say(err, _user_line(done)),
                on_wait=waiting)
        if json_out:
            _print_json(report.to_dict())
        else:
            _print_scan_summary(report)
    if report.stopped:
        raise typer.Exit(130)


def _user_line(user: Any) -> str:
    """One user's scan in a line: what was scanned and found, and the memory."""
    mb = 2**20
    again = f", {user.rescanned} for new settings" if user.rescanned else ""
    return (f"{user.user}: {user.recordings} recordings scanned ({user.unchanged} "
            f"unchanged{again}, {user.failed} failed, {user.skipped} skipped), "
            f"{format_duration(user.audio_seconds)} of audio at "
            f"{user.realtime_factor:.0f}x real time, {user.events} events; memory "
            f"{user.rss_before / mb:.0f} MB before, {user.rss_after / mb:.0f} MB after "
            f"(peak {user.rss_peak / mb:.0f} MB); job {user.job_id} {user.state}.")


def _print_scan_summary(report: Any) -> None:
    for user in report.users:
        _say(out, _user_line(user))
    if not report.users:
        _say(out, "No users' folders to scan.")
        return
    events = sum(u.events for u in report.users)
    _say(out, f"Scanned {sum(u.recordings for u in report.users)} recordings of "
         f"{len(report.users)} user(s) in {format_duration(report.seconds)}: {events} "
         f"events found. List them with `gristmill audio events`.")
    if any(u.failed or u.skipped for u in report.users):
        out.print("Run [bold]gristmill errors --collection "
                  f"{report.collection}[/bold] to see why recordings failed or were "
                  "skipped.", highlight=False)
    if report.state != "succeeded":
        _say(out, ("Scan not finished: ", "yellow"), f"a job is {report.state}; run the "
             "same scan again to carry on.")


@audio_app.command("events")
def audio_events(
    user: Annotated[str | None, typer.Option(
        "--user", help="Only this user's recordings.", show_default=False)] = None,
    since: SinceOpt = None,
    collection: CollectionOpt = None,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
) -> None:
    """The sound events found, by user, recording and time. JSON: a list of {user,
    source, start, end, label, score, clip} (seconds; score is the event's peak).

    Example: gristmill audio events --user alice --since 2024-05-01 --json
    """
    from gristmill.audio.scan import parse_since

    when = parse_since(since) if since else None
    with _kb(home, embedder, database) as kb:
        found = kb.audio_events(user=user, since=when, collection=collection)
        if json_out:
            _print_json([event.to_dict() for event in found])
            return
        if not found:
            out.print("No events.")
            return
        columns = [Column("user"), Column("recording", wraps=True), Column("start", "right"),
                   Column("end", "right"), Column("label"), Column("score", "right"),
                   Column("clip", wraps=True, optional=1)]
        print_table(out, columns, [
            [e.user, e.source, _clock(e.start), _clock(e.end), e.label, f"{e.score:.2f}",
             e.clip or "-"] for e in found])


@audio_app.command("schedule")
def audio_schedule(
    root: Annotated[Path, typer.Argument(
        help="Folder of recordings; with --per-user, a folder of users' folders.")],
    print_units: Annotated[bool, typer.Option(
        "--print", help="Print the units (nothing is installed: redirect them into "
        "their files, as the README shows).")] = False,
    per_user: Annotated[bool, typer.Option(
        "--per-user", help="Each first-level folder of ROOT is a user.")] = False,
    user: Annotated[str | None, typer.Option(
        "--user", help="ROOT is this user's folder.", show_default=False)] = None,
    at: Annotated[str, typer.Option("--at", help="Local time of day, HH:MM.")] = "02:30",
    system: Annotated[bool, typer.Option(
        "--system", help="Units for /etc/systemd/system (User= you) instead of "
        "systemctl --user.")] = False,
    unit: Annotated[str | None, typer.Option(
        "--unit", help="Print only this one, bare: service, timer or cron.",
        show_default=False)] = None,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
) -> None:
    """Print a systemd service and timer, and the equivalent cron line, that run
    `gristmill audio scan ROOT` every night with this installation, home and settings.

    Example: gristmill audio schedule /srv/uploads --per-user --print --unit timer
    """
    from gristmill.config import Settings
    from gristmill.ops.schedule import render, schedule_units

    if not print_units:
        _say(err, ("error:", "red"), " nothing is installed by this command: add --print "
             "and redirect what it prints into the unit files (see the README's "
             "'Nightly audio scans').")
        raise typer.Exit(2)
    if per_user and user is not None:
        _say(err, ("error:", "red"), " give --per-user or --user NAME, not both")
        raise typer.Exit(2)
    settings = Settings.load(home=home, embedder=embedder, database_url=database)
    units = schedule_units(settings, root, per_user=per_user, at=at, user=user,
                           system=system)
    sys.stdout.write(render(units, unit, system=system))


def _clock(seconds: float) -> str:
    """A time in a recording: ``1:02:03.4``, ``2:03.4``."""
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on (0: any free one).")] = 8000,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Serve the HTTP API (jobs, live events, search, health) until interrupted.

    Jobs run in processes of their own and survive a restart of the server. Set
    GRISTMILL_SOURCE_ROOTS to the folders jobs may read, and GRISTMILL_API_TOKEN to
    require a bearer token (needed to listen on anything but loopback).

    Example: GRISTMILL_SOURCE_ROOTS=~/docs gristmill serve --port 8000
    """
    from gristmill.api.security import is_loopback
    from gristmill.config import Settings

    settings = Settings.load(home=home, embedder=embedder, database_url=database)
    if not settings.has_api_tokens and not is_loopback(host):
        _say(err, ("error:", "red"), f" refusing to listen on {host} without a token: "
             "anyone who can reach it could read and ingest files. Set GRISTMILL_API_TOKEN "
             "(or add [[api_tokens]] to gristmill.toml: `gristmill token new`), or listen "
             "on 127.0.0.1.")
        raise typer.Exit(2)
    from gristmill.api import create_app
    from gristmill.api.server import serve as serve_api

    api = create_app(settings)
    serve_api(api, host, port, settings)  # uvicorn, with connection limits and timeouts


token_app = typer.Typer(help="API tokens for `gristmill serve`.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option("--name", help="Who will hold it (shown in logs).")],
    scope: Annotated[str, typer.Option(
        "--scope", help="read (GET routes) or admin (also starts and steers jobs).")
    ] = "read",
) -> None:
    """Make a random API token; print it once, and the gristmill.toml entry that lets
    the server accept it (only its SHA-256 is stored).

    Example: gristmill token new --name grafana --scope read
    """
    from gristmill.api.security import new_token

    if scope not in ("read", "admin"):
        _say(err, ("error:", "red"), f" --scope must be read or admin, not {scope!r}")
        raise typer.Exit(2)
    token, digest = new_token()
    err.print("Give this token to its holder; it is not stored anywhere:", highlight=False)
    sys.stdout.write(token + "\n")
    err.print(f"\nAdd to gristmill.toml (restart `gristmill serve` to apply):\n\n"
              f"[[api_tokens]]\nname = {json.dumps(name)}\nsha256 = \"{digest}\"\n"
              f"scope = \"{scope}\"", highlight=False, markup=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if argv is None:  # the process's own command line: the CLI owns the process
        _present_script_as_package_main()
    command: Callable[..., Any] = typer.main.get_command(app)
    command(args=argv, prog_name="gristmill")


def _present_script_as_package_main() -> None:
    """Keep worker processes from running the ``gristmill`` script again.

    pip's console script is the process's ``__main__``: a file without a module spec.
    multiprocessing (forkserver) recreates such a ``__main__`` in every worker it starts
    by running the file again, which imports the whole CLI once more: measured on 300
    PDFs, the first page began 0.22 s later than under ``python -m gristmill`` and every
    worker recycled after ``max_tasks_per_worker`` items left a core idle 0.3 s instead
    of 0.04 s. Workers need nothing from the script (they run
    :mod:`gristmill.runtime.worker`), and a package's ``__main__`` is what
    multiprocessing leaves alone, so the script is named for what it stands for.
    """
    script = sys.modules.get("__main__")
    if script is not None and getattr(script, "__spec__", None) is None:
        script.__spec__ = importlib.util.find_spec("gristmill.__main__")
