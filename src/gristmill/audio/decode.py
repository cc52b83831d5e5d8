"""Streaming decode of a recording's first audio track to 16 kHz mono float32 windows.

:func:`windows` reads a recording once, front to back, through FFmpeg (PyAV) and a
resampler, into a buffer of one window: memory is a few windows (about 4 MB each for
the default minute: the one filling, the one the caller holds) plus the decoder's own,
whatever the recording's length, format, sample rate or channel count. Window ``k``
starts at sample ``k * patches_per_window * PATCH_HOP`` and holds
``(patches_per_window - 1) * PATCH_HOP + PATCH_SPAN`` samples, so consecutive windows
overlap by :data:`~gristmill.audio.framing.OVERLAP` and every YAMNet patch of the whole
recording lies inside exactly one window. The last window holds what is left.

Time follows the container's timestamps, not a count of decoded samples: where a damaged
packet is skipped the hole it leaves is filled with silence, so that a sound heard after
it keeps its true time (and :func:`cut_clip`, which seeks by time, cuts what was heard).

:func:`probe` reads the headers (and decodes the first packets and the last seconds the
headers declare, to catch an undecodable or truncated file); :func:`cut_clip` seeks to a
span and decodes only it. Bad input is answered with
:class:`~gristmill.errors.ItemError` subclasses carrying a reason.
"""

from __future__ import annotations

import mmap
import os
import tempfile
from collections.abc import Generator, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple

import av
import av.error
import numpy as np
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.audio.stream import AudioStream
from av.container import InputContainer

from gristmill.audio.framing import OVERLAP, PATCH_HOP, PATCH_SPAN, SAMPLE_RATE
from gristmill.errors import (
    ExtractionError,
    ItemError,
    LimitExceeded,
    Unsupported,
    translate_extraction_error,
)

__all__ = ["AudioInfo", "AudioWindow", "ClipFormat", "Windows", "cut_clip", "cut_clips", "probe",
           "windows"]

ClipFormat = Literal["wav", "opus", "mp3"]

# Below 4 kHz a recording cannot carry the sounds a sound-event model listens for, and a
# header claiming so is damaged (a WAV header saying 1 Hz turns one second of data into
# 4 hours of 16 kHz output). Above 768 kHz (the highest rate audio hardware records) it
# is not a recording, and resampling it would cost minutes per second.
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64  # FFmpeg's own ceiling for a channel layout

# The demuxers a recording may be read with. Naming them keeps FFmpeg from treating a
# hostile file as a playlist (HLS, concat) that opens other files or URLs, or as an
# image sequence, and gives a clear reason for a file that is not a recording.
_DEMUXERS = ("wav,w64,flac,mp3,ogg,mov,matroska,aac,aiff,caf,asf,avi,mpegts,mpeg,flv,"
             "amr,au,wv,ape,ac3,eac3,dts,tta,mpc,mpc8,truehd")
_OPEN_OPTIONS = {"format_whitelist": _DEMUXERS, "protocol_whitelist": "file"}

# A timestamp jump above _GAP seconds is a hole left by skipped (damaged) packets and is
# filled with silence; WebM's millisecond timestamps jitter well below it. A jump above
# _MAX_GAP is a corrupt timestamp, not lost audio: nothing is inserted for it.
_GAP = 0.010
_MAX_GAP = 600.0
# Streams whose demuxer makes timestamps by counting frames: garbage it skips (lumped
# into one packet that does not decode) leaves no hole in them, so there the time lost
# is estimated from that packet's bytes at the stream's bit rate. (Raw ADTS AAC counts
# too, but skips garbage in a way this does not see: a damaged .aac may shift.)
_FRAME_COUNTED = frozenset({"mp3"})
# Damaged packets in a row after which decoding stops: the rest is not audio.
_MAX_BAD_IN_A_ROW = 100
# How far short of its declared duration a recording may end before it is called
# truncated: codecs pad and trim their ends by a few tens of milliseconds.
_SHORTFALL_SECONDS = 1.0
_SHORTFALL_SHARE = 0.01
# Seconds decoded before a clip's start so that codecs with memory (MP3's bit reservoir,
# AAC's overlapped transform, Opus's pre-roll) have settled when the clip begins.
_PREROLL = 1.0
# The tail probe() decodes to find where the audio really ends, and the most it decodes
# when a seek lands far before the target (a container without an index).
_TAIL = 2.0
_TAIL_LIMIT = 30.0


class AudioInfo(NamedTuple):
    """What a recording's headers say about its first audio track."""

    duration: float | None  # seconds; None when the container does not say
    codec: str  # FFmpeg's decoder name: "mp3float", "aac", "opus", "pcm_s16le", ...
    sample_rate: int
    channels: int
    container: str  # FFmpeg's demuxer name: "mp3", "ogg", "mov,mp4,m4a,3gp,3g2,mj2", ...


class AudioWindow(NamedTuple):
    """A stretch of the recording at 16 kHz mono."""

    start: int  # the first sample's index in the whole 16 kHz stream
    samples: np.ndarray  # float32, mono, in [-1, 1]; owned by the caller


def probe(path: Path) -> AudioInfo:
    """Read ``path``'s headers and check that its audio runs to its declared end.

    Raises :class:`~gristmill.errors.Unsupported` for an empty file, a text file or a
    file without an audio track, and :class:`~gristmill.errors.ExtractionError` for a
    damaged or truncated one (the reason says at what second the audio stops) or an
    absurd sample rate. :func:`windows` is more forgiving of a truncated file: it
    decodes what there is and says where it stopped in :attr:`Windows.note`.
    """
    container, stream = _open(path)
    try:
        info = _info(container, stream, path)
        damage = _Damage()
        frames = _frames(container, stream, damage, expected=0.0)
        try:
            if not any(isinstance(item, tuple) for item in frames):
                raise _silent(damage, path)
        finally:
            frames.close()
        declared = _header_duration(info, stream, path)
        end = _tail_end(container, stream) if declared is not None else None
        if end is not None and declared is not None and _short(end, declared):
            raise ExtractionError(f"truncated: the audio stops at {end:.1f} s of the "
                                  f"{declared:.1f} s its header declares", path=str(path))
        return info
    finally:
        container.close()


def windows(path: Path, *, patches_per_window: int = 125) -> Windows:
    """Stream ``path``'s first audio track as overlapping 16 kHz mono windows.

    The file is opened (and its headers checked, raising as :func:`probe` does) at once;
    it is decoded as the windows are taken. 125 patches per window is 60 s of hop.

    Example::

        with windows(path) as stream:
            for window in stream:
                rows = model.scores(window.samples)
            if stream.note:
                print(f"{path}: {stream.note}")
    """
    if patches_per_window < 1:
        raise ValueError(f"patches_per_window must be at least 1, not {patches_per_window}")
    return Windows(path, patches_per_window)


class Windows(Iterator[AudioWindow]):
    """The windows of one recording, decoded as they are taken; see :func:`windows`.

    :attr:`info` holds the headers' facts; :attr:`note` says, once the windows are
    exhausted, what was wrong with a recording that still decoded (truncated, damaged
    packets replaced by silence), or is None. A recording without a single sample
    raises at its end instead, as :func:`probe` does.
    """

    def __init__(self, path: Path, patches_per_window: int) -> None:
        self.path = path
        self._container, self._stream = _open(path)
        try:
            self.info = _info(self._container, self._stream, path)
        except BaseException:
            self._container.close()
            raise
        self.note: str | None = None
        self._windows = self._decode(_Windower(patches_per_window))

    def __next__(self) -> AudioWindow:
        return next(self._windows)

    def close(self) -> None:
        """Stop decoding and close the file (also done when the windows run out)."""
        self._windows.close()
        self._container.close()

    def __enter__(self) -> Windows:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    def _decode(self, windower: _Windower) -> Generator[AudioWindow, None, None]:
        damage = _Damage()
        try:
            frames = _frames(self._container, self._stream, damage, expected=0.0)
            for block in _resampled(frames):
                yield from windower.push(block)
            last = windower.finish()
            if last is not None:
                yield last
        finally:
            self._container.close()
        if windower.total == 0:
            raise _silent(damage, self.path)
        self.note = damage.note(_header_duration(self.info, self._stream, self.path))


def cut_clip(path: Path, start_s: float, end_s: float, out: Path, *,
             format: ClipFormat = "wav") -> Path:
    """Write ``path``'s audio from ``start_s`` to ``end_s`` seconds to ``out``.

    The file is seeked to just before ``start_s`` and only that span is decoded. The
    clip keeps the recording's sample rate and channels where ``format`` allows (Opus
    is 48 kHz; MP3 holds at most two channels and its own rates). ``out`` appears whole
    or not at all: it is written beside itself and renamed. Raises
    :class:`~gristmill.errors.ExtractionError` when no audio lies in the span.
    """
    return cut_clips(path, [(start_s, end_s, out)], format=format)[0]


def cut_clips(path: Path, spans: Sequence[tuple[float, float, Path]], *,
              format: ClipFormat = "wav") -> list[Path]:
    """Cut each ``(start_s, end_s, out)`` of ``spans`` from ``path`` as :func:`cut_clip`
    does, opening the file once.

    Once matters for MP3, which has no index: FFmpeg finds a time in it by reading (not
    decoding) the frames before it, and remembers them for the file's later seeks.
    """
    for start_s, end_s, _ in spans:
        if not end_s > start_s >= 0:
            raise ValueError(f"a clip needs 0 <= start < end, not {start_s}..{end_s} s")
    spec = _CLIP_FORMATS[format]
    container, stream = _open(path)
    try:
        _info(container, stream, path)
        return [_cut(container, stream, path, start_s, end_s, out, spec)
                for start_s, end_s, out in spans]
    finally:
        container.close()


# --- opening and checking -------------------------------------------------------------


def _open(path: Path) -> tuple[InputContainer, AudioStream]:
    """Open ``path`` and find its first audio track, or raise the reason it has none."""
    where = str(path)
    try:
        size = path.stat().st_size
    except OSError as error:
        raise translate_extraction_error(error, where) from error
    if size == 0:
        raise Unsupported("empty file (0 bytes): no audio to scan", path=where)
    try:
        container = av.open(where, "r", container_options=_OPEN_OPTIONS,
                            metadata_errors="replace")
    except av.error.FFmpegError as error:
        if isinstance(error, OSError):  # not found, permission, I/O: not the content's
            raise translate_extraction_error(error, where) from error
        raise _unreadable(path, error) from error
    streams = container.streams
    if not streams.audio:
        kinds = ", ".join(f"{s.type} {getattr(s.codec_context, 'name', None) or 'unknown'}"
                          for s in streams) or "nothing"
        container.close()
        raise Unsupported(f"no audio track (the file holds: {kinds})", path=where)
    return container, streams.audio[0]


def _unreadable(path: Path, error: av.error.FFmpegError) -> ItemError:
    where = str(path)
    if _looks_like_text(path):
        return Unsupported(f"a text file, not audio (named {path.suffix or 'without a suffix'})",
                           path=where)
    if _mp4_without_index(path):
        return ExtractionError("the MP4/M4A index (moov box) is missing: the file is "
                               "truncated or still being written; it is scanned again once "
                               "it changes", path=where)
    if isinstance(error, av.error.ArgumentError):
        # FFmpeg refuses a format outside _DEMUXERS with EINVAL before reading further.
        return Unsupported("not a recording format gristmill reads (WAV, FLAC, MP3, "
                           "Ogg/Opus/Vorbis, M4A/AAC, MP4, WebM/Matroska, AIFF, WMA, ...)",
                           path=where)
    return ExtractionError(f"not readable as audio ({_ffmpeg_reason(error)}): not a "
                           "recording, or a damaged one", path=where)


def _silent(damage: _Damage, path: Path) -> ItemError:
    """The error for an audio track of which not one sample decodes."""
    if damage.bad_packets:
        return ExtractionError(f"the audio track is damaged: none of its first "
                               f"{damage.bad_packets} packet(s) decodes", path=str(path))
    return Unsupported("the audio track holds no sound (not one sample)", path=str(path))


def _info(container: InputContainer, stream: AudioStream, path: Path) -> AudioInfo:
    rate, channels = stream.sample_rate or 0, stream.channels or 0
    if rate < MIN_SAMPLE_RATE:
        raise ExtractionError(f"sample rate {rate} Hz in the header is below "
                              f"{MIN_SAMPLE_RATE:,} Hz: the header is damaged",
                              path=str(path))
    if rate > MAX_SAMPLE_RATE:
        raise LimitExceeded(f"sample rate {rate:,} Hz in the header is above "
                            f"{MAX_SAMPLE_RATE:,} Hz: not a sound recording, or a damaged "
                            "header", path=str(path))
    if not 0 < channels <= MAX_CHANNELS:
        raise ExtractionError(f"{channels} channels in the header: the header is damaged",
                              path=str(path))
    duration = _declared_duration(container, stream)
    if container.format.name == "wav" and stream.codec_context.name.startswith("pcm_"):
        duration = _riff_duration(path) or duration
    return AudioInfo(duration, stream.codec_context.name, rate, channels,
                     container.format.name)


def _declared_duration(container: InputContainer, stream: AudioStream) -> float | None:
    """The duration FFmpeg reads from the headers (for a WAV: what the file holds)."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _header_duration(info: AudioInfo, stream: AudioStream, path: Path) -> float | None:
    """The declared duration when a header states it; None when FFmpeg estimated it
    from the file's size and the bit rate (a VBR MP3 without a Xing header, raw AAC):
    such an estimate says nothing of truncation, and a wrong one would claim it."""
    if info.duration is None or info.container == "wav":  # a WAV's is _riff_duration's
        return info.duration
    if stream.bit_rate:
        estimate = path.stat().st_size * 8 / stream.bit_rate
        if abs(estimate - info.duration) <= 0.01 * info.duration + 0.1:
            return None
    return info.duration


def _riff_duration(path: Path) -> float | None:
    """Seconds of PCM a WAV's header declares (its data chunk's size). FFmpeg trusts the
    file's size instead when the file is shorter, which hides a truncated WAV."""
    with path.open("rb") as file:
        head = file.read(64 * 1024)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, rate, block = 12, 0, 0
    while offset + 8 <= len(head):
        kind, size = head[offset:offset + 4], int.from_bytes(head[offset + 4:offset + 8], "little")
        body = head[offset + 8:offset + 8 + min(size, 16)]
        if kind == b"fmt " and len(body) == 16:
            rate = int.from_bytes(body[4:8], "little")
            block = int.from_bytes(body[12:14], "little")
        elif kind == b"data":
            # 0 and 0xFFFFFFFF are the placeholders of a writer that has not finished.
            if not rate or not block or size in (0, 0xFFFF_FFFF):
                return None
            return size / block / rate
        offset += 8 + size + (size & 1)  # chunks are padded to an even size
    return None


def _origin(stream: AudioStream) -> float:
    """The time (s) that is second 0: the track's declared start (MP3's encoder delay,
    an MP4 track starting after its video), or 0."""
    if stream.start_time is None or stream.time_base is None:
        return 0.0
    return float(stream.start_time * stream.time_base)


def _looks_like_text(path: Path) -> bool:
    with path.open("rb") as file:
        head = file.read(4096)
    if b"\0" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        return error.start > len(head) - 4  # a character cut by the 4 KiB boundary
    return True


def _mp4_without_index(path: Path) -> bool:
    """Whether ``path`` is an MP4/M4A whose top-level boxes hold no ``moov`` (the index
    an MP4 writer adds last): FFmpeg's log says so, but PyAV keeps its log off."""
    with path.open("rb") as file:
        size = path.stat().st_size
        offset, boxes = 0, 0
        while offset + 8 <= size and boxes < 1_000:
            file.seek(offset)
            header = file.read(16)
            length, kind = int.from_bytes(header[:4], "big"), header[4:8]
            if boxes == 0 and kind != b"ftyp":
                return False
            if kind == b"moov":
                return False
            if length == 1 and len(header) == 16:  # a 64-bit size follows the type
                length = int.from_bytes(header[8:16], "big")
            if length < 8:  # 0: "to the end of the file"; below 8: not a box
                break
            offset += length
            boxes += 1
        return boxes > 0


def _ffmpeg_reason(error: av.error.FFmpegError) -> str:
    return str(getattr(error, "strerror", None) or error)


def _short(end: float, declared: float) -> bool:
    return declared - end > max(_SHORTFALL_SECONDS, _SHORTFALL_SHARE * declared)


def _tail_end(container: InputContainer, stream: AudioStream) -> float | None:
    """Seconds at which the audio really ends, found by decoding FFmpeg's idea of the
    last seconds; None when there is nothing to compare or the container cannot seek.

    A seek past the real end of a truncated MP3, FLAC or WebM lands on its last packets;
    for a WAV, FFmpeg's duration is already what the file holds.
    """
    declared = _declared_duration(container, stream)
    if declared is None or stream.time_base is None or declared <= _TAIL:
        return None
    target = _origin(stream) + declared - _TAIL
    try:
        container.seek(int(target / stream.time_base), stream=stream)
    except av.error.FFmpegError:
        return None
    damage = _Damage()
    first: float | None = None
    for item in _frames(container, stream, damage, expected=None):
        if isinstance(item, float):
            continue
        if first is None:
            first = item[0]
        if damage.position - first > _TAIL_LIMIT:
            return None
    return damage.position if first is not None else None


# --- decoding -------------------------------------------------------------------------


@dataclass
class _Damage:
    """Where decoding is and what went wrong on the way, for :attr:`Windows.note`."""

    position: float = 0.0  # seconds from the origin to the end of the last frame
    bad_packets: int = 0
    holes: int = 0
    first: float | None = None  # seconds at which the first damage is
    silence: float = 0.0  # seconds of silence put in holes
    stopped: str | None = None  # why decoding stopped before the end of the file

    def bad(self) -> None:
        self.bad_packets += 1
        if self.first is None:
            self.first = self.position

    def hole(self, seconds: float) -> None:
        self.holes += 1
        self.silence += seconds
        if self.first is None:
            self.first = self.position

    def note(self, declared: float | None) -> str | None:
        notes = []
        if self.stopped is not None:
            notes.append(f"decoding stopped at {self.position:.1f} s: {self.stopped}")
        elif declared is not None and _short(self.position, declared):
            notes.append(f"truncated: the audio stops at {self.position:.1f} s of the "
                         f"{declared:.1f} s its header declares")
        # A packet cut by a truncation is not worth a note of its own.
        if self.holes or (self.bad_packets and not notes):
            damaged = []
            if self.bad_packets:
                damaged.append(f"{self.bad_packets} packet(s) could not be decoded")
            if self.holes:
                damaged.append(f"{self.silence:.2f} s of lost audio became silence, so "
                               "later times stay right")
            notes.append(f"damaged from {self.first or 0.0:.1f} s: " + ", ".join(damaged))
        return "; ".join(notes) or None


def _frames(container: InputContainer, stream: AudioStream, damage: _Damage, *,
            expected: float | None,
            ) -> Generator[tuple[float, AudioFrame] | float, None, None]:
    """Decoded frames in order, each with its start in seconds from the origin, and the
    seconds of silence (a float) that fill a hole where damaged packets were skipped.

    ``expected`` is where the first frame should start: 0 when decoding from the top
    (a later first frame means the track starts late), None after a seek (it starts
    wherever the seek landed). ``damage`` follows the position and the damage.
    """
    # Seconds as floats, not Fractions: exact enough for hours (1e-12 s), and Fraction
    # arithmetic cost 0.5 s per 10 minutes of AAC (a third of the decoding).
    origin = _origin(stream)
    tick = float(stream.time_base) if stream.time_base is not None else None
    byte_rate = _counted_byte_rate(container, stream)
    shift = 0.0  # seconds lost in skipped garbage that the timestamps do not count
    in_a_row = 0
    try:
        for packet in container.demux(stream):
            try:
                frames = packet.decode()
            except av.error.FFmpegError as error:
                # A decoder does no I/O: whatever it answers (even EPERM, as FFmpeg's
                # AAC decoder does for some garbage) is about the packet.
                if isinstance(error, MemoryError):
                    raise
                if byte_rate and tick is not None:
                    counted = (packet.duration or 0) * tick
                    shift += max(0.0, packet.size / byte_rate - counted)
                damage.bad()
                in_a_row += 1
                if in_a_row >= _MAX_BAD_IN_A_ROW:
                    damage.stopped = (f"{in_a_row} damaged packets in a row "
                                      f"({_ffmpeg_reason(error)})")
                    return
                continue
            in_a_row = 0
            for frame in frames:
                start = expected
                if frame.pts is not None and tick is not None:
                    start = frame.pts * tick - origin + shift
                if start is None:
                    start = 0.0
                if expected is not None:
                    hole = start - expected
                    if _GAP < hole <= _MAX_GAP:
                        damage.hole(hole)
                        yield hole
                    else:  # jitter, or a corrupt timestamp: carry on from where we are
                        start = expected
                expected = start + frame.samples / frame.sample_rate
                damage.position = expected
                yield start, frame
    except av.error.FFmpegError as error:
        if isinstance(error, OSError | MemoryError):
            raise
        damage.stopped = f"the file ends early ({_ffmpeg_reason(error)})"


def _counted_byte_rate(container: InputContainer, stream: AudioStream) -> float | None:
    """Bytes per second of a stream whose timestamps count frames, else None."""
    if container.format.name not in _FRAME_COUNTED:
        return None
    bit_rate = stream.bit_rate or container.bit_rate
    return bit_rate / 8 if bit_rate else None


def _resampled(frames: Iterator[tuple[float, AudioFrame] | float],
               ) -> Iterator[np.ndarray | int]:
    """16 kHz mono float32 blocks of the frames, and counts of silent samples."""
    resampler = _resampler()
    for item in frames:
        if isinstance(item, float):
            yield round(item * SAMPLE_RATE)
            continue
        frame = item[1]
        try:
            converted = resampler.resample(frame)
        except ValueError:
            # The track changed its rate or layout mid-file (joined recordings): drain
            # the old resampler and start one for the new shape.
            yield from _blocks(resampler.resample(None))
            resampler = _resampler()
            converted = resampler.resample(frame)
        yield from _blocks(converted)
    yield from _blocks(resampler.resample(None))


def _resampler() -> AudioResampler:
    return AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)


def _blocks(frames: list[AudioFrame]) -> Iterator[np.ndarray]:
    for frame in frames:
        yield frame.to_ndarray().reshape(-1)


def _window_buffer(length: int) -> np.ndarray:
    """A float32 buffer in an anonymous mapping of its own, returned to the system the
    moment its last user drops it.

    Through malloc, buffers of a few MB freed between FFmpeg's small allocations leave
    the heap fragmented: a process's RSS then wanders several windows above its need
    and creeps up (measured, peak RSS from 2 to 60 minutes of FLAC: +5 MB through
    malloc, +1 MB so).
    """
    memory = mmap.mmap(-1, length * np.dtype(np.float32).itemsize)
    return np.frombuffer(memory, dtype=np.float32)


class _Windower:
    """Cuts a stream of samples into the windows of the contract, in one buffer."""

    def __init__(self, patches_per_window: int) -> None:
        self.length = (patches_per_window - 1) * PATCH_HOP + PATCH_SPAN
        self.step = patches_per_window * PATCH_HOP
        self.start = 0
        self.total = 0  # samples pushed
        self._buffer = _window_buffer(self.length)
        self._filled = 0
        self._fresh = False  # the buffer holds samples no window has held yet

    def push(self, block: np.ndarray | int) -> Iterator[AudioWindow]:
        """Append samples (or that many zeros) and yield every window they complete."""
        count = block if isinstance(block, int) else len(block)
        done = 0
        while done < count:
            take = min(count - done, self.length - self._filled)
            target = self._buffer[self._filled:self._filled + take]
            if isinstance(block, int):
                target.fill(0.0)
            else:
                target[:] = block[done:done + take]
            self._filled += take
            self.total += take
            done += take
            self._fresh = True
            if self._filled == self.length:
                yield self._emit()

    def finish(self) -> AudioWindow | None:
        """The last, shorter window, if it holds samples no earlier window held."""
        if not self._fresh:
            return None
        self._fresh = False
        # A view: the pages of the mapping past it were never touched, so cost nothing.
        return AudioWindow(self.start, self._buffer[:self._filled])

    def _emit(self) -> AudioWindow:
        # The caller keeps the full buffer; the next window starts in a new one with the
        # overlap copied over, so a window handed out never changes under its owner.
        window = AudioWindow(self.start, self._buffer)
        self._buffer = _window_buffer(self.length)
        self._buffer[:OVERLAP] = window.samples[self.step:]
        self._filled = OVERLAP
        self.start += self.step
        self._fresh = False
        return window


# --- clips ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _ClipFormat:
    container: str
    codec: str
    rates: tuple[int, ...] | None  # None: any rate
    max_channels: int


_CLIP_FORMATS: dict[str, _ClipFormat] = {
    "wav": _ClipFormat("wav", "pcm_s16le", None, MAX_CHANNELS),
    "opus": _ClipFormat("ogg", "libopus", (48_000,), 8),
    "mp3": _ClipFormat("mp3", "libmp3lame", (44_100, 48_000, 32_000, 22_050, 24_000, 16_000,
                                             11_025, 12_000, 8_000), 2),
}


def _cut(container: InputContainer, stream: AudioStream, path: Path, start_s: float,
         end_s: float, out: Path, spec: _ClipFormat) -> Path:
    handle, temporary = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(handle)
    try:
        if _write_clip(container, stream, start_s, end_s, Path(temporary), spec) == 0:
            raise ExtractionError(f"no audio between {start_s:.2f} s and {end_s:.2f} s",
                                  path=str(path))
        # Renamed only once whole: a crash leaves a stray temporary, never half a clip
        # under the name the catalog records.
        os.replace(temporary, out)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out


def _write_clip(container: InputContainer, stream: AudioStream, start_s: float,
                end_s: float, out: Path, spec: _ClipFormat) -> int:
    """Seek, decode ``[start_s, end_s)`` at the source's rate into ``out``; returns the
    samples written."""
    rate = stream.sample_rate
    first, last = round(start_s * rate), round(end_s * rate)  # sample indices, clip span
    if stream.time_base is not None:
        seek_to = _origin(stream) + max(0.0, start_s - _PREROLL)
        container.seek(int(seek_to / stream.time_base), stream=stream)
    written = 0
    with av.open(str(out), "w", format=spec.container) as output:
        encoder: Any = None
        for item in _frames(container, stream, _Damage(), expected=None):
            if isinstance(item, float):
                continue  # a hole from damage: the clip plays what is there
            start, frame = item
            at = round(start * frame.sample_rate)  # the frame's first sample's index
            if at >= last:
                break
            lo, hi = max(first - at, 0), min(last - at, frame.samples)
            if hi <= lo:
                continue
            if encoder is None:
                encoder = _clip_encoder(output, spec, frame)
            piece = _slice(frame, lo, hi)
            piece.pts, piece.time_base = written, Fraction(1, frame.sample_rate)
            output.mux(encoder.encode(piece))
            written += hi - lo
        if encoder is not None:
            output.mux(encoder.encode(None))
    return written


def _clip_encoder(output: Any, spec: _ClipFormat, frame: AudioFrame) -> Any:
    rate = frame.sample_rate
    if spec.rates is not None and rate not in spec.rates:
        rate = min(spec.rates, key=lambda allowed: abs(allowed - frame.sample_rate))
    channels = min(frame.layout.nb_channels, spec.max_channels)
    encoder = output.add_stream(spec.codec, rate=rate)
    # The encoder converts the decoded frames to its own format, rate and layout.
    # "Nc" is FFmpeg's usual layout for N channels: encoders refuse the unordered
    # layouts some demuxers give (a mono WAV's "1 channels"), and more channels than
    # the format holds are mixed down.
    encoder.codec_context.layout = f"{channels}c"
    return encoder


def _slice(frame: AudioFrame, lo: int, hi: int) -> AudioFrame:
    if lo == 0 and hi == frame.samples:
        frame.pts = None
        return frame
    data = frame.to_ndarray()
    if frame.format.is_planar:
        part = data[:, lo:hi]
    else:
        channels = frame.layout.nb_channels
        part = data[:, lo * channels:hi * channels]
    # A slice of the decoded array keeps its dtype, one from_ndarray accepts.
    contiguous: Any = np.ascontiguousarray(part)
    piece = AudioFrame.from_ndarray(contiguous, format=frame.format.name,
                                    layout=frame.layout.name)
    piece.sample_rate = frame.sample_rate
    return piece
