"""One recording scanned for sound events: what a scanning worker does with a file.

:func:`scan_recording` checks the file (:func:`~gristmill.audio.decode.probe`), streams
it window by window through the model into an
:class:`~gristmill.audio.events.EventDetector`, and cuts a clip of each event when asked
(seeking in the file, never decoding it whole again). Memory is one decoding window,
the model and the detector's few rows, whatever the recording's length.

The model is loaded once per worker process and kept (:func:`loaded_model`): workers
hold the model, and are recycled between users (and by ``max_tasks_per_worker``), which
returns its memory. :class:`AudioOptions` is everything a worker needs besides the path;
it is built from the settings (:meth:`AudioOptions.from_settings`), stored with the job
as plain JSON (:meth:`AudioOptions.to_spec`) and rebuilt from there for a resume.

Clip files are named for what they hold, ``<item id>-<model sha256[:8]>-<start ms>-<class
index>.<format>`` in ``<home>/clips/<user>/``: a scan run again (after a crash, or with
the same events) writes the same names over the old files instead of beside them, and
the scans of other models (revisions kept side by side in the catalog) never name the same
file.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from gristmill.audio.events import (
    DEFAULT_CLASSES,
    DEFAULT_MAX_GAP,
    DEFAULT_MIN_DURATION,
    DEFAULT_RELEASE,
    DEFAULT_SMOOTH,
    DEFAULT_THRESHOLD,
    Event,
    EventDetector,
)
from gristmill.catalog.audio import ScannedRecording
from gristmill.errors import ExtractionError, ModelError

if TYPE_CHECKING:  # the settings machinery (pydantic) stays out of worker processes
    from gristmill.audio.decode import ClipFormat
    from gristmill.audio.model import AudioModel
    from gristmill.config import Settings
    from gristmill.runtime.worker import WorkResult

__all__ = ["AUDIO_SUFFIXES", "SCANNER", "SCANNER_VERSION", "AudioOptions", "RecordingScan",
           "clip_name", "configured_model_sha256", "is_clip_name", "loaded_model",
           "model_sha256", "scan_recording", "stored_recording"]

#: The file types an audio scan looks at (a folder of recordings holds other files too).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".m4a", ".aac", ".webm",
                  ".mp4", ".mka", ".wma")
#: What a scanned item records as its extractor, and its version: bump it when a change
#: here makes earlier scans wrong.
SCANNER = "audio"
SCANNER_VERSION = 1

_WHERE_FROM = ("set audio_model (GRISTMILL_AUDIO_MODEL, gristmill.toml) or pass --model: a "
               "YAMNet .tflite file (Kaggle Models google/yamnet, formerly TF Hub, TFLite "
               "variant, with yamnet_class_map.csv beside it; pip install "
               "'gristmill[audio]') or an .onnx conversion of it")


@dataclass(frozen=True, slots=True)
class AudioOptions:
    """One user's scan: the model, how its scores become events, where clips go."""

    user: str
    model: str  # absolute path of the model file
    model_sha256: str
    class_map: str | None = None  # None: beside the model
    classes: tuple[str | int, ...] = DEFAULT_CLASSES
    threshold: float = DEFAULT_THRESHOLD
    release: float = DEFAULT_RELEASE
    min_duration: float = DEFAULT_MIN_DURATION
    max_gap: float = DEFAULT_MAX_GAP
    smooth: int = DEFAULT_SMOOTH
    #: ``<home>/clips/<user>`` when clips are cut, else None.
    clips_dir: str | None = None
    clip_format: str = "wav"
    clip_padding: float = 0.5
    threads: int = 1
    #: Only recordings modified at or after this time (seconds since the epoch).
    since: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings, user: str, *, clips: bool = False,
                      since: float | None = None) -> AudioOptions:
        """The options ``settings`` give for ``user``'s recordings.

        Raises:
            ModelError: no model is configured, or its file cannot be read.
            ConfigError: the user's name cannot name a folder.
        """
        if settings.audio_model is None:
            raise ModelError(f"no audio model configured: {_WHERE_FROM}")
        model = settings.audio_model.expanduser().absolute()
        class_map = (str(settings.audio_class_map.expanduser().absolute())
                     if settings.audio_class_map is not None else None)
        home = settings.home.expanduser().absolute()
        return cls(user=_checked_user(user), model=str(model),
                   model_sha256=model_sha256(model), class_map=class_map,
                   classes=tuple(_class(name) for name in settings.audio_classes),
                   threshold=settings.audio_threshold,
                   # An event ends below the release; a threshold set under the default
                   # release takes it down with it.
                   release=min(settings.audio_release, settings.audio_threshold),
                   min_duration=settings.audio_min_duration,
                   max_gap=settings.audio_max_gap, smooth=settings.audio_smooth,
                   clips_dir=str(home / "clips" / user) if clips else None,
                   clip_format=settings.audio_clip_format,
                   clip_padding=settings.audio_clip_padding,
                   threads=settings.audio_threads, since=since)

    def to_spec(self) -> dict[str, Any]:
        """The options as JSON values, stored with the job (lists, not tuples: a spec
        read back compares equal)."""
        return {"user": self.user, "model": self.model, "model_sha256": self.model_sha256,
                "class_map": self.class_map, "classes": list(self.classes),
                "threshold": self.threshold, "release": self.release,
                "min_duration": self.min_duration, "max_gap": self.max_gap,
                "smooth": self.smooth, "clips": self.clips_dir is not None,
                "clip_format": self.clip_format, "clip_padding": self.clip_padding,
                "threads": self.threads, "since": self.since}

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], home: Path) -> AudioOptions:
        """The options a job's stored ``audio`` spec holds (``home``: where clips go)."""
        user = _checked_user(str(spec["user"]))
        clips = home.expanduser().absolute() / "clips" / user
        return cls(user=user, model=str(spec["model"]), model_sha256=str(spec["model_sha256"]),
                   class_map=spec.get("class_map"),
                   classes=tuple(_class(c) for c in spec["classes"]),
                   threshold=float(spec["threshold"]), release=float(spec["release"]),
                   min_duration=float(spec["min_duration"]),
                   max_gap=float(spec["max_gap"]), smooth=int(spec["smooth"]),
                   clips_dir=str(clips) if spec.get("clips") else None,
                   clip_format=str(spec.get("clip_format", "wav")),
                   clip_padding=float(spec.get("clip_padding", 0.5)),
                   threads=int(spec.get("threads", 1)), since=spec.get("since"))

    def settings_key(self) -> str:
        """The detection and clip settings as canonical JSON: a recording scanned with
        other ones (or another model) is scanned again."""
        return json.dumps({"classes": list(self.classes), "threshold": self.threshold,
                           "release": self.release, "min_duration": self.min_duration,
                           "max_gap": self.max_gap, "smooth": self.smooth,
                           "clips": self.clips_dir is not None,
                           "clip_format": self.clip_format,
                           "clip_padding": self.clip_padding}, sort_keys=True)


@dataclass(slots=True)
class RecordingScan:
    """What one recording held: its events (sorted by start), their clips, its audio."""

    events: list[Event]
    clips: list[str | None]  # one per event: the clip file, or None
    duration: float  # seconds of audio decoded
    sample_rate: int
    channels: int
    codec: str
    #: What was wrong with a recording that still decoded (damaged packets replaced by
    #: silence), or None.
    note: str | None = None
    model_seconds: float = 0.0  # of which in the model


def model_sha256(path: Path) -> str:
    """The model file's sha256 (what events record as their model).

    Raises:
        ModelError: the file is missing or unreadable.
    """
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except FileNotFoundError:
        raise ModelError(f"no audio model at {path}: {_WHERE_FROM}") from None
    except OSError as exc:
        raise ModelError(f"cannot read the audio model {path}: {exc.strerror or exc}; "
                         "check its permissions") from None


def configured_model_sha256(settings: Settings) -> str | None:
    """The sha256 of the configured model file (the revision ``audio events`` lists
    first), or None when none is configured or it cannot be read now."""
    if settings.audio_model is None:
        return None
    try:
        return model_sha256(settings.audio_model.expanduser().absolute())
    except ModelError:
        return None


# The model this worker process holds, and what it was loaded from.
_held: tuple[tuple[object, ...], AudioModel] | None = None


def loaded_model(options: AudioOptions) -> AudioModel:
    """The model ``options`` name, loaded once per process and kept.

    Raises:
        ModelError: it cannot be loaded, or its file is not the one the scan started
            with (replaced meanwhile: its events would be recorded under another model).
    """
    from gristmill.audio.model import AudioModel

    global _held
    path = Path(options.model)
    try:
        stat = path.stat()
    except OSError:
        raise ModelError(f"no audio model at {path}: {_WHERE_FROM}") from None
    key = (options.model, stat.st_mtime_ns, stat.st_size, options.class_map, options.threads)
    if _held is not None and _held[0] == key:
        return _held[1]
    _held = None  # the old model's memory goes before the new one is loaded
    model = AudioModel.load(path, Path(options.class_map) if options.class_map else None,
                            threads=options.threads)
    if model.sha256 != options.model_sha256:
        raise ModelError(f"the audio model {path} changed while the scan ran (sha256 "
                         f"{model.sha256[:12]}..., not {options.model_sha256[:12]}...): run "
                         "the scan again to use the new one")
    _held = (key, model)
    return model


def scan_recording(path: Path, options: AudioOptions, item_id: int, *,
                   beat: Callable[[], None] = lambda: None) -> RecordingScan:
    """Find the sound events in the recording at ``path`` (item ``item_id``), and cut
    their clips when ``options.clips_dir`` is set. ``beat`` is called after each
    decoding window (progress: a long recording is slow, not stuck).

    Raises:
        Unsupported, ExtractionError: the file is not a readable recording (the reason
            says why: empty, not audio, no audio track, truncated at what second...).
        ModelError, ConfigError: the model or the classes asked for are wrong.
    """
    from gristmill.audio import decode
    from gristmill.audio.framing import PATCH_HOP, SAMPLE_RATE

    info = decode.probe(path)
    model = loaded_model(options)
    detector = EventDetector(model.labels, options.classes, threshold=options.threshold,
                             release=options.release, min_duration=options.min_duration,
                             max_gap=options.max_gap, smooth=options.smooth)
    events: list[Event] = []
    samples = 0
    in_model = 0.0
    with decode.windows(path) as stream:
        for window in stream:
            started = time.perf_counter()
            rows = model.scores(window.samples)
            in_model += time.perf_counter() - started
            events += detector.push(window.start // PATCH_HOP, rows)
            samples = max(samples, window.start + len(window.samples))
            beat()
        note = stream.note
    duration = samples / SAMPLE_RATE
    events += detector.finish(duration)
    events.sort(key=lambda e: (e.start, e.class_index))
    clips = _cut_clips(path, events, duration, options, item_id, beat)
    return RecordingScan(events, clips, duration, info.sample_rate, info.channels,
                         info.codec, note, in_model)


def stored_recording(options: AudioOptions, result: WorkResult) -> ScannedRecording:
    """What a worker's scan of one recording (``result``) stores with its item."""
    facts = result.audio or {}
    events = result.events or []
    clips = facts.get("clips")
    paths = clips if isinstance(clips, list) else [None] * len(events)
    return ScannedRecording(
        user=options.user, model=options.model_sha256, settings=options.settings_key(),
        duration=_number(facts.get("duration")), sample_rate=_whole(facts.get("sample_rate")),
        channels=_whole(facts.get("channels")),
        codec=str(facts["codec"]) if facts.get("codec") else None,
        compute_seconds=round(result.seconds, 3),
        events=[replace(e, clip=clip)
                for e, clip in zip(events, paths, strict=True)])


def clip_name(item_id: int, model_sha256: str, event: Event, clip_format: str) -> str:
    """The file name of ``event``'s clip: the same for the same event of the same
    recording scanned by the same model, so a re-scan overwrites it."""
    return (f"{item_id}-{model_sha256[:8]}-{round(event.start * 1000)}-"
            f"{event.class_index}.{clip_format}")


def is_clip_name(name: str) -> bool:
    """Whether a file name is one :func:`clip_name` makes (what a sweep may delete)."""
    stem, _, suffix = name.rpartition(".")
    parts = stem.split("-")
    return (suffix in ("wav", "opus", "mp3") and len(parts) == 4
            and all(part.isdigit() for part in (parts[0], parts[2], parts[3]))
            and len(parts[1]) == 8 and all(c in "0123456789abcdef" for c in parts[1]))


def _cut_clips(path: Path, events: Sequence[Event], duration: float,
               options: AudioOptions, item_id: int, beat: Callable[[], None]
               ) -> list[str | None]:
    if options.clips_dir is None or not events:
        return [None] * len(events)
    from gristmill.audio.decode import cut_clip

    folder = Path(options.clips_dir)
    folder.mkdir(parents=True, exist_ok=True)
    clips: list[str | None] = []
    for event in events:
        start = max(0.0, event.start - options.clip_padding)
        end = min(duration, event.end + options.clip_padding)
        out = folder / clip_name(item_id, options.model_sha256, event, options.clip_format)
        try:
            cut_clip(path, start, end, out, format=cast("ClipFormat", options.clip_format))
        except ExtractionError:
            clips.append(None)  # nothing decodable in that span: the event stands alone
            continue
        clips.append(str(out))
        beat()
    return clips


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) else None


def _whole(value: object) -> int | None:
    return int(value) if isinstance(value, int | float) else None


def _class(value: str | int) -> str | int:
    """A class named by index (``"13"`` in the environment) as that index."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _checked_user(user: str) -> str:
    from gristmill.errors import ConfigError

    if not user or user in (".", "..") or "/" in user or "\x00" in user:
        raise ConfigError(f"{user!r} cannot be a user's name (it names the folder of the "
                          "user's clips): give a plain folder name")
    return user
