"""A small real ONNX sound-event model with YAMNet's contract, for tests.

The real YAMNet file cannot be shipped with the tests, so :func:`build_fixture_model`
writes a stand-in built from ONNX operators: the same input (``waveform`` float32
[N], 16 kHz mono), the same outputs (``scores`` float32 [patches, classes] and
``embeddings`` [patches, 1024]), the same framing (patches of 15,600 samples every
7,680, the end zero-padded as YAMNet pads it) and scores driven by the signal, so that
decoding, framing, thresholds and events are tested for real:

- class 0 (Speech) rises with the energy in a 100-500 Hz band,
- class 13 (Laughter) with the energy in a 700-2,000 Hz band (a 1 kHz tone burst,
  the suite's stand-in for laughter, is in its middle),
- class 15 (Giggle) with the energy in a 2,500-4,500 Hz band,
- every other class is a constant 0.01.

A band's score is ``sigmoid(2 * (ln(E) - ln(1e-3)))`` where ``E`` is the mean square of
the band-passed signal over the patch: 0.5 at an RMS of about 0.03 in the band, above
0.99 for a 0.5-amplitude tone, below 0.01 for silence. Each patch reads only its own
15,600 samples (the band filters run inside the patch), so a waveform cut into windows
on the patch grid scores exactly as the whole.

Example::

    model = build_fixture_model(tmp_path / "fixture.onnx")
    write_class_map(tmp_path / "fixture_class_map.csv")
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

SAMPLE_RATE = 16_000
PATCH_HOP = 7_680
PATCH_SPAN = 15_600

#: The classes the fixture scores from the signal, with their pass band in Hz.
BANDS: dict[int, tuple[float, float]] = {0: (100.0, 500.0), 13: (700.0, 2_000.0),
                                         15: (2_500.0, 4_500.0)}
#: What every other class scores, whatever the signal.
CONSTANT_SCORE = 0.01

#: YAMNet's first 21 display names (its class map, indices 0-20); the fixture's class
#: map names the rest ``class N``.
YAMNET_LABELS = (
    "Speech", "Child speech, kid speaking", "Conversation", "Narration, monologue",
    "Babbling", "Speech synthesizer", "Shout", "Bellow", "Whoop", "Yell",
    "Children shouting", "Screaming", "Whispering", "Laughter", "Baby laughter",
    "Giggle", "Snicker", "Belly laugh", "Chuckle, chortle", "Crying, sobbing",
    "Baby cry, infant cry",
)

# An opset and IR version every onnxruntime since 1.14 runs.
_OPSET = 17
_IR_VERSION = 8
# Band-pass filter length: a 129-tap Hamming-windowed sinc has ~400 Hz transitions and
# ~50 dB of stop-band rejection, so a tone in one band is silence in the others.
_TAPS = 129
_SLOPE = 2.0          # per neper of band energy
_ENERGY_AT_HALF = 1e-3  # band mean square that scores 0.5
_EMBEDDING_SIZE = 1_024


def build_fixture_model(path: Path, classes: int = 521, *,
                        fixed_input: bool = False, sensitivity: float = 1.0) -> Path:
    """Write the fixture model with ``classes`` output classes to ``path``; return it.

    ``fixed_input`` makes its input one patch, ``[1, 15600]``, as YAMNet's Keras
    exports take it, instead of any number of samples. ``sensitivity`` divides the band
    energy that scores 0.5: another value is another model (another file, other scores:
    at 10, a tone scores 0.5 when it fills a tenth of a patch, not half).
    """
    if classes <= max(BANDS):
        raise ValueError(f"the fixture scores class {max(BANDS)}: it needs more than "
                         f"{max(BANDS)} classes, not {classes}")
    input_shape: list[int | str] = [1, PATCH_SPAN] if fixed_input else ["samples"]
    bands = list(BANDS.items())
    filters = np.stack([_band_pass(low, high) for _, (low, high) in bands])[:, None, :]
    # Scores = sigmoid(ln(E) @ weights + bias): one column per class, a band's weight
    # in its class's column, a bias that puts the constant classes at CONSTANT_SCORE.
    weights = np.zeros((len(bands), classes), dtype=np.float32)
    bias = np.full(classes, _logit(CONSTANT_SCORE), dtype=np.float32)
    for row, (index, _) in enumerate(bands):
        weights[row, index] = _SLOPE
        bias[index] = -_SLOPE * np.log(_ENERGY_AT_HALF / sensitivity)
    projection = np.random.default_rng(0).standard_normal(
        (len(bands), _EMBEDDING_SIZE)).astype(np.float32)

    constants = {
        "span": np.array([PATCH_SPAN], dtype=np.int64),
        "hop": np.array([PATCH_HOP], dtype=np.int64),
        "hop_less_one": np.array([PATCH_HOP - 1], dtype=np.int64),
        "zero": np.array([0], dtype=np.int64),
        "flat": np.array([-1], dtype=np.int64),
        "signal_shape": np.array([1, 1, -1], dtype=np.int64),
        "filters": filters.astype(np.float32),
        "tiny": np.array(1e-12, dtype=np.float32),
        "weights": weights,
        "bias": bias,
        "projection": projection,
    }
    node = helper.make_node
    nodes = [
        # Pad the end as YAMNet does: to one patch at least, then to a whole number of
        # hops after the first patch: length = SPAN + ceil((max(N, SPAN) - SPAN) / HOP) * HOP.
        node("Reshape", ["waveform", "flat"], ["samples"]),
        node("Shape", ["samples"], ["length"]),
        node("Max", ["length", "span"], ["at_least_span"]),
        node("Sub", ["at_least_span", "span"], ["after_first"]),
        node("Add", ["after_first", "hop_less_one"], ["rounding_up"]),
        node("Div", ["rounding_up", "hop"], ["hops"]),  # int64: floor division
        node("Mul", ["hops", "hop"], ["hopped"]),
        node("Add", ["hopped", "span"], ["padded_length"]),
        node("Sub", ["padded_length", "length"], ["padding"]),
        node("Concat", ["zero", "padding"], ["pads"], axis=0),
        node("Pad", ["samples", "pads"], ["padded"], mode="constant"),
        node("Reshape", ["padded", "signal_shape"], ["signal"]),
        # Band-pass (valid convolution), square, then average each patch's own filter
        # outputs: patch p reads samples [p*HOP, p*HOP + SPAN) and nothing else.
        node("Conv", ["signal", "filters"], ["filtered"], kernel_shape=[_TAPS]),
        node("Mul", ["filtered", "filtered"], ["power"]),
        node("AveragePool", ["power"], ["energy"],
             kernel_shape=[PATCH_SPAN - _TAPS + 1], strides=[PATCH_HOP]),
        node("Squeeze", ["energy", "zero"], ["bands_by_patch"]),
        node("Transpose", ["bands_by_patch"], ["patch_energy"], perm=[1, 0]),
        node("Add", ["patch_energy", "tiny"], ["positive_energy"]),
        node("Log", ["positive_energy"], ["log_energy"]),
        node("MatMul", ["log_energy", "weights"], ["logits_unbiased"]),
        node("Add", ["logits_unbiased", "bias"], ["logits"]),
        node("Sigmoid", ["logits"], ["scores"]),
        node("MatMul", ["log_energy", "projection"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes, "gristmill_fixture_yamnet",
        [helper.make_tensor_value_info("waveform", TensorProto.FLOAT, input_shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["patches", classes]),
         helper.make_tensor_value_info("embeddings", TensorProto.FLOAT,
                                       ["patches", _EMBEDDING_SIZE])],
        initializer=[numpy_helper.from_array(value, name)
                     for name, value in constants.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)],
                              producer_name="gristmill tests")
    model.ir_version = _IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    onnx.save(model, path)
    return path


def write_class_map(path: Path, classes: int = 521) -> Path:
    """Write a YAMNet-style class map CSV (``index,mid,display_name``) for the fixture."""
    with path.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(["index", "mid", "display_name"])
        for index in range(classes):
            name = YAMNET_LABELS[index] if index < len(YAMNET_LABELS) else f"class {index}"
            writer.writerow([index, f"/t/fixture{index}", name])
    return path


def _band_pass(low: float, high: float) -> np.ndarray:
    # Windowed-sinc band-pass: the difference of two low-pass filters.
    n = np.arange(_TAPS) - (_TAPS - 1) / 2
    cut_low, cut_high = low / SAMPLE_RATE, high / SAMPLE_RATE
    ideal = 2 * cut_high * np.sinc(2 * cut_high * n) - 2 * cut_low * np.sinc(2 * cut_low * n)
    return (ideal * np.hamming(_TAPS)).astype(np.float32)


def _logit(p: float) -> float:
    return float(np.log(p / (1 - p)))
