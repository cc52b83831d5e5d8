"""The commands about the machine a knowledge base runs on: doctor, config show, deploy."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gristmill.cli._shared import (
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    Home,
    JsonOpt,
    _print_json,
    _say,
    app,
    out,
)

if TYPE_CHECKING:
    from gristmill.ops.deploy import Deployment


@app.command()
def doctor(
    ocr_lang: Annotated[str | None, typer.Option(
        "--ocr-lang", help="OCR languages to check [env: GRISTMILL_OCR_LANG].",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Check this machine, and what a move breaks: the settings in force and where each
    came from, Python, the home's permissions and free disk, the database and its
    schema, the model, OCR, LibreOffice, audio, the source folders and remote sources
    (S3 credentials and bucket, Drive credentials), inotify room, and the installed
    services.

    Exits 1 when something a configured feature needs is missing; a missing optional
    part (OCR, LibreOffice) is a warning naming the package to install.

    Example: gristmill doctor --ocr-lang eng+deu
    """
    from gristmill.config import Settings
    from gristmill.ops.doctor import run_checks

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             ocr_lang=ocr_lang, env_file=env_file)
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


config_app = typer.Typer(help="The settings in force.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    json_out: JsonOpt = False,
    changed: Annotated[bool, typer.Option(
        "--changed", help="Only the settings that are not defaults.")] = False,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Print every setting, its value (secrets masked) and where it came from: flag,
    env GRISTMILL_X, env file PATH, a gristmill.toml's path, or default.

    Example: gristmill config show --changed
    """
    import json

    from gristmill.config import Settings

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    shown = [o for o in settings.origins() if not (changed and o.is_default)]
    if json_out:
        _print_json({
            "env_file": str(settings.env_file) if settings.env_file else None,
            "env_file_candidates": [str(p) for p in settings.env_file_candidates],
            "toml_files": [str(p) for p in settings.toml_files],
            "settings": [{"name": o.name, "value": o.value, "source": o.source}
                         for o in shown]})
        return
    looked = ", ".join(map(str, settings.env_file_candidates))
    sys.stdout.write(f"# env file: {settings.env_file or 'none'} (looked for: {looked})\n"
                     f"# gristmill.toml: "
                     f"{', '.join(map(str, settings.toml_files)) or 'none'}\n")
    width = max((len(o.name) for o in shown), default=0)
    for o in shown:
        # TOML-like values: a line can be pasted into gristmill.toml.
        value = json.dumps(o.value, ensure_ascii=False)
        sys.stdout.write(f"{o.name:<{width}} = {value}  # {o.source}\n")


deploy_app = typer.Typer(
    help="Run serve, watch and the nightly audio scan as services of this machine.",
    no_args_is_help=True)
app.add_typer(deploy_app, name="deploy")

ServeOpt = Annotated[bool, typer.Option(
    "--serve", help="Run `gristmill serve` (the default when nothing else is chosen).")]
HostOpt = Annotated[str, typer.Option("--host", help="serve: address to listen on.")]
PortOpt = Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="serve: port to listen on.")]
WatchOpt = Annotated[list[Path] | None, typer.Option(
    "--watch", help="Run `gristmill watch` on this folder (repeatable).",
    show_default=False)]
CollectionOpt = Annotated[str, typer.Option(
    "--collection", "-c", help="watch: the collection the folders go in.")]
AudioOpt = Annotated[Path | None, typer.Option(
    "--audio", help="Scan this folder of recordings every night (one sub-folder per "
    "user, unless --audio-user).", show_default=False)]
AudioUserOpt = Annotated[str | None, typer.Option(
    "--audio-user", help="--audio ROOT is this one user's folder.", show_default=False)]
AtOpt = Annotated[str, typer.Option("--at", help="audio: local time of day, HH:MM.")]
SystemOpt = Annotated[bool, typer.Option(
    "--system", help="System units (/etc/systemd/system, User= you) instead of "
    "systemctl --user ones.")]


def _plan(serve: bool, host: str, port: int, watch: list[Path] | None, collection: str,
          audio: Path | None, audio_user: str | None, at: str, system: bool) -> Deployment:
    from gristmill.ops.deploy import Deployment

    chosen = serve or bool(watch) or audio is not None
    return Deployment(serve=serve or not chosen, host=host, port=port,
                      watch=tuple(watch or ()), collection=collection, audio=audio,
                      per_user=audio_user is None, user=audio_user, at=at, system=system)


@deploy_app.command("systemd")
def deploy_systemd(
    serve: ServeOpt = False, host: HostOpt = "127.0.0.1", port: PortOpt = 8000,
    watch: WatchOpt = None, collection: CollectionOpt = "default",
    audio: AudioOpt = None, audio_user: AudioUserOpt = None, at: AtOpt = "02:30",
    system: SystemOpt = False,
    install: Annotated[bool, typer.Option(
        "--install", help="Write the units and enable and start them (systemctl "
        "daemon-reload, enable --now) instead of printing them.")] = False,
    unit_dir: Annotated[Path | None, typer.Option(
        "--unit-dir", help="--install: write the units here instead (nothing is "
        "started).", show_default=False)] = None,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Print (or --install) systemd units that run `serve`, `watch` and the nightly
    audio scan with this installation, home, env file and user.

    Example: gristmill deploy systemd --serve --watch ~/notes -c notes --install
    """
    from gristmill.config import Settings
    from gristmill.ops.deploy import install as install_units
    from gristmill.ops.deploy import render_systemd, unit_folder

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    plan = _plan(serve, host, port, watch, collection, audio, audio_user, at, system)
    units = render_systemd(settings, plan)
    if install or unit_dir is not None:
        folder = unit_folder(system, unit_dir)
        for line in install_units(units, folder, system=system, start=unit_dir is None):
            _say(out, line)
        return
    folder_name = str(unit_folder(system))
    for name, text in units.items():
        sys.stdout.write(f"# ---- {folder_name}/{name}\n{text}\n")
    manage = "sudo systemctl" if system else "systemctl --user"
    started = [n for n in units if n.endswith(".timer") or n.removesuffix(".service")
               + ".timer" not in units]
    sys.stdout.write(f"# ---- then: {manage} daemon-reload && {manage} enable --now "
                     f"{' '.join(started)}\n# (or run this again with --install)\n")


@deploy_app.command("cron")
def deploy_cron(
    serve: ServeOpt = False, host: HostOpt = "127.0.0.1", port: PortOpt = 8000,
    watch: WatchOpt = None, collection: CollectionOpt = "default",
    audio: AudioOpt = None, audio_user: AudioUserOpt = None, at: AtOpt = "02:30",
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None, env_file: EnvFileOpt = None,
) -> None:
    """Print crontab lines that run `serve` and `watch` at boot (@reboot) and the audio
    scan nightly, with this installation, home and env file.

    Example: (crontab -l; gristmill deploy cron --watch ~/notes -c notes) | crontab -
    """
    from gristmill.config import Settings
    from gristmill.ops.deploy import render_cron

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    plan = _plan(serve, host, port, watch, collection, audio, audio_user, at, False)
    sys.stdout.write(render_cron(settings, plan))
