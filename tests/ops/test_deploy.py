"""`gristmill deploy systemd|cron`: units and crontab lines for serve, watch and the
nightly audio scan, filled in for this installation, home, env file and user
(gristmill.ops.deploy)."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from gristmill.config import Settings
from gristmill.errors import ConfigError
from gristmill.ops.deploy import (
    SERVE,
    WATCH,
    Deployment,
    install,
    render_cron,
    render_systemd,
    unit_folder,
)
from gristmill.ops.schedule import SERVICE, TIMER
from process_tools import env_for, gristmill
from test_schedule import _exec_words, _parse_unit, _unescape

AWKWARD = "100% $HOME's"


@pytest.fixture
def place(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, no GRISTMILL_* variables, a private XDG_CONFIG_HOME."""
    for name in list(os.environ):
        if name.startswith("GRISTMILL_"):
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path


def _home_with_env_file(place: Path) -> tuple[Path, Path]:
    home = place / f"home {AWKWARD}"
    home.mkdir()
    env_file = home / ".env"
    env_file.write_text("GRISTMILL_EMBEDDER=none\nOPENAI_API_KEY=sk-test\n", encoding="utf-8")
    return home, env_file


def _service(text: str) -> dict[str, str]:
    return {key: values[-1] for key, values in _parse_unit(text)["Service"].items()}


def test_serve_and_watch_run_this_installation_with_the_env_file(place: Path) -> None:
    """Each service runs `gristmill serve|watch ... --home HOME` (absolute, quoted for
    systemd), loads the env file (EnvironmentFile=, and GRISTMILL_ENV_FILE for gristmill
    itself), restarts on failure and is wanted by default.target."""
    home, env_file = _home_with_env_file(place)
    notes = place / f"notes {AWKWARD}"
    notes.mkdir()
    settings = Settings.load(home=home)
    assert settings.env_file == env_file  # the home's .env, found through --home
    units = render_systemd(settings, Deployment(serve=True, port=8123, watch=(notes,),
                                                collection="notes"))
    assert set(units) == {SERVE, WATCH}
    serve, watch = _service(units[SERVE]), _service(units[WATCH])
    words = _exec_words(serve["ExecStart"])
    assert Path(words[0]).name == "gristmill" and os.access(words[0], os.X_OK)
    assert words[1:] == ["serve", "--host", "127.0.0.1", "--port", "8123", "--home",
                         str(home)]
    assert _exec_words(watch["ExecStart"])[1:] == [
        "watch", str(notes), "--collection", "notes", "--home", str(home)]
    for name, run in ((SERVE, serve), (WATCH, watch)):
        assert _unescape(run["EnvironmentFile"]) == str(env_file)
        environment = [_exec_words(v)[0] for v in _parse_unit(units[name])["Service"]
                       ["Environment"]]
        assert f"GRISTMILL_ENV_FILE={env_file}" in environment
        assert _unescape(run["WorkingDirectory"]) == f"-{home}"
        assert run["Restart"] == "on-failure" and "User" not in run
    assert watch["KillMode"] == "mixed"  # gristmill hands its workers' items back
    assert _parse_unit(units[SERVE])["Install"] == {"WantedBy": ["default.target"]}


def test_system_units_run_as_this_user_for_multi_user(place: Path) -> None:
    """--system: User= the current user, WantedBy=multi-user.target."""
    units = render_systemd(Settings.load(home=place / "home"),
                           Deployment(serve=True, system=True))
    assert _service(units[SERVE])["User"] == pwd.getpwuid(os.getuid()).pw_name
    assert _parse_unit(units[SERVE])["Install"] == {"WantedBy": ["multi-user.target"]}


def test_audio_units_are_the_schedules(place: Path) -> None:
    """--audio ROOT adds the nightly scan's service and timer, as `audio schedule`
    prints them."""
    root = place / "recordings"
    (root / "alice").mkdir(parents=True)
    units = render_systemd(Settings.load(home=place / "home"),
                           Deployment(audio=root, at="03:15"))
    assert set(units) == {SERVICE, TIMER}
    assert _parse_unit(units[TIMER])["Timer"]["OnCalendar"] == ["*-*-* 03:15:00"]
    assert _exec_words(_service(units[SERVICE])["ExecStart"])[1:5] == [
        "audio", "scan", str(root), "--per-user"]


def test_nothing_to_deploy_and_missing_folders_are_config_errors(place: Path) -> None:
    """No service chosen, or a watched folder that is not there: a ConfigError saying
    what to give."""
    settings = Settings.load(home=place / "home")
    with pytest.raises(ConfigError, match="add --serve, --watch PATH or --audio ROOT"):
        render_systemd(settings, Deployment())
    with pytest.raises(ConfigError, match="add --serve"):
        render_cron(settings, Deployment())
    with pytest.raises(ConfigError, match="does not exist"):
        render_systemd(settings, Deployment(watch=(place / "gone",)))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                    reason="systemd-analyze is not installed")
@pytest.mark.parametrize("system", [False, True], ids=["per-user", "system-wide"])
def test_systemd_accepts_the_units(place: Path, system: bool) -> None:
    """`systemd-analyze verify` finds nothing wrong or unknown in any unit."""
    home, _ = _home_with_env_file(place)
    notes = place / "notes"
    root = place / "recordings"
    for folder in (notes, root / "bob"):
        folder.mkdir(parents=True)
    units = render_systemd(Settings.load(home=home),
                           Deployment(serve=True, watch=(notes,), audio=root, system=system))
    folder = place / "units"
    install(units, folder, system=system, start=False)
    done = subprocess.run(["systemd-analyze", "verify", *(str(folder / n) for n in units)],
                          capture_output=True, text=True, timeout=60, check=False)
    ours = [line for line in done.stderr.splitlines()
            if "gristmill-" in line or str(folder) in line]
    assert done.returncode == 0 and not ours, done.stderr


def test_install_writes_the_units_where_systemd_reads_them(place: Path) -> None:
    """install() writes each unit into $XDG_CONFIG_HOME/systemd/user (or --unit-dir),
    whole, and says what it did; without a running systemd it starts nothing."""
    folder = unit_folder(False)
    assert folder == place / "xdg" / "systemd" / "user"
    units = render_systemd(Settings.load(home=place / "home"), Deployment(serve=True))
    done = install(units, folder, system=False)
    assert (folder / SERVE).read_text(encoding="utf-8") == units[SERVE]
    assert done[0] == f"wrote {folder / SERVE}"
    if not Path("/run/systemd/system").is_dir():
        assert "nothing was started" in done[-1]
    assert not list(folder.glob(".*.tmp"))  # no half-written file left beside them


def test_cron_lines_start_services_at_boot_and_the_scan_nightly(place: Path) -> None:
    """serve and watch at @reboot, appending to HOME/logs; the audio scan at its
    time; each line names the env file and runs in sh."""
    home, env_file = _home_with_env_file(place)
    notes = place / "notes"
    notes.mkdir()
    root = place / "recordings"
    (root / "ann").mkdir(parents=True)
    text = render_cron(Settings.load(home=home),
                       Deployment(serve=True, watch=(notes,), audio=root, at="01:05"))
    entries = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert [e.split(" ", 1)[0] for e in entries] == ["@reboot", "@reboot", "5"]
    for entry, name in zip(entries[:2], ("serve", "watch"), strict=True):
        command = shlex.split(entry.split(" ", 1)[1].replace("\\%", "%"))
        assert f"GRISTMILL_ENV_FILE={env_file}" in command
        assert command[command.index(name) - 1].endswith("gristmill")
        assert command[command.index(">>") + 1] == str(home / "logs" / f"{name}.log")
        assert command[command.index("--home") + 1] == str(home)
    assert entries[2].startswith("5 1 * * * ")
    for entry in entries:  # sh parses each (syntax only: -n)
        line = entry.split(" ", 1)[1] if entry.startswith("@") else entry.split(" ", 5)[5]
        sh = subprocess.run(["/bin/sh", "-n", "-c", line.replace("\\%", "%")],
                            capture_output=True, text=True, timeout=30, check=False)
        assert sh.returncode == 0, sh.stderr


def test_a_moved_home_gets_units_for_its_new_place(place: Path) -> None:
    """The move: copy the home (with its .env), then deploy there: the units name the
    new home and its env file, nothing of the old place."""
    old, _ = _home_with_env_file(place)
    new = place / "new machine" / "kb"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    units = render_systemd(Settings.load(home=new), Deployment(serve=True))
    assert str(old) not in units[SERVE]
    assert _unescape(_service(units[SERVE])["EnvironmentFile"]) == str(new / ".env")


def test_cli_prints_installs_and_defaults_to_serve(tmp_path: Path) -> None:
    """`deploy systemd` alone prints the serve unit and how to enable it; --unit-dir
    writes them; `deploy cron` prints crontab lines."""
    env = {**env_for(tmp_path / "home"), "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    env.pop("GRISTMILL_DATABASE_URL", None)
    printed = gristmill("deploy", "systemd", env=env)
    assert printed.returncode == 0, printed.stderr
    assert f"# ---- {tmp_path / 'xdg' / 'systemd' / 'user' / SERVE}" in printed.stdout
    assert "systemctl --user daemon-reload && systemctl --user enable --now " \
           f"{SERVE}" in printed.stdout
    notes = tmp_path / "notes"
    notes.mkdir()
    into = tmp_path / "units"
    done = gristmill("deploy", "systemd", "--watch", str(notes), "--unit-dir", str(into),
                     env=env)
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in into.iterdir()) == [WATCH]
    cron = gristmill("deploy", "cron", "--watch", str(notes), env=env)
    assert cron.returncode == 0 and "@reboot " in cron.stdout
    nothing = gristmill("deploy", "systemd", "--watch", str(tmp_path / "gone"), env=env)
    assert nothing.returncode == 2 and "does not exist" in nothing.stderr
