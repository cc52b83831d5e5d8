"""The nightly audio scan's systemd units and cron line (gristmill.ops.schedule)."""

from __future__ import annotations

import os
import pwd
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gristmill.config import Settings
from gristmill.errors import ConfigError
from gristmill.ops.schedule import SERVICE, TIMER, render, schedule_units

# Spaces, a systemd specifier character and a shell/systemd variable sign in every path.
AWKWARD = "night's 100% $HOME"


def _settings(home: Path) -> Settings:
    return Settings.load(home=home)


def _folders(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / f"recordings {AWKWARD}"
    (root / "alice").mkdir(parents=True)
    return root, tmp_path / f"home {AWKWARD}"


def _parse_unit(text: str) -> dict[str, dict[str, list[str]]]:
    """systemd's unit syntax: [Section] headers, Key=value lines, # or ; comments."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith(("#", ";")):
            continue
        header = re.fullmatch(r"\[([A-Za-z]+)\]", line)
        if header:
            current = sections.setdefault(header[1], {})
            continue
        key = re.fullmatch(r"([A-Za-z][A-Za-z0-9]*)=(.*)", line)
        assert key and current is not None, f"line {number} is not Key=value: {line!r}"
        current.setdefault(key[1], []).append(key[2])
    return sections


def _unescape(value: str) -> str:
    # systemd's %% and $$ are a literal % and $.
    return value.replace("%%", "%").replace("$$", "$")


def _exec_words(value: str) -> list[str]:
    # ExecStart= quoting is the shell's double-quote subset (C escapes inside quotes).
    return [_unescape(word) for word in shlex.split(value)]


def test_service_runs_this_installation_against_this_home(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The service runs `gristmill audio scan ROOT --per-user --home HOME`, every path
    absolute and quoted so that spaces, % and $ survive systemd's parsing."""
    monkeypatch.chdir(tmp_path)  # no .env or gristmill.toml here
    root, home = _folders(tmp_path)
    units = schedule_units(_settings(Path(home.name)), Path(root.name))
    service = _parse_unit(units[SERVICE])
    assert set(service) == {"Unit", "Service"}
    run = {key: values[-1] for key, values in service["Service"].items()}
    words = _exec_words(run["ExecStart"])
    assert words[1:] == ["audio", "scan", str(root), "--per-user", "--home", str(home)]
    assert Path(words[0]).is_absolute() and os.access(words[0], os.X_OK)
    assert Path(words[0]).name == "gristmill"
    assert run["Type"] == "oneshot"
    # No settings files where it was printed: it runs in the home (made by the scan).
    assert _unescape(run["WorkingDirectory"]) == f"-{home}"
    assert "EnvironmentFile" not in run and "User" not in run  # a per-user unit
    assert (run["Nice"], run["IOSchedulingClass"]) == ("10", "idle")
    assert re.fullmatch(r"\d+[MG]", run["MemoryMax"])
    assert run["SuccessExitStatus"] == "75"  # another scan held the lock
    assert str(root) in _unescape(service["Unit"]["Description"][0])


def test_timer_fires_nightly_and_catches_up_a_missed_night(tmp_path: Path) -> None:
    """OnCalendar at the given time, Persistent, a random delay, wanted by timers.target."""
    root, home = _folders(tmp_path)
    timer = _parse_unit(schedule_units(_settings(home), root, at="7:05")[TIMER])
    assert timer["Timer"] == {"OnCalendar": ["*-*-* 07:05:00"], "Persistent": ["true"],
                              "RandomizedDelaySec": ["10min"]}
    assert timer["Install"] == {"WantedBy": ["timers.target"]}


def test_cron_line_runs_the_same_command_and_logs_to_the_home(tmp_path: Path) -> None:
    """Five time fields, then a shell command that makes the log folder, runs the scan
    niced and appends its output to HOME/logs/audio-scan.log."""
    root, home = _folders(tmp_path)
    cron = schedule_units(_settings(home), root, at="02:30")["cron"]
    entries = [line for line in cron.splitlines() if not line.startswith("#")]
    assert len(entries) == 1
    fields = entries[0].split(" ", 5)
    assert fields[:5] == ["30", "2", "*", "*", "*"]
    # cron turns a bare % into a newline: every % in the command is escaped.
    assert re.search(r"(?<!\\)%", fields[5]) is None
    command = shlex.split(fields[5].replace("\\%", "%"))
    scan = command.index("audio") - 1
    assert command[scan + 1:scan + 8] == ["audio", "scan", str(root), "--per-user", "--home",
                                          str(home), ">>"]
    assert command[scan + 8] == str(home / "logs" / "audio-scan.log")
    nice = command.index("nice")
    assert command[nice:nice + 3] == ["nice", "-n", "10"]


def test_cron_command_runs_in_sh_with_awkward_paths(tmp_path: Path) -> None:
    """The cron command, run by /bin/sh as cron would, finds every path and writes the
    scan's output to the home's log (which it creates)."""
    root, home = _folders(tmp_path)
    cron = schedule_units(_settings(home), root)["cron"].splitlines()[-1]
    command = cron.split(" ", 5)[5].replace("\\%", "%")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    done = subprocess.run(["/bin/sh", "-c", command], env=env, timeout=120, check=False)
    log = home / "logs" / "audio-scan.log"
    # 126/127: sh could not run the executable; a missing log: the cd failed.
    assert done.returncode not in (126, 127) and log.is_file()
    assert log.stat().st_size > 0  # the scan's own words, whatever they were


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("system", [False, True], ids=["per-user", "system-wide"])
def test_systemd_accepts_the_units(tmp_path: Path, system: bool) -> None:
    """`systemd-analyze verify` finds nothing wrong or unknown in either unit."""
    root, home = _folders(tmp_path)
    home.mkdir()
    units = schedule_units(_settings(home), root, system=system)
    folder = tmp_path / "units"
    folder.mkdir()
    for name in (SERVICE, TIMER):
        (folder / name).write_text(units[name], encoding="utf-8")
    # System mode: the user manager cannot start without a login session here, and the
    # per-user service differs only in lacking User=.
    done = subprocess.run(["systemd-analyze", "verify", str(folder / SERVICE),
                           str(folder / TIMER)], capture_output=True, text=True, timeout=60)
    ours = [line for line in done.stderr.splitlines() if "gristmill-audio" in line
            or str(folder) in line]
    assert done.returncode == 0 and not ours, done.stderr


def test_system_wide_units_run_as_the_current_user(tmp_path: Path) -> None:
    """--system units name User= (the one printing them); per-user units cannot."""
    root, home = _folders(tmp_path)
    service = _parse_unit(schedule_units(_settings(home), root, system=True)[SERVICE])
    assert service["Service"]["User"] == [pwd.getpwuid(os.getuid()).pw_name]


def test_one_user_or_each_user(tmp_path: Path) -> None:
    """`user` scans ROOT as that user's folder (--user NAME); per_user=False neither."""
    root, home = _folders(tmp_path)

    def words(user: str | None = None, per_user: bool = True) -> list[str]:
        units = schedule_units(_settings(home), root, user=user, per_user=per_user)
        return _exec_words(_parse_unit(units[SERVICE])["Service"]["ExecStart"][0])

    assert words(user="alice")[4:6] == ["--user", "alice"]
    assert "--per-user" not in words(user="alice")
    assert words(per_user=False)[4:] == ["--home", str(home)]


def test_settings_files_where_it_is_printed_are_used(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gristmill reads .env and gristmill.toml from its working directory: the units run
    where they are (EnvironmentFile= for .env), and cron cds there."""
    root, home = _folders(tmp_path)
    config = tmp_path / f"config {AWKWARD}"
    config.mkdir()
    (config / ".env").write_text("GRISTMILL_EMBEDDER=none\n", encoding="utf-8")
    monkeypatch.chdir(config)
    units = schedule_units(_settings(home), root)
    run = _parse_unit(units[SERVICE])["Service"]
    assert _unescape(run["WorkingDirectory"][0]) == str(config)
    assert _unescape(run["EnvironmentFile"][0]) == str(config / ".env")
    command = shlex.split(units["cron"].splitlines()[-1].split(" ", 5)[5].replace("\\%", "%"))
    assert command[command.index("cd") + 1] == str(config)


def test_shell_only_settings_are_named_not_carried(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GRISTMILL_* variable of this shell is named in a comment (never its value): a
    timer does not inherit the shell."""
    root, home = _folders(tmp_path)
    monkeypatch.setenv("GRISTMILL_DATABASE_URL", "postgresql://u:secret@db/x")
    units = schedule_units(_settings(home), root, system=True)
    for text in (units[SERVICE], units["cron"]):
        assert "GRISTMILL_DATABASE_URL" in text and "secret" not in text
    # A PostgreSQL catalog: a run caught up at boot waits for the network.
    assert _parse_unit(units[SERVICE])["Unit"]["After"] == ["network-online.target"]


def test_print_shows_all_or_one_bare(tmp_path: Path) -> None:
    """render() shows every unit under a header naming its file; one unit bare."""
    root, home = _folders(tmp_path)
    units = schedule_units(_settings(home), root)
    everything = render(units)
    assert "~/.config/systemd/user/gristmill-audio.timer" in everything
    assert "systemctl --user daemon-reload" in everything
    assert all(text in everything for text in units.values())
    assert "/etc/systemd/system/" in render(units, system=True)
    assert render(units, "service") == units[SERVICE]
    assert render(units, "cron") == units["cron"]
    with pytest.raises(ConfigError, match="choose service, timer or cron"):
        render(units, "socket")


@pytest.mark.parametrize("at", ["24:00", "2:60", "2.30", "nightly", ""])
def test_bad_time_of_day_is_a_config_error(tmp_path: Path, at: str) -> None:
    """--at takes HH:MM and says so."""
    root, home = _folders(tmp_path)
    with pytest.raises(ConfigError, match="HH:MM"):
        schedule_units(_settings(home), root, at=at)


def test_missing_root_is_a_config_error(tmp_path: Path) -> None:
    """A root that is not a folder is refused before any unit is written."""
    with pytest.raises(ConfigError, match="is not a folder"):
        schedule_units(_settings(tmp_path / "home"), tmp_path / "nowhere")
