"""Streaming decode: windows on YAMNet's patch grid, flat memory, bad input, clips.

Every recording is written by the test (``sounds.py``). The reference for a decode is
the whole file pushed through one resampler of the same settings in one go.
"""

from __future__ import annotations

import itertools
import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from sounds import noise, silence, sweep, tone_bursts, write_audio, write_video

from gristmill.audio import decode
from gristmill.audio.decode import AudioWindow, ClipFormat, cut_clip, cut_clips, probe, windows
from gristmill.audio.framing import (
    HOP_SECONDS,
    OVERLAP,
    PATCH_HOP,
    PATCH_SPAN,
    SAMPLE_RATE,
    patches,
    scored_patches,
)
from gristmill.errors import ExtractionError, LimitExceeded, Unsupported

PPW = 5  # patches per window in most tests: several windows in a few seconds of sound
LENGTH = (PPW - 1) * PATCH_HOP + PATCH_SPAN  # 46,320 samples
STEP = PPW * PATCH_HOP  # 38,400 samples


def one_shot(path: Path) -> np.ndarray:
    """The whole first audio track through one resampler (16 kHz mono float32)."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
    parts = []
    with av.open(str(path)) as container:
        for frame in container.decode(container.streams.audio[0]):
            parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(frame)]
    parts += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    return np.concatenate(parts)


def source_decode(path: Path) -> tuple[np.ndarray, int]:
    """The whole first audio track at its own rate: [channels, samples] (planar)."""
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        frames = [_planar(frame) for frame in container.decode(stream)]
        return np.concatenate(frames, axis=1), stream.sample_rate


def _planar(frame: av.AudioFrame) -> np.ndarray:
    data = frame.to_ndarray()
    if frame.format.is_planar:
        return data
    return data.reshape(-1, frame.layout.nb_channels).T  # interleaved: one row a channel


def take(path: Path, patches_per_window: int = PPW) -> tuple[list[AudioWindow], str | None]:
    with windows(path, patches_per_window=patches_per_window) as stream:
        found = list(stream)
        return found, stream.note


def joined(found: list[AudioWindow]) -> np.ndarray:
    """The windows end to end, each overlap kept once."""
    return np.concatenate([found[0].samples] + [w.samples[OVERLAP:] for w in found[1:]])


def check_geometry(found: list[AudioWindow], total: int, patches_per_window: int) -> None:
    """Window k starts at k * step, holds a full window's samples but for the last
    (what is left, with samples no earlier window held), and overlaps the next by
    exactly OVERLAP; the windows hold as many whole patches as the whole."""
    length = (patches_per_window - 1) * PATCH_HOP + PATCH_SPAN
    step = patches_per_window * PATCH_HOP
    for k, window in enumerate(found):
        assert window.start == k * step
        assert window.samples.dtype == np.float32 and window.samples.ndim == 1
        expected = total - window.start if k == len(found) - 1 else length
        assert len(window.samples) == expected
    for before, after in itertools.pairwise(found):
        assert np.array_equal(before.samples[step:], after.samples[:OVERLAP])
    if len(found) > 1:
        assert total - found[-1].start > OVERLAP
    assert sum(patches(len(w.samples)) for w in found) == patches(total)


def wav_header(rate: int, channels: int = 1, bits: int = 16, samples: int = 16_000) -> bytes:
    """A PCM WAV file, its header written by hand (to claim what an encoder would not)."""
    data = bytes(samples * channels * bits // 8)
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", 1, channels, rate, (rate * block) & 0xFFFF_FFFF, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt
    body += b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def bytes_read() -> int:
    """Bytes this process has read through read(2) and friends so far (Linux)."""
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


# --- the patch grid -------------------------------------------------------------------


def test_patch_grid() -> None:
    """A patch reads 15,600 samples, starts every 7,680; windows overlap by 7,920."""
    assert (PATCH_SPAN, PATCH_HOP, OVERLAP, SAMPLE_RATE) == (15_600, 7_680, 7_920, 16_000)
    assert HOP_SECONDS == 0.48
    assert [patches(n) for n in (0, 15_599, 15_600, 23_279, 23_280)] == [0, 0, 1, 1, 2]
    assert patches(60 * 16_000) == 123
    # What a model scores: every sample in some patch, the tail in a padded one.
    assert [scored_patches(n) for n in (0, 1, 15_600, 15_601, 23_280, 23_281)] \
        == [0, 1, 1, 2, 2, 3]


# --- windows equal a one-shot decode --------------------------------------------------

CASES = [  # (format, rate, channels)
    ("wav", 44_100, 2),
    ("flac", 48_000, 1),
    ("mp3", 44_100, 2),
    ("opus", 48_000, 1),
    ("m4a", 44_100, 2),
    ("ogg", 44_100, 2),
    ("webm", 48_000, 2),
    ("mp4", 48_000, 1),
    ("wav", 8_000, 1),
    ("mp3", 8_000, 1),
    ("flac", 96_000, 2),
    ("wav", 48_000, 6),
    ("m4a", 48_000, 6),
    ("webm", 48_000, 6),
]


@pytest.mark.parametrize(("form", "rate", "channels"), CASES,
                         ids=[f"{f}-{r // 1000}k-{c}ch" for f, r, c in CASES])
def test_windows_equal_a_one_shot_decode(tmp_path: Path, form: str, rate: int,
                                         channels: int) -> None:
    """Windows joined (overlaps dropped) are the one-shot decode, sample for sample."""
    signal = sweep(12.0, rate, high=min(4_000.0, 0.45 * rate))
    path = write_audio(tmp_path / f"sweep.{form}", signal, rate, channels, form)
    found, note = take(path)
    whole = one_shot(path)
    assert len(found) >= 4
    check_geometry(found, len(whole), PPW)
    assert np.array_equal(joined(found), whole)
    assert abs(len(whole) / SAMPLE_RATE - 12.0) < 0.1
    assert note is None


def test_mp4_with_video_decodes_its_audio_track(tmp_path: Path) -> None:
    """An MP4 with a video track and an AAC track: the windows are the audio track's."""
    path = write_video(tmp_path / "film.mp4", 8.0, sweep(8.0, 48_000))
    found, note = take(path)
    whole = one_shot(path)
    check_geometry(found, len(whole), PPW)
    assert np.array_equal(joined(found), whole)
    assert note is None


@pytest.mark.parametrize("total", [1_000, PATCH_SPAN, LENGTH, LENGTH + 1, 3 * STEP + OVERLAP,
                                   3 * STEP + OVERLAP + 5_000])
def test_window_edges(tmp_path: Path, total: int) -> None:
    """Exact lengths at 16 kHz: no window of leftovers only, a short file is one window."""
    signal = np.random.default_rng(total).uniform(-0.5, 0.5, total).astype(np.float32)
    path = write_audio(tmp_path / "exact.wav", signal, SAMPLE_RATE, 1, "wav")
    found, _ = take(path)
    check_geometry(found, total, PPW)
    expected_count = max(1, -(-(total - OVERLAP) // STEP))
    assert len(found) == expected_count
    np.testing.assert_allclose(joined(found), signal, atol=1 / 32_768)


def test_default_windows_are_a_minute_of_hop(tmp_path: Path) -> None:
    """125 patches a window by default: starts 60 s apart, 967,920 samples each."""
    signal = sweep(130.0, SAMPLE_RATE)
    path = write_audio(tmp_path / "long.wav", signal, SAMPLE_RATE, 1, "wav")
    with windows(path) as stream:
        found = [(w.start, len(w.samples)) for w in stream]
    assert found == [(0, 967_920), (960_000, 967_920), (1_920_000, 160_000)]


def test_joined_recordings_with_another_rate_decode_on(tmp_path: Path) -> None:
    """Two MP3s joined (44.1 kHz mono, then 22.05 kHz stereo) decode to both, in order."""
    first = write_audio(tmp_path / "a.mp3", tone_bursts(5.0, 44_100, [(1.0, 2.0)]), 44_100,
                        1, "mp3")
    second = write_audio(tmp_path / "b.mp3", tone_bursts(5.0, 22_050, [(1.0, 2.0)]),
                         22_050, 2, "mp3")
    path = tmp_path / "joined.mp3"
    path.write_bytes(first.read_bytes() + second.read_bytes())
    found, _ = take(path)
    samples = joined(found)
    assert abs(len(samples) / SAMPLE_RATE - 10.0) < 0.2
    loud = np.flatnonzero(np.abs(samples) > 0.25) / SAMPLE_RATE
    assert 0.9 < loud.min() < 1.1 and 5.9 < loud.max() < 7.1


def test_probe_reads_the_headers(tmp_path: Path) -> None:
    """probe() reports duration, decoder, rate and channels without decoding it all."""
    path = write_audio(tmp_path / "a.mp3", sweep(20.0, 44_100), 44_100, 2, "mp3")
    info = probe(path)
    assert (info.codec, info.sample_rate, info.channels, info.container) == (
        "mp3float", 44_100, 2, "mp3")
    assert info.duration is not None and abs(info.duration - 20.0) < 0.1
    with windows(path) as stream:
        assert stream.info == info


# --- memory ---------------------------------------------------------------------------

_MEASURE = """
import json, sys, tracemalloc
from pathlib import Path

def peak_kb():  # VmHWM: this process's peak RSS (unlike ru_maxrss, not the parent's)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

from gristmill.audio.decode import windows
imported = peak_kb()
tracemalloc.start()
total = 0
for window in windows(Path(sys.argv[1])):
    total = window.start + len(window.samples)
print(json.dumps({"samples": total, "python_peak": tracemalloc.get_traced_memory()[1],
                  "imported_kb": imported, "peak_kb": peak_kb()}))
"""


def _minutes(count: int, rate: int) -> Iterator[np.ndarray]:
    for minute in range(count):
        start = 10.0 + minute % 7
        yield tone_bursts(60.0, rate, [(start, start + 2.0)], frequency=500 + 50 * (minute % 9),
                          background=0.002, seed=minute)


def _measure(path: Path) -> dict[str, int]:
    done = subprocess.run([sys.executable, "-c", _MEASURE, str(path)], check=True,
                          capture_output=True, text=True, timeout=120)
    result: dict[str, int] = json.loads(done.stdout)
    return result


@pytest.mark.slow
def test_memory_does_not_grow_with_duration(tmp_path: Path) -> None:
    """A 20-minute recording peaks within 3 MB of a 2-minute one (each decoded in a
    process of its own); holding its 16 kHz samples alone would take 77 MB."""
    rate = 48_000
    short = write_audio(tmp_path / "2min.flac", _minutes(2, rate), rate, 2, "flac")
    long = write_audio(tmp_path / "20min.flac", _minutes(20, rate), rate, 2, "flac")
    small, large = _measure(short), _measure(long)
    assert small["samples"] == 2 * 60 * SAMPLE_RATE
    assert large["samples"] == 20 * 60 * SAMPLE_RATE
    assert large["peak_kb"] - small["peak_kb"] < 3 * 1024, (small, large)
    # Decoding costs a few windows (about 4 MB each) above the imports, at any length.
    assert large["peak_kb"] - large["imported_kb"] < 32 * 1024, large
    # Python objects do not pile up either (the windows themselves are mappings of
    # their own, which tracemalloc does not see; RSS does).
    assert large["python_peak"] < 1024 * 1024, large


# --- bad input ------------------------------------------------------------------------


def test_empty_file(tmp_path: Path) -> None:
    """A zero-length file is skipped as empty."""
    path = tmp_path / "empty.mp3"
    path.touch()
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(Unsupported, match=r"empty file \(0 bytes\)"):
            call()


def test_text_named_m4a(tmp_path: Path) -> None:
    """A text file named .m4a is skipped as text."""
    path = tmp_path / "notes.m4a"
    path.write_text("shopping: eggs, flour, laughter\n" * 40)
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(Unsupported, match=r"a text file, not audio \(named \.m4a\)"):
            call()


def test_png_named_mp3(tmp_path: Path) -> None:
    """An image named .mp3 is refused as a format gristmill does not read."""
    path = tmp_path / "cover.mp3"
    with av.open(str(path), "w", format="image2", options={"update": "1"}) as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 8, 8, "rgb24"
        frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert path.read_bytes()[:4] == b"\x89PNG"
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(Unsupported, match="not a recording format gristmill reads"):
            call()


def test_video_without_audio(tmp_path: Path) -> None:
    """An MP4 holding only video is skipped, naming what it holds."""
    path = write_video(tmp_path / "silent-film.mp4", 1.0)
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(Unsupported, match=r"no audio track \(the file holds: video mpeg4\)"):
            call()


def test_missing_file(tmp_path: Path) -> None:
    """A file gone before it is read fails with that reason."""
    with pytest.raises(ExtractionError, match="disappeared"):
        probe(tmp_path / "gone.wav")


def test_wav_without_samples(tmp_path: Path) -> None:
    """A WAV with a header and no samples (a recorder that has not written yet)."""
    path = tmp_path / "header.wav"
    path.write_bytes(wav_header(16_000, samples=0))
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(Unsupported, match="holds no sound"):
            call()


@pytest.mark.parametrize(("rate", "error", "reason"), [
    (1, ExtractionError, r"sample rate 1 Hz in the header is below 4,000 Hz"),
    (10_000_000, LimitExceeded, r"sample rate 10,000,000 Hz in the header is above 768,000"),
])
def test_absurd_sample_rate(tmp_path: Path, rate: int, error: type[Exception],
                            reason: str) -> None:
    """A hand-made WAV header claiming 1 Hz or 10 MHz is refused before decoding."""
    path = tmp_path / "odd.wav"
    path.write_bytes(wav_header(rate))
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(error, match=reason):
            call()


@pytest.mark.parametrize("form", ["mp3", "flac", "wav", "webm"])
def test_truncated_file_gives_the_half_that_decodes(tmp_path: Path, form: str) -> None:
    """Cut at half its bytes: probe() refuses it saying where the audio stops; windows()
    give the part that decodes, with a note saying the same."""
    rate = 48_000
    signal = tone_bursts(60.0, rate, [(10.0, 11.0), (45.0, 46.0)], background=0.01)
    whole = write_audio(tmp_path / f"whole.{form}", signal, rate, 2, form)
    path = tmp_path / f"half.{form}"
    path.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])

    with pytest.raises(ExtractionError, match=r"truncated: the audio stops at (\d+\.\d) s "
                                              r"of the 60\.0 s its header declares") as refused:
        probe(path)
    found, note = take(path)
    decoded = joined(found)
    seconds = len(decoded) / SAMPLE_RATE
    assert 25.0 < seconds < 35.0
    assert note == (f"truncated: the audio stops at {seconds:.1f} s of the 60.0 s its "
                    "header declares")
    assert f"{seconds:.1f} s" in str(refused.value)
    check_geometry(found, len(decoded), PPW)
    # What decodes is the recording's first half: its first burst, at its time.
    reference = one_shot(whole)[:len(decoded)]
    np.testing.assert_allclose(decoded[:20 * SAMPLE_RATE], reference[:20 * SAMPLE_RATE],
                               atol=1e-4)


@pytest.mark.parametrize("form", ["mp3-vbr-no-xing", "aac"])
def test_an_estimated_duration_is_not_taken_for_truncation(tmp_path: Path, form: str) -> None:
    """A VBR MP3 without a Xing header and raw AAC state no duration; FFmpeg's estimate
    from size and first bit rate (here far off) does not make them "truncated"."""
    rate = 44_100
    signal = np.concatenate([silence(20.0, rate), noise(20.0, rate, amplitude=0.5),
                             silence(20.0, rate)])
    path = write_audio(tmp_path / f"quiet-loud-quiet.{form}", signal, rate, 1, form)
    info = probe(path)
    assert info.duration is not None and abs(info.duration - 60.0) > 5.0  # the estimate
    found, note = take(path)
    assert note is None
    assert abs(len(joined(found)) / SAMPLE_RATE - 60.0) < 0.1


@pytest.mark.parametrize("form", ["m4a", "mp4"])
def test_truncated_mp4_has_no_index(tmp_path: Path, form: str) -> None:
    """An MP4/M4A cut short lacks its index (written last): refused with that reason."""
    whole = write_audio(tmp_path / f"whole.{form}", sweep(20.0, 48_000), 48_000, 1, form)
    path = tmp_path / f"half.{form}"
    path.write_bytes(whole.read_bytes()[:whole.stat().st_size // 2])
    for call in (lambda: probe(path), lambda: list(windows(path))):
        with pytest.raises(ExtractionError, match=r"index \(moov box\) is missing"):
            call()


@pytest.mark.parametrize("form", ["mp3", "flac", "m4a", "opus"])
def test_damaged_middle_keeps_later_times(tmp_path: Path, form: str) -> None:
    """5 KB of garbage mid-file: decoding goes on, the lost stretch becomes silence (so
    a burst after it is still found at its true second), and the note says so."""
    rate = 48_000
    signal = tone_bursts(60.0, rate, [(45.0, 46.0)], amplitude=0.8, background=0.005)
    path = write_audio(tmp_path / f"damaged.{form}", signal, rate, 1, form)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 5_000] = np.random.default_rng(7).integers(0, 256, 5_000,
                                                                     dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))

    found, note = take(path)
    decoded = joined(found)
    assert note is not None and note.startswith("damaged from ")
    assert "became silence" in note
    onset = np.flatnonzero(np.abs(decoded) > 0.4)[0] / SAMPLE_RATE
    assert abs(onset - 45.0) < 0.03, onset
    assert abs(len(decoded) / SAMPLE_RATE - 60.0) < 0.5


# --- clips ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def three_minutes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 3-minute sweep as a 48 kHz stereo WAV, a 44.1 kHz mono MP3 and a 48 kHz M4A."""
    folder = tmp_path_factory.mktemp("clips")
    return {
        "wav": write_audio(folder / "long.wav", sweep(180.0, 48_000), 48_000, 2, "wav"),
        "mp3": write_audio(folder / "long.mp3", sweep(180.0, 44_100), 44_100, 1, "mp3"),
        "m4a": write_audio(folder / "long.m4a", sweep(180.0, 48_000), 48_000, 1, "m4a"),
    }


@pytest.fixture
def decoded_seconds(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Seconds of every frame the decode module decodes from now on (a spy on the real
    decoding loop, which it passes through)."""
    seconds: list[float] = []
    real = decode._frames

    def counting(*args: Any, **kwargs: Any) -> Iterator[Any]:
        for item in real(*args, **kwargs):
            if isinstance(item, tuple):
                seconds.append(item[1].samples / item[1].sample_rate)
            yield item

    monkeypatch.setattr(decode, "_frames", counting)
    return seconds


def expected_slice(whole: np.ndarray, rate: int, start: float, end: float) -> np.ndarray:
    return whole[:, round(start * rate):round(end * rate)]


def assert_same_sound(clip: np.ndarray, expected: np.ndarray) -> None:
    """Equal samples: exactly for a 16-bit source, else to the clip's 16-bit rounding."""
    if expected.dtype == np.int16:
        assert np.array_equal(clip, expected)
    else:
        np.testing.assert_allclose(clip / 32_768, expected, atol=1.01 / 32_768)


@pytest.mark.parametrize("source", ["wav", "mp3", "m4a"])
def test_clip_is_the_slice_of_the_whole(three_minutes: dict[str, Path], tmp_path: Path,
                                        decoded_seconds: list[float], source: str) -> None:
    """[61.2 s, 63.0 s] of a 3-minute file is the same slice of its whole decode (to
    16-bit rounding), and cutting it decoded the span and its 1 s pre-roll only."""
    path = three_minutes[source]
    whole, rate = source_decode(path)
    decoded_seconds.clear()
    before = bytes_read()
    out = cut_clip(path, 61.2, 63.0, tmp_path / "clip.wav")
    read = bytes_read() - before

    clip, clip_rate = source_decode(out)
    assert clip_rate == rate
    assert_same_sound(clip, expected_slice(whole, rate, 61.2, 63.0))
    assert 1.8 <= sum(decoded_seconds) < 1.8 + 1.0 + 0.2, decoded_seconds
    if source == "wav":  # and it read little: a WAV is found by arithmetic
        assert read < path.stat().st_size * 61.2 / 180.0 / 4, read


def test_clips_of_one_file_in_one_pass(three_minutes: dict[str, Path], tmp_path: Path,
                                       decoded_seconds: list[float]) -> None:
    """cut_clips() cuts several spans, in any order, each the slice of the whole."""
    path = three_minutes["mp3"]
    whole, rate = source_decode(path)
    spans = [(150.0, 151.5, tmp_path / "c.wav"), (12.25, 13.0, tmp_path / "a.wav"),
             (90.0, 90.5, tmp_path / "b.wav")]
    decoded_seconds.clear()
    assert cut_clips(path, spans) == [out for _, _, out in spans]
    for start, end, out in spans:
        clip, _ = source_decode(out)
        assert_same_sound(clip, expected_slice(whole, rate, start, end))
    assert sum(decoded_seconds) < 1.5 + 0.75 + 0.5 + 3 * 1.2


@pytest.mark.parametrize(("rate", "channels", "expected"), [
    (48_000, 6, {"wav": (48_000, 6), "opus": (48_000, 6), "mp3": (48_000, 2)}),
    (96_000, 2, {"wav": (96_000, 2), "opus": (48_000, 2), "mp3": (48_000, 2)}),
])
def test_clip_formats(tmp_path: Path, rate: int, channels: int,
                      expected: dict[ClipFormat, tuple[int, int]]) -> None:
    """WAV clips keep the source's rate and channels; Opus clips are 48 kHz; MP3 clips
    take the nearest rate MP3 has and at most two channels."""
    path = write_audio(tmp_path / "source.flac", sweep(10.0, rate), rate, channels, "flac")
    for form, (clip_rate, clip_channels) in expected.items():
        out = cut_clip(path, 2.0, 3.5, tmp_path / f"clip.{form}", format=form)
        with av.open(str(out)) as container:
            stream = container.streams.audio[0]
            assert (stream.sample_rate, stream.channels) == (clip_rate, clip_channels)
            seconds = sum(frame.samples for frame in container.decode(stream)) / clip_rate
        assert abs(seconds - 1.5) < 0.06, (form, seconds)


@pytest.mark.parametrize("source", ["wav", "mp3"])
def test_clip_at_the_start(three_minutes: dict[str, Path], tmp_path: Path,
                           source: str) -> None:
    """A clip from second 0 needs no pre-roll before the file's start."""
    path = three_minutes[source]
    whole, rate = source_decode(path)
    clip, _ = source_decode(cut_clip(path, 0.0, 0.5, tmp_path / "start.wav"))
    assert_same_sound(clip, expected_slice(whole, rate, 0.0, 0.5))


def test_clip_replaces_the_old_one_whole(three_minutes: dict[str, Path],
                                         tmp_path: Path) -> None:
    """A second cut to the same path replaces the clip and leaves no temporary file."""
    path = three_minutes["wav"]
    out = tmp_path / "event.wav"
    cut_clip(path, 10.0, 11.0, out)
    cut_clip(path, 20.0, 22.0, out)
    clip, rate = source_decode(out)
    assert clip.shape[1] == 2 * rate
    assert sorted(p.name for p in tmp_path.iterdir()) == ["event.wav"]


def test_clip_outside_the_audio(three_minutes: dict[str, Path], tmp_path: Path) -> None:
    """A span after the end is an error naming it; a backwards span is refused."""
    path = three_minutes["wav"]
    with pytest.raises(ExtractionError, match=r"no audio between 200\.00 s and 201\.00 s"):
        cut_clip(path, 200.0, 201.0, tmp_path / "late.wav")
    with pytest.raises(ValueError, match="0 <= start < end"):
        cut_clip(path, 5.0, 4.0, tmp_path / "backwards.wav")
    assert list(tmp_path.iterdir()) == []
