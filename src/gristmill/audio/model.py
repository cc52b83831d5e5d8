"""A YAMNet-style sound-event model: class scores per patch of a 16 kHz waveform.

The model file is configuration (``audio_model``, or ``--model``): a ``.tflite`` file
runs on ``ai-edge-litert`` (the ``gristmill[audio]`` extra), an ``.onnx`` file on
onnxruntime. Its class map (``index,mid,display_name`` CSV, YAMNet's
``yamnet_class_map.csv``) lies beside it or is configured (``audio_class_map``).

What the YAMNet TFLite conversion in ``../shared/models/yamnet`` does (measured with
ai-edge-litert 2.3.0):

- input ``waveform`` float32 ``[N]`` (signature ``[-1]``; ``resize_tensor_input``
  takes any N); outputs ``Identity`` scores ``[patches, 521]``, ``Identity_1``
  embeddings ``[patches, 1024]``, ``Identity_2`` log-mel spectrogram ``[frames, 64]``.
  The output names say nothing: the scores are found by their width (the class count).
- It pads the end with zeros as YAMNet's ``features.pad_waveform`` does: to one patch
  (15,600 samples) at least, then to a whole number of hops (7,680) after the first
  patch, so N samples give ``1 + ceil((max(N, 15600) - 15600) / 7680)`` patches: every
  sample is in some patch, and a patch is added only for samples no earlier patch
  holds (1 s: 2 patches; 10 s: 20; 60 s: 124). One quirk: when ``N - 15600`` is a
  whole positive number of hops it often returns one more, all-padding patch (the
  converted graph's float ceil: 967,920 samples, a default decoding window, give 126
  rows, not 125). :meth:`AudioModel.scores` pads the waveform to the grid itself and
  keeps the rows of the rule above, so no runtime's rounding decides the row count.
- Each patch's scores depend only on its own samples (patches are scored as a batch):
  a 5-minute waveform cut into the decoding windows of
  :func:`gristmill.audio.decode.windows` scores exactly (difference 0.0) as the whole,
  the last, padded patch included, because a window's padding ends where the whole
  waveform's does.
- Speed: 60 s of audio in about 250 ms on one thread (one core of a busy 2-core
  machine); resizing and re-allocating the input for every call costs no measurable
  time next to that, but is done only when the length changes.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import importlib
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gristmill.audio.framing import PATCH_HOP, PATCH_SPAN, scored_patches
from gristmill.errors import ModelError

__all__ = ["AudioModel", "Shape"]

#: A tensor's shape; None for a dimension the model leaves free (any length).
Shape = tuple[int | None, ...]

_WHERE_FROM = (
    "set audio_model (or --model) to a YAMNet .tflite or .onnx file; Google publishes "
    "YAMNet as google/yamnet on Kaggle Models (formerly TF Hub), the README says which "
    "file to take"
)
_TFLITE_MAGIC = b"TFL3"  # the FlatBuffer file identifier, bytes 4-8 of a .tflite file
# Of what the runtime prints while loading, the part logged (a runaway log stays bounded).
_MAX_CAPTURED = 64 * 1024

log = logging.getLogger(__name__)


class _Runner(Protocol):
    """One runtime's session: shapes as the file declares them, and one call."""

    input_shape: Shape
    output_shapes: dict[str, Shape]

    def run(self, samples: np.ndarray, output: str) -> np.ndarray: ...


class AudioModel:
    """A loaded sound-event model and its labels; build one with :meth:`load`.

    Attributes:
        labels: the class names, by class index (``labels[13] == "Laughter"``).
        sha256: the model file's hex digest (events record which model found them).
        runtime: ``"tflite"`` or ``"onnx"``.
        input_shape: the waveform input's shape (``(None,)``: any length).
        output_shapes: every output's shape, by name.
        scores_output: the name of the output holding the class scores.
    """

    def __init__(self, path: Path, labels: list[str], sha256: str, runtime: str,
                 runner: _Runner, scores_output: str) -> None:
        self.path = path
        self.labels = labels
        self.sha256 = sha256
        self.runtime = runtime
        self.input_shape = runner.input_shape
        self.output_shapes = runner.output_shapes
        self.scores_output = scores_output
        self._runner = runner
        # A model with a fixed input takes one patch per call (the Keras exports of
        # YAMNet take [15600] or [1, 15600]); one with a free length takes a window.
        self._fixed_input = None not in runner.input_shape

    @classmethod
    def load(cls, path: Path, class_map: Path | None = None, *,
             threads: int = 1) -> AudioModel:
        """Load the model at ``path`` with its class map (default: beside it).

        ``threads`` is the runtime's thread count for one call; the default of one
        suits a pool of worker processes, which is where the parallelism comes from.

        Raises:
            ModelError: the file or its class map is missing, unreadable, or not a
                waveform-in, scores-out model matching the class map.
        """
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"no audio model at {path}: {_WHERE_FROM}")
        labels = _read_class_map(class_map or _class_map_beside(path), path)
        try:
            runtime = _runtime_of(path)
            digest = _sha256(path)
        except OSError as exc:
            raise ModelError(f"cannot read the audio model {path}: "
                             f"{exc.strerror or exc}; check its permissions") from None
        runner: _Runner = (_TfliteRunner(path, threads) if runtime == "tflite"
                           else _OnnxRunner(path, threads))
        _check_input(runner.input_shape, path)
        scores_output = _scores_output(runner.output_shapes, len(labels), path)
        return cls(path, labels, digest, runtime, runner, scores_output)

    def scores(self, samples: np.ndarray) -> np.ndarray:
        """Class scores of each patch of ``samples`` (16 kHz mono float32 in [-1, 1]).

        Returns float32 ``[rows, len(labels)]``: row ``p`` scores samples
        ``[p * 7680, p * 7680 + 15600)``, zero-padded past the end. There are
        ``1 + ceil((max(N, 15600) - 15600) / 7680)`` rows for N samples (none for
        none): whole patches, plus one padded patch for a tail no whole patch holds,
        as YAMNet pads. So the rows of consecutive decoding windows joined end to end
        are the rows of the whole waveform.
        """
        waveform = np.asarray(samples, dtype=np.float32)
        if waveform.ndim != 1:
            raise ValueError(f"samples must be one mono channel, not shape {waveform.shape}")
        classes = len(self.labels)
        if len(waveform) == 0:
            return np.zeros((0, classes), dtype=np.float32)
        rows = scored_patches(len(waveform))
        padded = _pad(waveform, rows)
        if self._fixed_input:
            out = np.empty((rows, classes), dtype=np.float32)
            shape = tuple(d or 1 for d in self.input_shape)
            for row in range(rows):
                patch = padded[row * PATCH_HOP:row * PATCH_HOP + PATCH_SPAN]
                out[row] = self._runner.run(patch.reshape(shape), self.scores_output)[0]
            return out
        scores = self._runner.run(padded, self.scores_output)
        # A model that pads differently may add a padding-only row at the end (the
        # TFLite conversion does, see the module docstring); one with fewer rows does
        # not frame as YAMNet does, and its windows would not join up.
        if scores.ndim != 2 or scores.shape[0] < rows or scores.shape[1] != classes:
            raise ModelError(
                f"{self.path} returned scores of shape {scores.shape} for {len(waveform)} "
                f"samples, not [{rows}, {classes}]: it does not frame audio as YAMNet "
                f"does (0.96 s patches every 0.48 s); {_WHERE_FROM}")
        return np.ascontiguousarray(scores[:rows], dtype=np.float32)


def _pad(waveform: np.ndarray, rows: int) -> np.ndarray:
    # A full decoding window already ends on the grid: no copy for it.
    length = PATCH_SPAN + (rows - 1) * PATCH_HOP
    if len(waveform) == length:
        return waveform
    padded = np.zeros(length, dtype=np.float32)
    padded[:len(waveform)] = waveform
    return padded


# --- loading -----------------------------------------------------------------------


def _class_map_beside(model: Path) -> Path:
    # yamnet.tflite -> yamnet_class_map.csv, as YAMNet ships them; else YAMNet's name.
    own = model.with_name(f"{model.stem}_class_map.csv")
    return own if own.is_file() else model.with_name("yamnet_class_map.csv")


def _read_class_map(path: Path, model: Path) -> list[str]:
    fix = (f"put YAMNet's yamnet_class_map.csv beside {model.name} or set audio_class_map "
           "to the class map that came with the model")
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except FileNotFoundError:
        raise ModelError(f"no class map for the audio model {model} (looked for {path}): "
                         f"{fix}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ModelError(f"cannot read the class map {path}: {exc}; {fix}") from None
    if not rows or "display_name" not in rows[0]:
        raise ModelError(f"{path} is not a class map (a CSV with columns index,mid,"
                         f"display_name): {fix}")
    if "index" in rows[0]:
        indexes = [(row.get("index") or "").strip() for row in rows]
        if indexes != [str(i) for i in range(len(rows))]:
            raise ModelError(f"the class map {path} does not list indexes 0 to "
                             f"{len(rows) - 1} in order: {fix}")
    return [(row.get("display_name") or "").strip() for row in rows]


def _runtime_of(path: Path) -> str:
    suffix = path.suffix.lower()
    with path.open("rb") as handle:
        head = handle.read(8)
    if suffix == ".tflite" or (suffix != ".onnx" and head[4:8] == _TFLITE_MAGIC):
        if head[4:8] != _TFLITE_MAGIC:
            raise ModelError(f"{path} is not a TFLite model (no TFL3 identifier): "
                             f"{_WHERE_FROM}")
        return "tflite"
    if suffix == ".onnx":
        return "onnx"
    raise ModelError(f"{path} is neither a .tflite nor an .onnx model: {_WHERE_FROM}")


def _sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _check_input(shape: Shape, path: Path) -> None:
    if shape in ((None,), (PATCH_SPAN,), (1, PATCH_SPAN)):
        return
    raise ModelError(f"{path} takes input of shape {_show(shape)}, not a waveform: a "
                     f"YAMNet model takes float32 [N] samples (or one patch, [{PATCH_SPAN}]); "
                     f"{_WHERE_FROM}")


def _scores_output(shapes: dict[str, Shape], classes: int, path: Path) -> str:
    # By name where the model names it; else the one [patches, classes] output
    # (TFLite conversions call theirs Identity, Identity_1, ...).
    fitting = [name for name, shape in shapes.items()
               if len(shape) == 2 and shape[1] == classes]
    if "scores" in fitting:
        return "scores"
    if len(fitting) == 1:
        return fitting[0]
    outputs = ", ".join(f"{name} {_show(shape)}" for name, shape in shapes.items())
    problem = ("several outputs" if fitting else "no output") + f" of shape [patches, {classes}]"
    raise ModelError(f"{path} has {problem} ({outputs}) to go with its class map of "
                     f"{classes} classes: use the class map that came with the model "
                     f"(audio_class_map), or {_WHERE_FROM}")


def _show(shape: Sequence[int | None]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"


# --- runtimes ----------------------------------------------------------------------


class _TfliteRunner:
    """A TFLite interpreter, resized only when the input length changes."""

    def __init__(self, path: Path, threads: int) -> None:
        try:
            # Imported by name: the optional extra ships no type information (Any).
            litert: Any = importlib.import_module("ai_edge_litert.interpreter")
        except ImportError:
            raise ModelError(f"{path} is a TFLite model and ai-edge-litert is not "
                             "installed: pip install 'gristmill[audio]'") from None
        try:
            # The runtime's C++ logs its delegate ("INFO: Created TensorFlow Lite XNNPACK
            # delegate for CPU.") straight to fd 2, once per process, when the tensors
            # are first allocated: every worker would print it on the user's terminal.
            # Allocating here (a free length as one patch) keeps it inside the capture;
            # a later resize logs nothing more.
            with _quiet_stderr():
                self._interpreter: Any = litert.Interpreter(model_path=str(path),
                                                             num_threads=threads)
                inputs = self._interpreter.get_input_details()
                if len(inputs) != 1 or inputs[0]["dtype"] is not np.float32:
                    raise ModelError(f"{path} does not take one float32 waveform input: "
                                     f"{_WHERE_FROM}")
                # The input shape the tensors are allocated for.
                self._allocated: tuple[int, ...] | None = tuple(
                    PATCH_SPAN if d < 0 else int(d) for d in inputs[0]["shape_signature"])
                self._interpreter.resize_tensor_input(
                    int(inputs[0]["index"]), list(self._allocated), strict=True)
                self._interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"cannot load {path} as a TFLite model ({exc}): "
                             f"{_WHERE_FROM}") from None
        self._input = int(inputs[0]["index"])
        self.input_shape: Shape = _tflite_shape(inputs[0]["shape_signature"])
        outputs = self._interpreter.get_output_details()
        self._outputs = {o["name"]: int(o["index"]) for o in outputs}
        self.output_shapes: dict[str, Shape] = {
            o["name"]: _tflite_shape(o["shape_signature"]) for o in outputs}

    def run(self, samples: np.ndarray, output: str) -> np.ndarray:
        """The ``output`` tensor for ``samples`` (a copy)."""
        if samples.shape != self._allocated:
            # Windows mostly share one length, so this runs about once per recording
            # (and never for a fixed input, whose shape the caller keeps to).
            self._interpreter.resize_tensor_input(self._input, list(samples.shape),
                                                  strict=True)
            self._interpreter.allocate_tensors()
            self._allocated = samples.shape
        self._interpreter.set_tensor(self._input, samples)
        self._interpreter.invoke()
        return np.asarray(self._interpreter.get_tensor(self._outputs[output]))


#: What the runtime prints on loading a model, logged at DEBUG; anything else it
#: prints then is logged as a warning.
_DELEGATE_NOTICE = "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send what is written to file descriptor 2 meanwhile (C++ logging, which no
    environment variable silences) to the log instead of the terminal."""
    sys.stderr.flush()  # Python's own pending text goes out before, not into the capture
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as capture:
            os.dup2(capture.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
                capture.seek(0)
                text = capture.read(_MAX_CAPTURED).decode("utf-8", "replace")
            for line in text.splitlines():
                if line.strip() == _DELEGATE_NOTICE:
                    log.debug("TFLite: %s", line.strip())
                elif line.strip():
                    log.warning("TFLite: %s", line.rstrip())
    finally:
        os.close(saved)


def _tflite_shape(signature: Sequence[int]) -> Shape:
    return tuple(None if d < 0 else int(d) for d in signature)


class _OnnxRunner:
    """An onnxruntime session: CUDA where the installed onnxruntime has it, else CPU."""

    def __init__(self, path: Path, threads: int) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        try:
            self._session: Any = ort.InferenceSession(str(path), options,
                                                      providers=providers)
        except Exception as exc:  # onnxruntime's errors share no base class but Exception
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"cannot load {path} as an ONNX model ({first}): "
                             f"{_WHERE_FROM}") from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or inputs[0].type != "tensor(float)":
            raise ModelError(f"{path} does not take one float32 waveform input: "
                             f"{_WHERE_FROM}")
        self._input = inputs[0].name
        self.input_shape: Shape = _onnx_shape(inputs[0].shape)
        self.output_shapes: dict[str, Shape] = {
            o.name: _onnx_shape(o.shape) for o in self._session.get_outputs()}

    def run(self, samples: np.ndarray, output: str) -> np.ndarray:
        """The ``output`` tensor for ``samples``."""
        result: np.ndarray = self._session.run([output], {self._input: samples})[0]
        return result


def _onnx_shape(shape: Sequence[int | str | None]) -> Shape:
    # A named dimension ("samples", "patches") or a missing one is free.
    return tuple(d if isinstance(d, int) else None for d in shape)
