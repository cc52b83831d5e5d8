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
