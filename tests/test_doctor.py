"""``gristmill doctor``'s audio checks: the model file and the packages a scan needs.

They run only where ``audio_model`` is set; then a missing, corrupt or mismatched model,
or a missing package, is an error (doctor exits 1). The fixture ONNX model
(``tests/audio/fixture_model.py``) runs everywhere; the real YAMNet check skips when
``../shared/models/yamnet`` is absent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from audio.fixture_model import build_fixture_model, write_class_map
from gristmill.config import Settings
from gristmill.ops.doctor import Check, run_checks
from process_tools import env_for, gristmill

REPO_ROOT = Path(__file__).resolve().parents[1]
YAMNET = REPO_ROOT.parent / "shared" / "models" / "yamnet" / "yamnet.tflite"
AUDIO = ("audio", "audio model")


@pytest.fixture(scope="module")
def fixture_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture ONNX model with its class map beside it (``<stem>_class_map.csv``)."""
    folder = tmp_path_factory.mktemp("doctor_model")
    model = build_fixture_model(folder / "fixture.onnx")
    write_class_map(folder / "fixture_class_map.csv")
    return model


def _audio_checks(tmp_path: Path, **audio: Any) -> dict[str, Check]:
    checks = run_checks(Settings.load(home=tmp_path / "home", embedder="none", **audio))
    return {check.name: check for check in checks if check.name in AUDIO}


def test_no_audio_checks_without_an_audio_model(tmp_path: Path) -> None:
    """Audio is optional: with no audio_model, doctor says nothing about it."""
    assert _audio_checks(tmp_path) == {}


def test_a_working_model_is_described(tmp_path: Path, fixture_model: Path) -> None:
    """A loadable model: its runtime, sha256, shapes and class count, the classes it will
    detect; the packages with their versions. The same figures in --json's facts."""
    checks = _audio_checks(tmp_path, audio_model=fixture_model)
    assert [c.level for c in checks.values()] == ["ok", "ok"], checks
    assert "PyAV" in checks["audio"].detail and "onnxruntime" in checks["audio"].detail
    model = checks["audio model"]
    sha256 = hashlib.sha256(fixture_model.read_bytes()).hexdigest()
    assert f"sha256 {sha256}" in model.detail
    assert "input [N]" in model.detail and "scores [N, 521]" in model.detail
    assert "521 classes" in model.detail and model.detail.endswith("detecting Laughter")
    facts = json.loads(json.dumps(model.to_dict()))["facts"]
    assert facts["sha256"] == sha256 and facts["runtime"] == "onnx"
    assert facts["input_shape"] == [None] and facts["output_shapes"]["scores"] == [None, 521]
    assert facts["classes"] == 521 and facts["detecting"][0] == "Laughter"
    assert "av" in checks["audio"].to_dict()["facts"]


def test_a_missing_model_is_an_error(tmp_path: Path) -> None:
    """A configured model that is not there: an error saying where to get YAMNet."""
    checks = _audio_checks(tmp_path, audio_model=tmp_path / "yamnet.tflite")
    assert checks["audio model"].level == "error"
    assert "no audio model at" in checks["audio model"].detail
    assert "yamnet" in checks["audio model"].detail.lower()


@pytest.mark.parametrize(("name", "said"), [("broken.onnx", "cannot load"),
                                            ("broken.tflite", "not a TFLite model")])
def test_a_corrupt_model_is_an_error(tmp_path: Path, fixture_model: Path, name: str,
                                     said: str) -> None:
    """A file that is not a model (or a truncated one) fails to load: an error."""
    broken = tmp_path / name
    broken.write_bytes(fixture_model.read_bytes()[:200])
    write_class_map(tmp_path / f"{broken.stem}_class_map.csv")
    checks = _audio_checks(tmp_path, audio_model=broken)
    assert checks["audio model"].level == "error"
    assert said in checks["audio model"].detail


def test_a_class_map_of_another_size_is_an_error(tmp_path: Path, fixture_model: Path) -> None:
    """A configured class map whose class count the model's scores do not have."""
    other = write_class_map(tmp_path / "other.csv", classes=100)
    checks = _audio_checks(tmp_path, audio_model=fixture_model, audio_class_map=other)
    assert checks["audio model"].level == "error"
    assert "100 classes" in checks["audio model"].detail


def test_classes_the_model_lacks_are_an_error(tmp_path: Path, fixture_model: Path) -> None:
    """audio_classes naming a class the class map lacks: an error naming the setting."""
    checks = _audio_checks(tmp_path, audio_model=fixture_model,
                           audio_classes=["Laughter", "Guffaw"])
    detail = checks["audio model"].detail
    assert checks["audio model"].level == "error"
    assert "'Guffaw'" in detail and "audio_classes" in detail
    beyond = _audio_checks(tmp_path, audio_model=fixture_model, audio_classes=["600"])
    assert beyond["audio model"].level == "error" and "no class 600" in beyond["audio model"].detail


def test_classes_by_index_are_named(tmp_path: Path, fixture_model: Path) -> None:
    """A class given by index ("13", as in GRISTMILL_AUDIO_CLASSES) is shown by name."""
    checks = _audio_checks(tmp_path, audio_model=fixture_model, audio_classes=["13", "Giggle"])
    assert checks["audio model"].detail.endswith("detecting Laughter; Giggle")
    assert checks["audio model"].facts["detecting"] == ["Laughter", "Giggle"]


@pytest.mark.parametrize(("module", "model", "missing"), [
    ("av", "fixture.onnx", "PyAV"),
    ("ai_edge_litert.interpreter", "yamnet.tflite", "ai-edge-litert"),
])
def test_a_missing_package_names_the_install_command(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixture_model: Path, module: str,
        model: str, missing: str) -> None:
    """Without PyAV, or without ai-edge-litert for a .tflite model: an error with
    `pip install 'gristmill[audio]'`."""
    monkeypatch.setitem(sys.modules, module, None)  # what Python does for a missing one
    path = fixture_model if model == "fixture.onnx" else tmp_path / model
    checks = _audio_checks(tmp_path, audio_model=path)
    assert checks["audio"].level == "error"
    assert checks["audio"].detail.startswith(f"{missing} not installed")
    assert "pip install 'gristmill[audio]'" in checks["audio"].detail


@pytest.mark.skipif(
    not YAMNET.is_file() or importlib.util.find_spec("ai_edge_litert") is None,
    reason=f"needs the YAMNet model at {YAMNET} and ai-edge-litert (gristmill[audio])")
def test_the_real_yamnet_file(tmp_path: Path) -> None:
    """The YAMNet TFLite conversion: tflite runtime, waveform [N] in, 521 classes out."""
    checks = _audio_checks(tmp_path, audio_model=YAMNET)
    assert [c.level for c in checks.values()] == ["ok", "ok"], checks
    facts = checks["audio model"].facts
    assert facts["runtime"] == "tflite" and facts["input_shape"] == [None]
    assert facts["classes"] == 521 and "ai-edge-litert" in checks["audio"].facts


def test_cli_exits_1_when_the_audio_model_is_broken(tmp_path: Path,
                                                    fixture_model: Path) -> None:
    """`gristmill doctor` with GRISTMILL_AUDIO_MODEL: ok with the model, exit 1 and an
    error line without it; --json carries the same checks."""
    env = {**env_for(tmp_path / "home"), "PATH": str(tmp_path / "none")}
    good = gristmill("doctor", "--json", env={**env, "GRISTMILL_AUDIO_MODEL": str(fixture_model)})
    assert good.returncode == 0, good.stdout + good.stderr
    found = {c["name"]: c for c in json.loads(good.stdout)}
    assert found["audio model"]["level"] == "ok" and "sha256" in found["audio model"]["facts"]
    missing = tmp_path / "gone.tflite"
    bad = gristmill("doctor", env={**env, "GRISTMILL_AUDIO_MODEL": str(missing)})
    assert bad.returncode == 1
    assert "error  audio model: no audio model at" in bad.stdout


# -- the move checklist ----------------------------------------------------------------


def _checks(settings: Settings) -> dict[str, Check]:
    return {check.name: check for check in run_checks(settings)}


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty working folder, no inherited GRISTMILL_* settings but the test's
    database, and no unit files of this machine's user."""
    for name in list(os.environ):
        if name.startswith("GRISTMILL_") and name != "GRISTMILL_DATABASE_URL":
            monkeypatch.delenv(name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return work


def test_settings_check_names_the_env_file_and_what_is_not_default(
        tmp_path: Path, clean_env: Path) -> None:
    """Which env file was read and each setting that is not a default, with its source;
    with no env file, where it looked."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".env").write_text("GRISTMILL_WORKERS=3\n", encoding="utf-8")
    found = _checks(Settings.load(home=home, embedder="none"))["settings"]
    assert found.level == "ok"
    assert f"env file {home / '.env'}" in found.detail
    assert f"workers=3 (env file {home / '.env'})" in found.detail
    assert found.facts["settings"]["embedder"] == {"value": "none", "source": "flag"}
    (home / ".env").unlink()
    bare = _checks(Settings.load(home=home, embedder="none"))["settings"]
    assert f"no env file (looked for {clean_env / '.env'}, {home / '.env'})" in bare.detail
    assert bare.facts["env_file"] is None


def test_python_and_gristmill_versions_are_reported(tmp_path: Path, clean_env: Path) -> None:
    """The Python running gristmill, its executable and virtual environment."""
    found = _checks(Settings.load(home=tmp_path / "home", embedder="none"))["python"]
    assert found.level == "ok" and found.facts["executable"] == sys.executable
    assert found.facts["python"] == ".".join(map(str, sys.version_info[:3]))


def test_a_copied_home_finds_its_audio_model(tmp_path: Path, clean_env: Path,
                                             fixture_model: Path) -> None:
    """A home whose gristmill.toml names its model relative to the home, copied to a
    new path: doctor finds the model there."""
    old = tmp_path / "old home"
    (old / "models").mkdir(parents=True)
    shutil.copy(fixture_model, old / "models" / "fixture.onnx")
    shutil.copy(fixture_model.with_name("fixture_class_map.csv"), old / "models")
    (old / "gristmill.toml").write_text('audio_model = "models/fixture.onnx"\n',
                                        encoding="utf-8")
    new = tmp_path / "moved" / "home"
    shutil.copytree(old, new)
    shutil.rmtree(old)
    found = _checks(Settings.load(home=new, embedder="none"))
    assert found["audio model"].level == "ok", found["audio model"].detail
    assert found["audio model"].facts["path"] == str(new / "models" / "fixture.onnx")


@pytest.mark.sqlite_only("reads the SQLite file's schema version")
def test_schema_versions_against_this_gristmill(tmp_path: Path, clean_env: Path) -> None:
    """Current: ok; older: a warning (the next ingest migrates); newer: an error
    saying to upgrade."""
    import sqlite3

    from gristmill.catalog.migrations.sqlite import MIGRATIONS
    from gristmill.knowledge_base import KnowledgeBase

    home = tmp_path / "home"
    KnowledgeBase.open(home, embedder="none").close()
    settings = Settings.load(home=home, embedder="none")
    assert _checks(settings)["sqlite"].level == "ok"

    def schema(version: int) -> Check:
        with sqlite3.connect(home / "gristmill.db") as conn:
            conn.execute(f"PRAGMA user_version = {version}")
        return _checks(settings)["sqlite"]

    newer = schema(len(MIGRATIONS) + 1)
    assert newer.level == "error" and "pip install -U gristmill" in newer.detail
    older = schema(len(MIGRATIONS) - 1)
    assert older.level == "warning" and "migrates it" in older.detail


def test_unreadable_source_roots_are_an_error(tmp_path: Path, clean_env: Path) -> None:
    """A configured source root that is missing: an error (exit 1) naming it."""
    there = tmp_path / "docs"
    there.mkdir()
    settings = Settings.load(home=tmp_path / "home", embedder="none",
                             source_roots=[there, tmp_path / "gone"])
    found = _checks(settings)["source roots"]
    assert found.level == "error"
    assert f"{tmp_path / 'gone'} (missing)" in found.detail and str(there) not in found.detail


def test_folders_the_jobs_read_are_checked(tmp_path: Path, clean_env: Path) -> None:
    """The folders this knowledge base ingested from: a warning when one is gone (what
    a move leaves behind), ok while they are all readable."""
    from gristmill.knowledge_base import KnowledgeBase

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("the weir keeper's log", encoding="utf-8")
    home = tmp_path / "home"
    with KnowledgeBase.open(home, embedder="none", workers=1) as kb:
        kb.ingest([docs])
    settings = Settings.load(home=home, embedder="none")
    assert _checks(settings)["sources"].level == "ok"
    shutil.rmtree(docs)
    gone = _checks(settings)["sources"]
    assert gone.level == "warning" and f"{docs} (missing)" in gone.detail


def test_little_free_disk_is_a_warning(tmp_path: Path, clean_env: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Free space below FREE_FACTOR times the home's size: a warning with both sizes."""
    from gristmill.ops import doctor

    home = tmp_path / "home"
    home.mkdir()
    (home / "blob").write_bytes(os.urandom(1 << 16))
    settings = Settings.load(home=home, embedder="none")
    found = _checks(settings)["disk"]
    assert found.level == "ok" and found.facts["home_bytes"] >= 1 << 16
    # Far above free / size, however the free space moves while other work writes.
    monkeypatch.setattr(doctor, "FREE_FACTOR", 4 * found.facts["free_bytes"]
                        // found.facts["home_bytes"] + 1)
    tight = _checks(settings)["disk"]
    assert tight.level == "warning" and "less than" in tight.detail


def test_services_are_found_and_checked(tmp_path: Path, clean_env: Path) -> None:
    """Units `deploy systemd` installed are listed; one whose program is gone (a copied
    unit, another venv) is an error naming the fix; one for another home is a warning."""
    from gristmill.ops.deploy import Deployment, install, render_systemd, unit_folder

    home = tmp_path / "home"
    settings = Settings.load(home=home, embedder="none")
    assert "none installed" in _checks(settings)["services"].detail
    units = render_systemd(settings, Deployment(serve=True))
    folder = unit_folder(False)
    assert folder == tmp_path / "xdg" / "systemd" / "user"
    install(units, folder, system=False, start=False)
    found = _checks(settings)["services"]
    assert found.level == "ok" and "gristmill-serve.service" in found.detail
    other = Settings.load(home=tmp_path / "other", embedder="none")
    assert _checks(other)["services"].level == "warning"
    text = (folder / "gristmill-serve.service").read_text(encoding="utf-8")
    program = text.split("ExecStart=")[1].split()[0]
    (folder / "gristmill-serve.service").write_text(
        text.replace(program, str(tmp_path / "old-venv" / "bin" / "gristmill")),
        encoding="utf-8")
    broken = _checks(settings)["services"]
    assert broken.level == "error" and "gristmill deploy systemd --install" in broken.detail


@pytest.mark.skipif(not Path("/proc/sys/fs/inotify/max_user_watches").is_file(),
                    reason="no inotify (not Linux)")
def test_inotify_room_for_watched_folders(tmp_path: Path, clean_env: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """With a watch unit installed, its folders are counted against
    max_user_watches; too few watches is a warning with the sysctl command."""
    from gristmill.ops import doctor
    from gristmill.ops.deploy import Deployment, install, render_systemd, unit_folder

    notes = tmp_path / "notes"
    for n in range(5):
        (notes / f"d{n}").mkdir(parents=True)
    settings = Settings.load(home=tmp_path / "home", embedder="none")
    assert "inotify" not in _checks(settings)  # nothing watched: no check
    install(render_systemd(settings, Deployment(watch=(notes,))), unit_folder(False),
            system=False, start=False)
    found = _checks(settings)["inotify"]
    assert found.level == "ok" and found.facts["folders"] == 6
    small = tmp_path / "max_user_watches"
    small.write_text("8\n")
    monkeypatch.setattr(doctor, "_INOTIFY", small)
    tight = _checks(settings)["inotify"]
    assert tight.level == "warning" and "sudo sysctl fs.inotify.max_user_watches=" in tight.detail


def test_cli_env_file_flag_and_json_shape(tmp_path: Path) -> None:
    """`doctor --env-file F --json`: a list of {name, level, detail[, facts]}, the
    settings check naming F."""
    env_file = tmp_path / "gm.env"
    env_file.write_text("GRISTMILL_CHUNK_TOKENS=64\n", encoding="utf-8")
    env = {**env_for(tmp_path / "home"), "PATH": str(tmp_path / "none")}
    done = gristmill("doctor", "--json", "--env-file", str(env_file), env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    checks = json.loads(done.stdout)
    assert all(set(c) <= {"name", "level", "detail", "facts"} for c in checks)
    settings = next(c for c in checks if c["name"] == "settings")
    assert settings["facts"]["env_file"] == str(env_file)
    assert settings["facts"]["settings"]["chunk_tokens"]["value"] == 64
