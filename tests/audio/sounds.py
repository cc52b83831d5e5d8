"""Test recordings built from numpy signals and written with PyAV's encoders.

The audio tests make every file they read: a signal here (:func:`tone_bursts`,
:func:`silence`, :func:`noise`, or a concatenation of them), written by
:func:`write_audio` in any of :data:`FORMATS`. Signals are float32 in [-1, 1]; a tone
burst is the suite's stand-in for laughter (the fixture model scores band energy).

Example::

    signal = tone_bursts(30.0, 16_000, [(4.0, 5.5), (20.0, 21.0)], frequency=1_000)
    write_audio(tmp_path / "day.mp3", signal, 44_100, channels=2, format="mp3")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np


@dataclass(frozen=True)
class Format:
    """How one file format is written: container, encoder and the rates it takes."""

    container: str
    codec: str
    suffix: str
    rates: tuple[int, ...] | None = None  # None: any rate
    options: tuple[tuple[str, str], ...] = ()  # the encoder's
    muxer: tuple[tuple[str, str], ...] = ()  # the container's
    quality: int | None = None  # a variable bit rate at this quality (FFmpeg's qscale)


#: Every format the tests write, by the name :func:`write_audio` takes.
FORMATS: dict[str, Format] = {
    "wav": Format("wav", "pcm_s16le", ".wav"),
    "flac": Format("flac", "flac", ".flac"),
    "mp3": Format("mp3", "libmp3lame", ".mp3",
                  (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000, 44_100, 48_000)),
    "opus": Format("ogg", "libopus", ".opus", (8_000, 12_000, 16_000, 24_000, 48_000)),
    "m4a": Format("ipod", "aac", ".m4a"),
    # FFmpeg's own Vorbis encoder (the build has no libvorbis) is "experimental" and
    # writes stereo only: write_audio turns mono into two equal channels for it.
    "ogg": Format("ogg", "vorbis", ".ogg", None, (("strict", "experimental"),)),
    "webm": Format("webm", "libopus", ".webm", (8_000, 12_000, 16_000, 24_000, 48_000)),
    "mp4": Format("mp4", "aac", ".mp4"),
    # Raw AAC (ADTS frames, no container) and a VBR MP3 without its Xing header: files
    # whose duration FFmpeg can only estimate from their size and first bit rate.
    "aac": Format("adts", "aac", ".aac"),
    "mp3-vbr-no-xing": Format("mp3", "libmp3lame", ".mp3",
                              (8_000, 11_025, 12_000, 16_000, 22_050, 24_000, 32_000,
                               44_100, 48_000), muxer=(("write_xing", "0"),), quality=4),
}
_QSCALE = 2  # AV_CODEC_FLAG_QSCALE: encode at a fixed quality, not a bit rate

# Samples handed to the encoder per frame: small enough that a long file written from
# blocks never needs more than one block in memory.
_FRAME = 4_096


def write_audio(path: Path, samples: np.ndarray | Iterable[np.ndarray], rate: int,
                channels: int = 1, format: str = "wav", *,
                bit_rate: int | None = None) -> Path:
    """Encode ``samples`` at ``rate`` Hz with ``channels`` channels into ``path``.

    ``samples`` is one array or an iterable of blocks (for long files); each array is
    mono ``(n,)`` -- copied to every channel -- or ``(n, channels)``. Values are floats
    in [-1, 1]. ``format`` is a key of :data:`FORMATS`. Returns ``path``.
    """
    spec = FORMATS[format]
    if spec.rates is not None and rate not in spec.rates:
        raise ValueError(f"{spec.codec} cannot encode {rate} Hz; use one of {spec.rates}")
    blocks = [samples] if isinstance(samples, np.ndarray) else samples
    written_channels = 2 if spec.codec == "vorbis" and channels == 1 else channels
    layout = av.AudioLayout(_layout_name(written_channels))
    with av.open(str(path), "w", format=spec.container, options=dict(spec.muxer)) as container:
        # Any: PyAV types a stream by codec name only for the names it lists.
        stream: Any = container.add_stream(spec.codec, rate=rate)
        stream.codec_context.layout = layout
        if spec.options:
            stream.codec_context.options = dict(spec.options)
        if spec.quality is not None:
            stream.codec_context.qscale = spec.quality
            stream.codec_context.flags |= _QSCALE
        if bit_rate is not None:
            stream.codec_context.bit_rate = bit_rate
        pts = 0
        for block in blocks:
            planar = _planar(np.asarray(block, dtype=np.float32), written_channels)
            for offset in range(0, planar.shape[1], _FRAME):
                part = np.ascontiguousarray(planar[:, offset:offset + _FRAME])
                frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
                frame.sample_rate = rate
                frame.pts = pts
                pts += part.shape[1]
                # The encoder converts to its own sample format and frame size.
                container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_video(path: Path, seconds: float, audio: np.ndarray | None = None,
                rate: int = 48_000, *, channels: int = 2) -> Path:
    """An MP4 with a small MPEG-4 video track of ``seconds`` and, when ``audio`` is
    given, an AAC track of it (mono samples, copied to ``channels`` channels)."""
    fps = 25
    with av.open(str(path), "w", format="mp4") as container:
        # Every stream is added before the first packet is written (the header).
        video: Any = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        layout = av.AudioLayout(_layout_name(channels))
        if audio is not None:
            sound: Any = container.add_stream("aac", rate=rate)
            sound.codec_context.layout = layout
        for index in range(round(seconds * fps)):
            picture = np.full((48, 64, 3), index * 5 % 256, dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            frame.pts = index
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if audio is not None:
            planar = _planar(np.asarray(audio, dtype=np.float32), channels)
            for offset in range(0, planar.shape[1], _FRAME):
                part = np.ascontiguousarray(planar[:, offset:offset + _FRAME])
                piece = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
                piece.sample_rate, piece.pts = rate, offset
                container.mux(sound.encode(piece))
            container.mux(sound.encode(None))
    return path


def tone_bursts(duration: float, rate: int, bursts: Sequence[tuple[float, float]], *,
                frequency: float = 1_000.0, amplitude: float = 0.5,
                background: float = 0.0, seed: int = 0) -> np.ndarray:
    """``duration`` seconds of quiet with a sine tone in each ``(start, end)`` burst.

    ``background`` adds white noise of that amplitude everywhere (0: digital silence).
    Bursts are given 5 ms ramps so that encoders do not smear clicks around them.
    """
    signal = noise(duration, rate, amplitude=background, seed=seed)
    ramp = max(1, int(0.005 * rate))
    for start, end in bursts:
        first, last = round(start * rate), min(len(signal), round(end * rate))
        if last <= first:
            continue
        t = np.arange(first, last, dtype=np.float32) / np.float32(rate)
        tone = (amplitude * np.sin(np.float32(2 * np.pi * frequency) * t)).astype(np.float32)
        envelope = np.ones(last - first, dtype=np.float32)
        edge = min(ramp, (last - first) // 2)
        if edge:
            envelope[:edge] = np.linspace(0, 1, edge, dtype=np.float32)
            envelope[-edge:] = np.linspace(1, 0, edge, dtype=np.float32)
        signal[first:last] += tone * envelope
    np.clip(signal, -1.0, 1.0, out=signal)
    return signal


def silence(duration: float, rate: int) -> np.ndarray:
    """``duration`` seconds of digital silence."""
    return np.zeros(round(duration * rate), dtype=np.float32)


def noise(duration: float, rate: int, *, amplitude: float = 0.1, seed: int = 0) -> np.ndarray:
    """``duration`` seconds of uniform white noise in [-amplitude, amplitude] (seeded)."""
    n = round(duration * rate)
    if amplitude == 0:
        return np.zeros(n, dtype=np.float32)
    generator = np.random.default_rng(seed)
    return generator.uniform(-amplitude, amplitude, n).astype(np.float32)


def sweep(duration: float, rate: int, *, low: float = 100.0, high: float = 4_000.0,
          amplitude: float = 0.5) -> np.ndarray:
    """A linear sine sweep from ``low`` to ``high`` Hz: every sample differs from its
    neighbours, so a misplaced or dropped block shows in a comparison."""
    t = np.arange(round(duration * rate), dtype=np.float64) / rate
    phase = 2 * np.pi * (low * t + (high - low) * t * t / (2 * duration))
    return (amplitude * np.sin(phase)).astype(np.float32)


def _planar(block: np.ndarray, channels: int) -> np.ndarray:
    if block.ndim == 1:
        return np.broadcast_to(block, (channels, block.shape[0]))
    if block.shape[1] == channels:
        return block.T
    if block.shape[1] == 1:
        return np.broadcast_to(block[:, 0], (channels, block.shape[0]))
    raise ValueError(f"a block of shape {block.shape} does not have {channels} channels")


def _layout_name(channels: int) -> str:
    return {1: "mono", 2: "stereo", 6: "5.1", 8: "7.1"}.get(channels, f"{channels}c")
