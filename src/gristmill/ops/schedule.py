"""The nightly audio scan as a systemd service + timer, or a cron line, for this machine.

:func:`schedule_units` fills the units in from what is running now
(:func:`gristmill.ops.deploy.runtime`): the ``gristmill`` executable of this
installation, the absolute home, the env file in use and the folder whose
``gristmill.toml`` is in use. So the units run the same installation against the same
home and configuration as the command that printed them; ``gristmill deploy systemd
--audio ROOT`` writes and installs the same units beside ``serve`` and ``watch``.

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

import re
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from gristmill.errors import ConfigError
from gristmill.ops.deploy import (
    UNIT_FOLDERS,
    Runtime,
    cron_command,
    notes_comment,
    runtime,
    service_head,
    service_runs,
)

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["SERVICE", "TIMER", "UNIT_FOLDERS", "render", "schedule_units"]

SERVICE = "gristmill-audio.service"
TIMER = "gristmill-audio.timer"

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
    run = runtime(settings)
    scan = ["audio", "scan", str(root)]
    if user is not None:
        scan += ["--user", user]
    elif per_user:
        scan.append("--per-user")
    return {
        SERVICE: _service(run, scan, root, system=system),
        TIMER: _timer(hour, minute),
        "cron": _cron(run, scan, hour, minute),
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


def _time_of_day(at: str) -> tuple[int, int]:
    match = _AT.match(at.strip())
    if match is None:
        raise ConfigError(f"--at {at!r} is not a time of day: give HH:MM, for example 02:30")
    return int(match[1]), int(match[2])


def _memory_max() -> str:
    cap = min(_MEMORY_CAP, int(psutil.virtual_memory().total * _MEMORY_SHARE))
    return f"{cap // 2**20}M" if cap < _MEMORY_CAP else f"{_MEMORY_CAP // 2**30}G"


# --- the texts ---------------------------------------------------------------------


def _service(run: Runtime, scan: list[str], root: Path, *, system: bool) -> str:
    lines = service_head(SERVICE, "gristmill audio schedule", run,
                         f"gristmill: audio scan of {root}", system=system, started_by=TIMER)
    lines += [
        "Type=oneshot",
        *service_runs(run, scan, system=system),
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


def _cron(run: Runtime, scan: list[str], hour: int, minute: int) -> str:
    # Second place to the machine's other work, as Nice= and IOSchedulingClass= give.
    polite = ["nice", "-n", "10"] + (["ionice", "-c", "3"] if shutil.which("ionice") else [])
    # No flock: the scan holds its own lock (a second one exits 75 with a message).
    line = cron_command(run, scan, run.home / "logs" / "audio-scan.log", polite)
    return "\n".join(["# gristmill: nightly audio scan (crontab -e; one line)",
                      *notes_comment(run), f"{minute} {hour} * * * {line}"]) + "\n"
