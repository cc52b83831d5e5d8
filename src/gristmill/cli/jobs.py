"""``gristmill jobs``: list, show, pause, resume and cancel ingest jobs."""

from __future__ import annotations

from typing import Annotated

import typer

from gristmill.cli._shared import (
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    Home,
    JsonOpt,
    _kb,
    _print_json,
    _say,
    _start_workers_early,
    app,
    err,
    out,
)
from gristmill.cli.knowledge import _finish_run
from gristmill.display import Column, format_when, job_lines, print_table
from gristmill.errors import GristmillError
from gristmill.progress import TerminalProgress

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
    env_file: EnvFileOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """The latest jobs, newest first, with their state and progress.

    Example: gristmill jobs list --state running
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
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
              env_file: EnvFileOpt = None, database: DatabaseOpt = None,
              embedder: EmbedderOpt = None) -> None:
    """One job: its spec, state and counters.

    Example: gristmill jobs show 7 --json
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        job = kb.jobs.get(job_id)
        if json_out:
            _print_json(job.to_dict())
            return
        for line in job_lines(job.to_dict()):
            _say(out, line)


@jobs_app.command("pause")
def jobs_pause(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
               env_file: EnvFileOpt = None,
               embedder: EmbedderOpt = None) -> None:
    """Pause a running job: no new items are started, those in flight finish, its
    driver exits and holds no worker.

    Example: gristmill jobs pause 7
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        kb.jobs.pause(job_id)
        out.print(f"Job {job_id} is pausing: items in flight finish first. Resume it with "
                  f"`gristmill jobs resume {job_id}`.")


@jobs_app.command("cancel")
def jobs_cancel(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
                env_file: EnvFileOpt = None,
                embedder: EmbedderOpt = None) -> None:
    """Cancel a job: a running one stops within seconds (its workers are killed, its
    claims given back); what it finished stays in the knowledge base.

    Example: gristmill jobs cancel 7
    """
    with _kb(home, embedder, database, env_file=env_file) as kb:
        job = kb.jobs.cancel(job_id)
        out.print(f"Job {job_id} is {job.state}.")


@jobs_app.command("resume")
def jobs_resume(job_id: JobId, json_out: JsonOpt = False, home: Home = None,
                env_file: EnvFileOpt = None, database: DatabaseOpt = None,
              embedder: EmbedderOpt = None) -> None:
    """Run a paused, interrupted or failed job again, in this terminal: its sources are
    walked afresh and only what is not finished is done.

    Example: gristmill jobs resume 7
    """
    _start_workers_early()
    with _kb(home, embedder, database, env_file=env_file) as kb:
        audio = kb.jobs.get(job_id).spec.kind == "audio"
        with TerminalProgress(err, embedding=kb.settings.embedder != "none",
                              audio=audio) as progress:
            report = kb.resume(job_id, on_progress=None if json_out else progress)
        _finish_run(report, json_out)


@jobs_app.command("run", hidden=True)
def jobs_run(job_id: JobId, home: Home = None, database: DatabaseOpt = None,
             env_file: EnvFileOpt = None,
             embedder: EmbedderOpt = None) -> None:
    """Claim a queued (or paused, interrupted, failed) job and run it to the end in this
    process, without a progress display: what `gristmill serve` starts for each job.

    Example: gristmill jobs run 7
    """
    _start_workers_early()
    with _kb(home, embedder, database, env_file=env_file) as kb:
        try:
            report = kb.resume(job_id)
        except GristmillError as exc:
            # A job that could not even start (its source is gone, the model is missing)
            # says so in its row rather than waiting in `queued`.
            kb.jobs.fail_queued(job_id, str(exc))
            raise
        _finish_run(report, json_out=False)


