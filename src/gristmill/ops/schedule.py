"""The nightly audio scan as a systemd service + timer, or a cron line, for this machine.

:func:`schedule_units` fills the units in from what is running now: the ``gristmill``
executable of this installation, the absolute home, and the folder holding the settings
files (``.env``, ``gristmill.toml``), which gristmill reads from its working directory.
So the units run the same installation against the same home and configuration as the
command that printed them, and a move to another machine is copying the home and the
unit files (re-print them there when paths differ).

The CLI prints them (:func:`render`)::

    gristmill audio schedule ROOT [--per-user | --user NAME] [--at HH:MM] [--system]
        --print [--unit service|timer|cron]

``--print`` alone shows all three under a header naming where each goes; with
``--unit`` it prints that one bare, ready for ``> ~/.config/systemd/user/...``.

Overlapping runs: the scan itself holds ``<home>/run/audio-scan.lock``, so a scan
started while another runs (a manual one at 02:30, or cron next to a timer) exits with
status 75 and a message naming the holder; systemd never starts a timer's service twice.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from gristmill.errors import ConfigError

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["SERVICE", "TIMER", "UNIT_FOLDERS", "render", "schedule_units"]

SERVICE = "gristmill-audio.service"
TIMER = "gristmill-audio.timer"
#: Where the unit files go: per user (``systemctl --user``) or system-wide.
UNIT_FOLDERS = {"user": "~/.config/systemd/user/", "system": "/etc/systemd/system/"}

# Exit status of a scan that found another holding the home's audio-scan lock.
_LOCKED = 75
# The memory cap: the scan holds a model and one ~1-minute window per worker, whatever
# the recordings' length, so 3 GiB only stops a runaway -- inside the scan's own cgroup,
# where the kernel kills a worker whose item is redone next night, instead of letting a
# 4 GB VPS's OOM killer pick the database or sshd. On a smaller machine, 3/4 of its memory.
_MEMORY_CAP = 3 * 2**30
_MEMORY_SHARE = 0.75
# Spreads the start when many machines share one PostgreSQL or file server.
_RANDOM_DELAY = "10min"
_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


def schedule_units(settings: Settings, root: Path, *, per_user: bool = True,
                   at: str = "02:30", user: str | None = None,
                   system: bool = False) -> dict[str, str]:
    """The service, timer and cron line that run ``gristmill audio scan ROOT`` nightly.

    Args:
        settings: the settings in force (their home becomes ``--home``).
        root: the folder of recordings; with ``user``, that user's folder.
        per_user: scan each first-level folder of ``root`` as a user (``--per-user``);
            ignored when ``user`` is given.
        at: local time of day, ``HH:MM``.
        user: scan ``root`` as this one user's folder (``--user NAME``).
        system: units for ``/etc/systemd/system`` (with ``User=``, the current user)
            rather than for ``systemctl --user``.

    Returns:
        ``{"gristmill-audio.service": ..., "gristmill-audio.timer": ..., "cron": ...}``,
        each the whole text of that file (the cron entry is one line and its comments).

    Raises:
        ConfigError: ``at`` is not a time of day, or ``root`` is not a folder.
    """
    hour, minute = _time_of_day(at)
    root = root.absolute()
    if not root.is_dir():
        raise ConfigError(f"{root} is not a folder: give the folder holding the "
                          "recordings (one sub-folder per user with --per-user)")
    home = settings.home.expanduser().absolute()
    where, env_file = _settings_folder(settings, home)
    scan = ["audio", "scan", str(root)]
    if user is not None:
        scan += ["--user", user]
    elif per_user:
        scan.append("--per-user")
    scan += ["--home", str(home)]
    command = [*_gristmill(), *scan]
    notes = _unseen_variables()
    return {
        SERVICE: _service(command, where, env_file, home, root, notes, system=system,
                          network=settings.database_url is not None),
        TIMER: _timer(hour, minute),
        "cron": _cron(command, where, home, hour, minute, notes),
    }


def render(units: dict[str, str], unit: str | None = None, *, system: bool = False) -> str:
    """What ``gristmill audio schedule --print`` prints: every unit under a header
    naming its file and the commands that enable it (``system`` as given to
    :func:`schedule_units`), or only ``unit`` (``service``, ``timer``, ``cron`` or a
    file name), bare.

    Raises:
        ConfigError: ``unit`` names none of them.
    """
    if unit is not None:
        key = {"service": SERVICE, "timer": TIMER}.get(unit, unit)
        if key not in units:
            raise ConfigError(f"no unit {unit!r}: choose service, timer or cron")
        return units[key]
    folder = UNIT_FOLDERS["system" if system else "user"]
    manage = "systemctl" if system else "systemctl --user"
    parts = [f"# ---- {folder}{SERVICE}\n{units[SERVICE]}",
             f"# ---- {folder}{TIMER}\n{units[TIMER]}",
             f"# ---- then: {manage} daemon-reload && {manage} enable --now {TIMER}\n",
             f"# ---- or instead, with crontab -e:\n{units['cron']}"]
    return "\n".join(parts)


# --- what is running here ----------------------------------------------------------


def _time_of_day(at: str) -> tuple[int, int]:
    match = _AT.match(at.strip())
    if match is None:
        raise ConfigError(f"--at {at!r} is not a time of day: give HH:MM, for example 02:30")
    return int(match[1]), int(match[2])


def _gristmill() -> list[str]:
    # The executable of this very installation, so the timer runs the same version with
    # the same packages: the script that started us, else the one beside this Python
    # (a venv's bin/), else whatever PATH has, else the module itself.
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


def _settings_folder(settings: Settings, home: Path) -> tuple[Path, Path | None]:
    # gristmill reads .env and gristmill.toml from its working directory: run where they
    # are now, so the timer sees the settings this command saw; with neither, the home.
    config = type(settings).model_config
    env_name, toml_name = config.get("env_file"), config.get("toml_file")
    env_name = env_name if isinstance(env_name, str) else ".env"
    toml_name = toml_name if isinstance(toml_name, str) else "gristmill.toml"
    here = Path.cwd()
    where = here if any((here / n).is_file() for n in (env_name, toml_name)) else home
    env = where / env_name
    return where, env if env.is_file() else None


def _unseen_variables() -> list[str]:
    # GRISTMILL_* set in this shell only: a timer or cron does not inherit the shell, so
    # say which settings it would lose (names only: values may be secrets).
    return sorted(name for name in os.environ
                  if name.startswith("GRISTMILL_") and name != "GRISTMILL_HOME")


def _memory_max() -> str:
    cap = min(_MEMORY_CAP, int(psutil.virtual_memory().total * _MEMORY_SHARE))
    return f"{cap // 2**20}M" if cap < _MEMORY_CAP else f"{_MEMORY_CAP // 2**30}G"


def _note(notes: list[str], where: Path, env_file: Path | None) -> list[str]:
    if not notes:
        return []
    into = env_file or where / ".env"
    return [f"# This shell sets {', '.join(notes)}; scheduled runs do not see the shell:",
            f"# put what they need in {into} or gristmill.toml there."]


# --- the texts ---------------------------------------------------------------------


def _service(command: list[str], where: Path, env_file: Path | None, home: Path,
             root: Path, notes: list[str], *, system: bool, network: bool) -> str:
    lines = [f"# {SERVICE}: printed by `gristmill audio schedule` on {socket.gethostname()}.",
             f"# Goes in {UNIT_FOLDERS['system' if system else 'user']}; started by {TIMER}.",
             *_note(notes, where, env_file),
             "[Unit]",
             f"Description=gristmill: audio scan of {_escape(str(root))}"]
    if system and network:  # a PostgreSQL catalog: a run caught up at boot needs the net
        lines += ["Wants=network-online.target", "After=network-online.target"]
    lines += ["", "[Service]", "Type=oneshot"]
    if system:
        lines.append(f"User={pwd.getpwuid(os.getuid()).pw_name}")
    else:
        lines.append("# Runs as you; `loginctl enable-linger` runs it while you are "
                     "logged out.")
    # A home not made yet is made by the scan (its --home); a settings folder gone
    # missing is an error worth failing on.
    missing_ok = "-" if where == home else ""
    lines.append(f"WorkingDirectory={missing_ok}{_escape(str(where))}")
    if env_file is not None:
        lines.append(f"EnvironmentFile={_escape(str(env_file))}")
    lines += [
        f"ExecStart={' '.join(_exec_word(word) for word in command)}",
        "# Progress lines reach the journal as they are written.",
        "Environment=PYTHONUNBUFFERED=1",
        f"# {_LOCKED}: another scan of this home was running (the journal says which); it",
        "# does the work, so this run did not fail.",
        f"SuccessExitStatus={_LOCKED}",
        "# Second place to whatever else the machine does.",
        "Nice=10",
        "IOSchedulingClass=idle",
        "# A cap, not a size (a scan holds a model and ~1 min of audio a worker): a",
        "# runaway is killed in this unit's cgroup, its recording redone next night,",
        "# before the kernel's OOM killer picks the database or sshd.",
        f"MemoryMax={_memory_max()}",
        "# SIGTERM to gristmill only: it stops its workers and hands their recordings back.",
        "KillMode=mixed",
        "TimeoutStopSec=60",
    ]
    return "\n".join(lines) + "\n"


def _timer(hour: int, minute: int) -> str:
    return "\n".join([
        f"# {TIMER}: starts {SERVICE} every night.",
        "[Unit]",
        f"Description=gristmill: nightly audio scan at {hour:02d}:{minute:02d}",
        "",
        "[Timer]",
        f"OnCalendar=*-*-* {hour:02d}:{minute:02d}:00",
        "# A night missed while the machine was off runs at the next boot.",
        "Persistent=true",
        "# Machines sharing one database or file server do not all start at once.",
        f"RandomizedDelaySec={_RANDOM_DELAY}",
        "",
        "[Install]",
        "WantedBy=timers.target",
    ]) + "\n"


def _cron(command: list[str], where: Path, home: Path, hour: int, minute: int,
          notes: list[str]) -> str:
    log = home / "logs" / "audio-scan.log"
    # Second place to the machine's other work, as Nice= and IOSchedulingClass= give.
    polite = ["nice", "-n", "10"] + (["ionice", "-c", "3"] if shutil.which("ionice") else [])
    # No flock: the scan holds its own lock (a second one exits 75 with a message).
    # The log's folder first: a home not made yet is made here (the redirection needs it).
    line = (f"mkdir -p {shlex.quote(str(log.parent))} && cd {shlex.quote(str(where))} && "
            f"{shlex.join([*polite, *command])} >> {shlex.quote(str(log))} 2>&1")
    # cron turns an unescaped % into a newline.
    entry = f"{minute} {hour} * * * {line.replace('%', chr(92) + '%')}"
    return "\n".join(["# gristmill: nightly audio scan (crontab -e; one line)",
                      *_note(notes, where, None), entry]) + "\n"


def _escape(value: str) -> str:
    # systemd expands %-specifiers in most values; a literal % is written %%.
    return value.replace("%", "%%")


def _exec_word(word: str) -> str:
    # ExecStart= splits on whitespace, unquotes "..." (C escapes inside), expands
    # $VARIABLES ($$ is a literal $) and %-specifiers (%% is a literal %).
    word = _escape(word).replace("$", "$$")
    if word and not re.search(r"[\s\"'\\;]", word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'
