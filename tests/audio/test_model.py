"""AudioModel: loading, the row grid, windowed scores equal to whole-file scores, errors.

The fixture ONNX model (``fixture_model.py``) runs everywhere; the tests of the real
YAMNet TFLite file skip when ``../shared/models/yamnet`` (or ai-edge-litert) is absent.
"""

from __future__ import annotations

import hashlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from fixture_model import CONSTANT_SCORE, build_fixture_model, write_class_map
from onnx import TensorProto, helper
from sounds import noise, tone_bursts, write_audio

from gristmill.audio.decode import windows
from gristmill.audio.framing import OVERLAP, PATCH_HOP, PATCH_SPAN, SAMPLE_RATE
from gristmill.audio.model import AudioModel
from gristmill.errors import ModelError

REPO_ROOT = Path(__file__).resolve().parents[2]
YAMNET = REPO_ROOT.parent / "shared" / "models" / "yamnet" / "yamnet.tflite"
YAMNET_SHA256 = "f07e6366167b5e960f828084a79684e02a694ddefdb35307042439c14d010d26"
WINDOW = 10  # patches per decoding window in these tests: several windows per file
WINDOW_SAMPLES = (WINDOW - 1) * PATCH_HOP + PATCH_SPAN
WINDOW_STEP = WINDOW * PATCH_HOP


def expected_rows(samples: int) -> int:
    """YAMNet's row count: whole patches, plus a padded one for a tail none holds."""
    return 1 + int(np.ceil(max(0, samples - PATCH_SPAN) / PATCH_HOP))


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fixture_model")
    build_fixture_model(folder / "fixture.onnx")
    write_class_map(folder / "fixture_class_map.csv")
    return folder


@pytest.fixture(scope="module")
def model(fixture_dir: Path) -> AudioModel:
    return AudioModel.load(fixture_dir / "fixture.onnx")


def scores_by_window(model: AudioModel, path: Path, patches_per_window: int) -> np.ndarray:
    """The model's rows for ``path``, window by window, joined."""
    with windows(path, patches_per_window=patches_per_window) as stream:
        parts = [model.scores(window.samples) for window in stream]
    return np.concatenate(parts)


def decoded_whole(path: Path) -> np.ndarray:
    """All of ``path``'s 16 kHz samples, in one array (small test files only)."""
    with windows(path, patches_per_window=100_000) as stream:
        return np.concatenate([window.samples for window in stream])


# --- the fixture model ----------------------------------------------------------------


def test_fixture_model_loads_with_its_class_map(model: AudioModel, fixture_dir: Path) -> None:
    """An .onnx file runs on onnxruntime; its class map is found beside it."""
    digest = hashlib.sha256((fixture_dir / "fixture.onnx").read_bytes()).hexdigest()
    assert model.runtime == "onnx"
    assert model.sha256 == digest
    assert len(model.labels) == 521
    assert model.labels[13] == "Laughter" and model.labels[0] == "Speech"
    assert model.input_shape == (None,)
    assert model.output_shapes == {"scores": (None, 521), "embeddings": (None, 1024)}
    assert model.scores_output == "scores"


@pytest.mark.parametrize("samples", [1, 100, PATCH_SPAN - 1, PATCH_SPAN, PATCH_SPAN + 1,
                                     PATCH_SPAN + PATCH_HOP, PATCH_SPAN + PATCH_HOP + 1,
                                     WINDOW_SAMPLES, 60 * SAMPLE_RATE])
def test_rows_cover_every_sample(model: AudioModel, samples: int) -> None:
    """N samples give YAMNet's rows: whole patches plus one padded patch for the tail."""
    scores = model.scores(np.zeros(samples, dtype=np.float32))
    assert scores.shape == (expected_rows(samples), 521)
    assert scores.dtype == np.float32


def test_no_samples_no_rows(model: AudioModel) -> None:
    """An empty waveform has no patch to score."""
    assert model.scores(np.zeros(0, dtype=np.float32)).shape == (0, 521)


def test_tone_burst_scores_its_patches_only(model: AudioModel) -> None:
    """A 1 kHz burst at 10-14 s scores Laughter high in its patches, low elsewhere."""
    signal = tone_bursts(30.0, SAMPLE_RATE, [(10.0, 14.0)], frequency=1_000)
    scores = model.scores(signal)
    starts = np.arange(len(scores)) * PATCH_HOP / SAMPLE_RATE
    ends = starts + PATCH_SPAN / SAMPLE_RATE
    inside = (starts >= 10.0) & (ends <= 14.0)
    outside = (ends <= 10.0) | (starts >= 14.0)
    assert inside.sum() == 7 and outside.sum() == 51
    assert scores[inside, 13].min() > 0.99
    assert scores[outside, 13].max() < 0.01
    assert scores[:, [0, 15]].max() < 0.01  # Speech and Giggle listen to other bands
    assert np.allclose(np.delete(scores, [0, 13, 15], axis=1), CONSTANT_SCORE)


@pytest.mark.parametrize("samples", [
    100,                                     # shorter than a patch: one window
    2 * WINDOW_STEP + WINDOW_SAMPLES,        # whole windows, nothing left over
    3 * WINDOW_STEP + OVERLAP + 1,           # a last window of 7,921 samples: one padded patch
    3 * WINDOW_STEP + OVERLAP + PATCH_SPAN,  # a last window of 1.5 patches
    30 * SAMPLE_RATE + 123,
])
def test_windows_score_as_the_whole(model: AudioModel, tmp_path: Path, samples: int) -> None:
    """Rows of decoding windows joined end to end equal the whole waveform's rows."""
    signal = tone_bursts(samples / SAMPLE_RATE, SAMPLE_RATE, [(4.0, 5.5), (9.5, 12.0)],
                         background=0.02)
    path = write_audio(tmp_path / "day.wav", signal, SAMPLE_RATE)
    whole = decoded_whole(path)
    assert len(whole) == samples
    joined = scores_by_window(model, path, WINDOW)
    expected = model.scores(whole)
    assert joined.shape == expected.shape == (expected_rows(samples), 521)
    np.testing.assert_allclose(joined, expected, atol=1e-5, rtol=0)


def test_compressed_recording_windows_score_as_the_whole(model: AudioModel,
                                                         tmp_path: Path) -> None:
    """The same holds through a lossy codec and a resampler (44.1 kHz stereo MP3)."""
    signal = tone_bursts(40.0, 44_100, [(10.0, 14.0)], background=0.01)
    path = write_audio(tmp_path / "day.mp3", signal, 44_100, channels=2, format="mp3")
    joined = scores_by_window(model, path, WINDOW)
    np.testing.assert_allclose(joined, model.scores(decoded_whole(path)), atol=1e-5, rtol=0)
    starts = np.arange(len(joined)) * PATCH_HOP / SAMPLE_RATE
    inside = (starts >= 10.0) & (starts + PATCH_SPAN / SAMPLE_RATE <= 14.0)
    assert joined[inside, 13].min() > 0.99
    assert joined[starts >= 15.0, 13].max() < 0.01


def test_fixed_input_model_scores_patch_by_patch(fixture_dir: Path, model: AudioModel,
                                                 tmp_path: Path) -> None:
    """A model taking one patch ([1, 15600]) gives the rows a free-length model gives."""
    fixed = build_fixture_model(tmp_path / "fixed.onnx", fixed_input=True)
    one_patch = AudioModel.load(fixed, fixture_dir / "fixture_class_map.csv")
    assert one_patch.input_shape == (1, PATCH_SPAN)
    signal = tone_bursts(12.3, SAMPLE_RATE, [(3.0, 7.0)], background=0.02)
    np.testing.assert_allclose(one_patch.scores(signal), model.scores(signal),
                               atol=1e-5, rtol=0)


def test_threads_give_the_same_scores(fixture_dir: Path, model: AudioModel) -> None:
    """The thread count changes the speed, not the scores."""
    two = AudioModel.load(fixture_dir / "fixture.onnx", threads=2)
    signal = noise(20.0, SAMPLE_RATE, amplitude=0.3)
    np.testing.assert_allclose(two.scores(signal), model.scores(signal), atol=1e-5, rtol=0)


def test_class_map_named_yamnet_is_found_beside_any_model(fixture_dir: Path,
                                                          tmp_path: Path) -> None:
    """Beside a model not named yamnet, YAMNet's own class map file name is used."""
    model_file = tmp_path / "lite-model_yamnet.onnx"
    model_file.write_bytes((fixture_dir / "fixture.onnx").read_bytes())
    write_class_map(tmp_path / "yamnet_class_map.csv")
    assert AudioModel.load(model_file).labels[13] == "Laughter"


# --- errors: each says what to fix ------------------------------------------------------


def test_missing_model_says_where_to_get_one(tmp_path: Path) -> None:
    """A missing file names the setting and where the official YAMNet comes from."""
    with pytest.raises(ModelError, match=r"no audio model at .*audio_model.*google/yamnet"):
        AudioModel.load(tmp_path / "yamnet.tflite")


def test_text_named_tflite_is_refused(tmp_path: Path) -> None:
    """A file that is not a TFLite FlatBuffer is refused before the runtime sees it."""
    fake = tmp_path / "yamnet.tflite"
    fake.write_text("not a model\n")
    write_class_map(tmp_path / "yamnet_class_map.csv")
    with pytest.raises(ModelError, match=r"is not a TFLite model.*audio_model"):
        AudioModel.load(fake)


def test_corrupt_onnx_is_refused(tmp_path: Path) -> None:
    """A damaged .onnx file gives a ModelError naming it, not a runtime traceback."""
    fake = tmp_path / "yamnet.onnx"
    fake.write_bytes(b"\x08\x07garbage")
    write_class_map(tmp_path / "yamnet_class_map.csv")
    with pytest.raises(ModelError, match=r"cannot load .*yamnet.onnx as an ONNX model"):
        AudioModel.load(fake)


def test_unknown_format_is_refused(fixture_dir: Path, tmp_path: Path) -> None:
    """A model file must be .tflite or .onnx (or carry TFLite's identifier)."""
    other = tmp_path / "model.bin"
    other.write_bytes((fixture_dir / "fixture.onnx").read_bytes())
    with pytest.raises(ModelError, match=r"neither a \.tflite nor an \.onnx model"):
        AudioModel.load(other, fixture_dir / "fixture_class_map.csv")


def test_missing_class_map_names_the_setting(fixture_dir: Path, tmp_path: Path) -> None:
    """Without a class map beside the model, the error says how to give one."""
    model_file = tmp_path / "model.onnx"
    model_file.write_bytes((fixture_dir / "fixture.onnx").read_bytes())
    with pytest.raises(ModelError, match=r"no class map .*audio_class_map"):
        AudioModel.load(model_file)


def test_class_map_must_be_a_class_map(fixture_dir: Path, tmp_path: Path) -> None:
    """A CSV without display names, or with indexes out of order, is refused."""
    names_only = tmp_path / "names.csv"
    names_only.write_text("Speech\nLaughter\n")
    with pytest.raises(ModelError, match="is not a class map"):
        AudioModel.load(fixture_dir / "fixture.onnx", names_only)
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("index,mid,display_name\n1,/m/a,Speech\n0,/m/b,Laughter\n")
    with pytest.raises(ModelError, match="does not list indexes 0 to 1 in order"):
        AudioModel.load(fixture_dir / "fixture.onnx", shuffled)


def test_class_map_of_another_model_is_refused(fixture_dir: Path, tmp_path: Path) -> None:
    """A class map whose class count no output has names the outputs it found."""
    short = write_class_map(tmp_path / "short.csv", classes=20)
    with pytest.raises(ModelError, match=r"no output of shape \[patches, 20\] "
                                         r"\(scores \[N, 521\], embeddings \[N, 1024\]\)"):
        AudioModel.load(fixture_dir / "fixture.onnx", short)


def test_model_without_a_waveform_input_is_refused(tmp_path: Path) -> None:
    """A model taking something other than samples (here [N, 2]) is refused."""
    graph = helper.make_graph(
        [helper.make_node("Identity", ["features"], ["scores"])], "not_yamnet",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["n", 2])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, tmp_path / "other.onnx")
    class_map = write_class_map(tmp_path / "other_class_map.csv", classes=2)
    with pytest.raises(ModelError, match=r"takes input of shape \[N, 2\], not a waveform"):
        AudioModel.load(tmp_path / "other.onnx", class_map)


# --- the real YAMNet -------------------------------------------------------------------

needs_yamnet = pytest.mark.skipif(
    not YAMNET.is_file() or importlib.util.find_spec("ai_edge_litert") is None,
    reason=f"needs the YAMNet model at {YAMNET} and ai-edge-litert (gristmill[audio])")


@pytest.fixture(scope="module")
def yamnet() -> AudioModel:
    return AudioModel.load(YAMNET)


@pytest.mark.corpus
@needs_yamnet
def test_yamnet_loads(yamnet: AudioModel) -> None:
    """The shared YAMNet TFLite file: its runtime, shapes, digest and labels."""
    assert yamnet.runtime == "tflite"
    assert yamnet.sha256 == YAMNET_SHA256
    assert yamnet.input_shape == (None,)
    assert yamnet.output_shapes == {"Identity": (None, 521), "Identity_1": (None, 1024),
                                    "Identity_2": (None, 64)}
    assert yamnet.scores_output == "Identity"
    assert len(yamnet.labels) == 521
    assert yamnet.labels[13] == "Laughter"
    silence = yamnet.scores(np.zeros(SAMPLE_RATE, dtype=np.float32))
    assert [yamnet.labels[i] for i in silence.argmax(axis=1)] == ["Silence", "Silence"]


@pytest.mark.corpus
@needs_yamnet
def test_yamnet_rows_ignore_its_float_rounding(yamnet: AudioModel) -> None:
    """A full default window (124 hops after the first patch) gives 125 rows: the
    TFLite graph's extra, all-padding row at such lengths is dropped."""
    full_window = 124 * PATCH_HOP + PATCH_SPAN
    signal = noise(full_window / SAMPLE_RATE, SAMPLE_RATE, amplitude=0.1)
    assert yamnet.scores(signal).shape == (125, 521)
    assert yamnet.scores(signal[:-1]).shape == (125, 521)
    assert yamnet.scores(signal[:PATCH_SPAN + 1]).shape == (2, 521)


@pytest.mark.slow
@pytest.mark.corpus
@needs_yamnet
def test_yamnet_windows_score_as_the_whole(yamnet: AudioModel, tmp_path: Path) -> None:
    """Five minutes of noise in the default one-minute windows give exactly the rows of
    one call on the whole waveform, the last (padded) patch included."""
    samples = 300 * SAMPLE_RATE + 12_345
    path = write_audio(tmp_path / "noise.wav",
                       noise(samples / SAMPLE_RATE, SAMPLE_RATE, amplitude=0.3), SAMPLE_RATE)
    joined = scores_by_window(yamnet, path, 125)
    whole = yamnet.scores(decoded_whole(path))
    assert joined.shape == whole.shape == (expected_rows(samples), 521)
    np.testing.assert_allclose(joined, whole, atol=1e-5, rtol=0)


@pytest.mark.corpus
@needs_yamnet
def test_yamnet_loads_without_a_word_on_stderr() -> None:
    """The TFLite runtime's "Created TensorFlow Lite XNNPACK delegate" line, which its
    C++ writes straight to fd 2 in every worker, goes to the log at DEBUG instead; the
    process's stderr works as before once the model is loaded."""
    script = (
        "import logging, sys\n"
        "import numpy as np\n"
        "from pathlib import Path\n"
        "from gristmill.audio.model import AudioModel\n"
        "logging.basicConfig(stream=sys.stdout, level=logging.DEBUG, format='%(message)s')\n"
        f"model = AudioModel.load(Path({str(YAMNET)!r}))\n"
        "model.scores(np.zeros(40_000, dtype=np.float32))\n"
        "model.scores(np.zeros(90_000, dtype=np.float32))\n"
        "print('after', file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "after\n"
    assert "TFLite: INFO: Created TensorFlow Lite XNNPACK delegate for CPU." in done.stdout
