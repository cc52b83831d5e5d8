"""``gristmill deploy``: systemd units or crontab lines that run ``serve``, ``watch`` and
the nightly audio scan with this installation, home and settings.

Every unit is filled in from what is running now (:func:`runtime`): the ``gristmill``
executable of this installation (its virtual environment's), ``--home`` as an absolute
path, the folder whose ``gristmill.toml`` is in use as the working directory, and the env
file in use, named twice: ``EnvironmentFile=`` (so variables gristmill does not own, such
as ``OPENAI_API_KEY``, reach the process) and ``GRISTMILL_ENV_FILE`` (so gristmill reads
it itself, with dotenv's quoting and home-relative paths, and ``doctor`` can name it).
A move is: copy the archive and the env file, ``pip install gristmill``, ``gristmill
import``, ``gristmill deploy systemd --install``, ``gristmill doctor``.

The nightly audio units are :mod:`gristmill.ops.schedule`'s; this module holds the
pieces both write with.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from gristmill.config import ENV_FILE_VARIABLE
from gristmill.errors import ConfigError

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["SERVE", "UNIT_FOLDERS", "WATCH", "Deployment", "Runtime", "install",
           "render_cron", "render_systemd", "runtime", "unit_folder"]

SERVE = "gristmill-serve.service"
WATCH = "gristmill-watch.service"
#: Where unit files go: per user (``systemctl --user``) or system-wide.
UNIT_FOLDERS = {"user": "~/.config/systemd/user/", "system": "/etc/systemd/system/"}
_SYSTEMCTL_TIMEOUT = 60
_SYSTEMD_RUNNING = Path("/run/systemd/system")


@dataclass(frozen=True, slots=True)
class Runtime:
    """What a unit needs to run the gristmill that printed it.

    Attributes:
        command: the words that start this installation's ``gristmill``.
        home: the home, absolute.
        where: the working directory: the folder of the ``gristmill.toml`` in use when it
            is the current one, else the home.
        env_file: the env file in use, absolute, or None.
        notes: ``GRISTMILL_*`` variables set only in this shell (names, never values).
        network: whether the catalog is on a server (units then wait for the network).
    """

    command: tuple[str, ...]
    home: Path
    where: Path
    env_file: Path | None
    notes: tuple[str, ...]
    network: bool


@dataclass(frozen=True, slots=True)
class Deployment:
    """What to run: ``serve`` (on ``host``:``port``), ``watch`` of ``watch`` folders into
    ``collection``, and the nightly audio scan of ``audio`` (per user, or one ``user``),
    at ``at``."""

    serve: bool = False
    host: str = "127.0.0.1"
    port: int = 8000
    watch: tuple[Path, ...] = ()
    collection: str = "default"
    audio: Path | None = None
    per_user: bool = True
    user: str | None = None
    at: str = "02:30"
    system: bool = False


def runtime(settings: Settings) -> Runtime:
    """This installation, home and settings, as units run them."""
    home = Path(os.path.abspath(settings.home.expanduser()))
    env_file = settings.env_file
    here = Path.cwd()
    # ./gristmill.toml is read from the working directory: run where it is, so the unit
    # sees the settings this command saw; else in the home (whose own files it finds).
    where = here if (here / "gristmill.toml").is_file() or (
        env_file is not None and env_file == here / ".env") else home
    carried = {"GRISTMILL_HOME"} | ({ENV_FILE_VARIABLE} if env_file is not None else set())
    notes = tuple(sorted(name for name in os.environ
                         if name.startswith("GRISTMILL_") and name not in carried))
    return Runtime(tuple(_gristmill()), home, where, env_file, notes,
                   settings.database_url is not None)


def render_systemd(settings: Settings, plan: Deployment) -> dict[str, str]:
    """Every unit ``plan`` asks for, by file name.

    Raises:
        ConfigError: nothing to run, a watched or audio folder that is not a folder, or
            a bad ``at``.
    """
    run = runtime(settings)
    units: dict[str, str] = {}
    if plan.serve:
        units[SERVE] = _serve_service(run, plan)
    if plan.watch:
        units[WATCH] = _watch_service(run, plan)
    if plan.audio is not None:
        from gristmill.ops.schedule import SERVICE, TIMER, schedule_units

        audio = schedule_units(settings, plan.audio, per_user=plan.per_user, at=plan.at,
                               user=plan.user, system=plan.system)
        units[SERVICE], units[TIMER] = audio[SERVICE], audio[TIMER]
    if not units:
        raise ConfigError("nothing to deploy: add --serve, --watch PATH or --audio ROOT")
    return units


def render_cron(settings: Settings, plan: Deployment) -> str:
    """The crontab lines for ``plan``: ``watch`` and ``serve`` at ``@reboot``, the audio
    scan nightly (``crontab -e``, or ``crontab -l | cat - this | crontab -``).

    Raises:
        ConfigError: as :func:`render_systemd`.
    """
    if not (plan.serve or plan.watch or plan.audio is not None):
        raise ConfigError("nothing to deploy: add --serve, --watch PATH or --audio ROOT")
    run = runtime(settings)
    lines = ["# gristmill: printed by `gristmill deploy cron` on "
             f"{socket.gethostname()} (crontab -e)", *notes_comment(run)]
    if plan.serve:
        lines.append(_reboot_line(run, "serve", _serve_args(plan)))
    if plan.watch:
        lines.append(_reboot_line(run, "watch", _watch_args(plan)))
    if plan.audio is not None:
        from gristmill.ops.schedule import schedule_units

        audio = schedule_units(settings, plan.audio, per_user=plan.per_user, at=plan.at,
                               user=plan.user, system=plan.system)["cron"]
        lines += [line for line in audio.splitlines() if not line.startswith("#")]
    return "\n".join(lines) + "\n"


def unit_folder(system: bool, override: Path | None = None) -> Path:
    """Where :func:`install` writes: ``override``, ``/etc/systemd/system`` or the user's
    ``$XDG_CONFIG_HOME/systemd/user``."""
    if override is not None:
        return override
    if system:
        return Path(UNIT_FOLDERS["system"])
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config) / "systemd" / "user"


def install(units: dict[str, str], folder: Path, *, system: bool,
            start: bool = True) -> list[str]:
    """Write ``units`` into ``folder`` and, where systemctl exists and ``start``,
    reload systemd and enable and start them (timers rather than the services they
    start). Returns what was done, one line each.

    Raises:
        ConfigError: ``folder`` cannot be written (``--system`` needs root), or systemctl
            refused (its message included).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in units.items():
            path = folder / name
            temporary = path.with_name(f".{name}.tmp")
            temporary.write_text(text, encoding="utf-8")
            os.replace(temporary, path)  # a unit file is never seen half-written
    except PermissionError as exc:
        raise ConfigError(f"cannot write {exc.filename or folder}: run with sudo for "
                          "--system, or leave --system out for units of your own") from None
    done = [f"wrote {folder / name}" for name in units]
    systemctl = shutil.which("systemctl")
    if not start:
        return done
    if systemctl is None or not _SYSTEMD_RUNNING.is_dir():  # sd_booted()'s test
        return [*done, "systemd is not running here: nothing was started (on a machine "
                "with systemd, run this again, or systemctl daemon-reload and enable --now)"]
    scope = [] if system else ["--user"]
    timed = {name.removesuffix(".timer") for name in units if name.endswith(".timer")}
    started = [name for name in units
               if name.endswith(".timer") or name.removesuffix(".service") not in timed]
    for command in ([systemctl, *scope, "daemon-reload"],
                    [systemctl, *scope, "enable", "--now", *started]):
        done_ = subprocess.run(command, capture_output=True, text=True, check=False,
                               timeout=_SYSTEMCTL_TIMEOUT)
        if done_.returncode != 0:
            raise ConfigError(f"{' '.join(command[1:])} failed: "
                              f"{done_.stderr.strip() or done_.returncode}; the unit files "
                              f"are in {folder}")
        done.append(" ".join(["systemctl", *command[1:]]))
    return done


# --- the pieces every unit is made of (also gristmill.ops.schedule's) --------------


def service_head(name: str, printed_by: str, run: Runtime, description: str, *,
                 system: bool, started_by: str | None = None,
                 after: Sequence[str] = ()) -> list[str]:
    """A service's comments, ``[Unit]`` and the start of its ``[Service]``: who runs
    it, where, with which env file."""
    goes = f"# Goes in {UNIT_FOLDERS['system' if system else 'user']}" + (
        f"; started by {started_by}." if started_by else ".")
    lines = [f"# {name}: printed by `{printed_by}` on {socket.gethostname()}.", goes,
             *notes_comment(run), "[Unit]", f"Description={escape(description)}"]
    if system and run.network:  # a PostgreSQL catalog: a start at boot needs the net
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += [f"After={unit}" for unit in after]
    lines += ["", "[Service]"]
    return lines


def service_runs(run: Runtime, args: Sequence[str], *, system: bool) -> list[str]:
    """``User=``, ``WorkingDirectory=``, the env file and ``ExecStart=`` for
    ``gristmill ARGS --home HOME``."""
    lines = ([f"User={pwd.getpwuid(os.getuid()).pw_name}"] if system else
             ["# Runs as you; `loginctl enable-linger` runs it while you are logged out."])
    # A home not made yet is made by the command (its --home); a settings folder gone
    # missing is an error worth failing on.
    missing_ok = "-" if run.where == run.home else ""
    lines.append(f"WorkingDirectory={missing_ok}{escape(str(run.where))}")
    if run.env_file is not None:
        lines += [f"EnvironmentFile={escape(str(run.env_file))}",
                  f"Environment={exec_word(f'{ENV_FILE_VARIABLE}={run.env_file}')}"]
    command = [*run.command, *args, "--home", str(run.home)]
    lines += [f"ExecStart={' '.join(exec_word(word) for word in command)}",
              "# Progress lines reach the journal as they are written.",
              "Environment=PYTHONUNBUFFERED=1"]
    return lines


def notes_comment(run: Runtime) -> list[str]:
    """Comments naming the settings only this shell has (a unit does not inherit it)."""
    if not run.notes:
        return []
    into = run.env_file or run.where / ".env"
    return [f"# This shell sets {', '.join(run.notes)}; scheduled runs do not see the shell:",
            f"# put what they need in {into} or gristmill.toml there."]


def cron_command(run: Runtime, args: Sequence[str], log: Path,
                 polite: Sequence[str] = ()) -> str:
    """A shell command for a crontab line: make the log's folder, go to the working
    directory, name the env file, run ``gristmill ARGS --home HOME`` appending to
    ``log``; every ``%`` escaped (cron makes a bare one a newline)."""
    import shlex

    env = ([f"{ENV_FILE_VARIABLE}={shlex.quote(str(run.env_file))}"]
           if run.env_file is not None else [])
    # The log's folder first: a home not made yet is made here (the redirection needs it).
    words = [*polite, *run.command, *args, "--home", str(run.home)]
    line = (f"mkdir -p {shlex.quote(str(log.parent))} && cd {shlex.quote(str(run.where))} "
            f"&& {' '.join([*env, shlex.join(words)])} >> {shlex.quote(str(log))} 2>&1")
    return line.replace("%", chr(92) + "%")


def escape(value: str) -> str:
    """``value`` for a systemd setting: ``%`` specifiers written ``%%``."""
    return value.replace("%", "%%")


def exec_word(word: str) -> str:
    """One word of ``ExecStart=`` (or ``Environment=``): ``$`` and ``%`` doubled,
    quoted where it holds spaces, quotes, backslashes or ``;``."""
    word = escape(word).replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- serve and watch ---------------------------------------------------------------


def _serve_args(plan: Deployment) -> list[str]:
    return ["serve", "--host", plan.host, "--port", str(plan.port)]


def _watch_args(plan: Deployment) -> list[str]:
    folders = []
    for folder in plan.watch:
        folder = folder.expanduser().absolute()
        if not folder.exists():
            raise ConfigError(f"{folder} does not exist: give a folder to watch")
        folders.append(str(folder))
    return ["watch", *folders, "--collection", plan.collection]


def _serve_service(run: Runtime, plan: Deployment) -> str:
    lines = service_head(SERVE, "gristmill deploy systemd", run,
                         f"gristmill: HTTP API of {run.home}", system=plan.system,
                         after=["network.target"])
    lines += ["Type=exec", *service_runs(run, _serve_args(plan), system=plan.system),
              "# SIGTERM to the server only: its job processes run on, and the next",
              "# start picks them up.",
              "KillMode=process", "TimeoutStopSec=30",
              "Restart=on-failure", "RestartSec=10",
              "", "[Install]", f"WantedBy={_wanted_by(plan.system)}"]
    return "\n".join(lines) + "\n"


def _watch_service(run: Runtime, plan: Deployment) -> str:
    args = _watch_args(plan)
    lines = service_head(WATCH, "gristmill deploy systemd", run,
                         f"gristmill: keep {', '.join(args[1:-2])} searchable",
                         system=plan.system, after=["local-fs.target"])
    lines += ["Type=exec", *service_runs(run, args, system=plan.system),
              "# SIGTERM to gristmill only: it stops its own workers and hands their",
              "# items back (the default would kill the workers mid-item: crashes).",
              "KillMode=mixed", "TimeoutStopSec=60",
              "# Also while a watched folder is missing (watch exits 1 until it returns).",
              "Restart=on-failure", "RestartSec=30",
              "Nice=10", "IOSchedulingClass=idle",
              "", "[Install]", f"WantedBy={_wanted_by(plan.system)}"]
    return "\n".join(lines) + "\n"


def _wanted_by(system: bool) -> Literal["multi-user.target", "default.target"]:
    return "multi-user.target" if system else "default.target"


def _reboot_line(run: Runtime, name: str, args: list[str]) -> str:
    log = run.home / "logs" / f"{name}.log"
    return f"@reboot {cron_command(run, args, log)}"


def _gristmill() -> list[str]:
    # The executable of this very installation, so units run the same version with the
    # same packages: the script that started us, else the one beside this Python (a
    # venv's bin/), else whatever PATH has, else the module itself.
    started = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if started is not None and started.name == "gristmill" and started.is_file():
        return [os.path.abspath(started)]
    beside = Path(sys.executable).parent / "gristmill"
    if beside.is_file():
        return [str(beside)]
    found = shutil.which("gristmill")
    if found is not None:
        return [os.path.abspath(found)]
    return [os.path.abspath(sys.executable), "-m", "gristmill"]
