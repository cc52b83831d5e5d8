"""``gristmill audio``: scan recordings for sound events, list them, schedule scans."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gristmill.cli._shared import (
    CollectionOpt,
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    Home,
    JsonOpt,
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
    env_file: EnvFileOpt = None,
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

    with _kb(home, embedder, database, env_file=env_file,
             create=True, workers=workers, audio_model=model,
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
    model: Annotated[str | None, typer.Option(
        "--model", metavar="SHA256_PREFIX", show_default=False,
        help="The events found by this model (the first characters of its sha256), "
             "not those of the configured model or the latest scan.")] = None,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None, embedder: EmbedderOpt = None,
    env_file: EnvFileOpt = None,
) -> None:
    """The sound events found, by user, recording and time: of each recording, the scan
    by the configured model if there is one, else the most recent. JSON: a list of
    {user, source, start, end, label, score, clip} (seconds; score is the event's peak).

    Example: gristmill audio events --user alice --since 2024-05-01 --json
    """
    from gristmill.audio.scan import parse_since

    when = parse_since(since) if since else None
    with _kb(home, embedder, database, env_file=env_file) as kb:
        found = kb.audio_events(user=user, since=when, collection=collection, model=model)
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
    env_file: EnvFileOpt = None,
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
    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    units = schedule_units(settings, root, per_user=per_user, at=at, user=user,
                           system=system)
    sys.stdout.write(render(units, unit, system=system))


def _clock(seconds: float) -> str:
    """A time in a recording: ``1:02:03.4``, ``2:03.4``."""
    minutes, rest = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{rest:04.1f}" if hours else f"{minutes}:{rest:04.1f}"


