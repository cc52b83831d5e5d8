"""Events from patch scores: hysteresis, minimum duration, merging, streaming, edges."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from fixture_model import build_fixture_model, write_class_map
from sounds import tone_bursts, write_audio

from gristmill.audio.decode import windows
from gristmill.audio.events import LAUGHTER, Event, EventDetector, detect
from gristmill.audio.framing import PATCH_HOP
from gristmill.audio.model import AudioModel
from gristmill.errors import ConfigError

LABELS = [f"class {i}" for i in range(20)]
LABELS[13], LABELS[14], LABELS[15] = "Laughter", "Baby laughter", "Giggle"
LAUGH = 13
# Plain settings for hand-computed cases: no smoothing, no merging, no minimum.
PLAIN = {"threshold": 0.5, "release": 0.3, "min_duration": 0.0, "max_gap": 0.0,
         "smooth": 1}


def scores_of(column: list[float], index: int = LAUGH) -> np.ndarray:
    """A [patches, 20] score array with ``column`` in class ``index``, zeros elsewhere."""
    scores = np.zeros((len(column), len(LABELS)), dtype=np.float32)
    scores[:, index] = column
    return scores


def span(first: int, last: int) -> tuple[float, float]:
    """The seconds patches first..last stand for (each the 0.48 s hop at its centre)."""
    return first * 0.48 + 0.24, last * 0.48 + 0.72


def test_hysteresis_opens_at_threshold_and_closes_below_release() -> None:
    """An event starts where a score reaches the threshold and lasts down to release."""
    column = [0.0, 0.45, 0.6, 0.4, 0.31, 0.2, 0.45, 0.0]
    events = detect(scores_of(column), LABELS, [LAUGH], **PLAIN)
    start, end = span(2, 4)
    assert len(events) == 1
    event = events[0]
    assert (event.label, event.class_index) == ("Laughter", LAUGH)
    assert event.start == pytest.approx(start) and event.end == pytest.approx(end)
    assert event.peak == pytest.approx(0.6)
    assert event.mean == pytest.approx((0.6 + 0.4 + 0.31) / 3)


def test_short_events_are_dropped() -> None:
    """One patch (0.48 s) is below a 0.5 s minimum; two patches (0.96 s) are not."""
    column = [0.0, 0.9, 0.0, 0.0, 0.9, 0.9, 0.0]
    settings = {**PLAIN, "min_duration": 0.5}
    events = detect(scores_of(column), LABELS, [LAUGH], **settings)
    assert [(e.start, e.end) for e in events] == [pytest.approx(span(4, 5))]
    assert len(detect(scores_of(column), LABELS, [LAUGH], **PLAIN)) == 2


def test_events_merge_across_short_gaps() -> None:
    """A gap of one patch (0.48 s) merges under max_gap 0.5 s; two patches do not."""
    column = [0.9, 0.9, 0.1, 0.9, 0.0, 0.0, 0.9, 0.0]
    events = detect(scores_of(column), LABELS, [LAUGH], **{**PLAIN, "max_gap": 0.5})
    assert [(e.start, e.end) for e in events] == [
        pytest.approx((0.0, span(0, 3)[1])), pytest.approx(span(6, 6))]
    # The merged event's mean counts the gap it spans.
    assert events[0].mean == pytest.approx((0.9 * 3 + 0.1) / 4)
    wide = detect(scores_of(column), LABELS, [LAUGH], **{**PLAIN, "max_gap": 1.0})
    assert [(e.start, e.end) for e in wide] == [pytest.approx((0.0, span(0, 6)[1]))]
    apart = detect(scores_of(column), LABELS, [LAUGH], **PLAIN)
    assert len(apart) == 3


def test_merge_needs_the_threshold_again() -> None:
    """After an event ends, scores between release and threshold do not restart it."""
    column = [0.9, 0.1, 0.4, 0.4, 0.1]
    events = detect(scores_of(column), LABELS, [LAUGH], **{**PLAIN, "max_gap": 5.0})
    assert [(e.start, e.end) for e in events] == [pytest.approx((0.0, span(0, 0)[1]))]


def test_minimum_duration_applies_after_merging() -> None:
    """Two one-patch bursts too short alone count once merged into one event."""
    column = [0.0, 0.9, 0.0, 0.9, 0.0]
    settings = {**PLAIN, "min_duration": 1.0}
    assert detect(scores_of(column), LABELS, [LAUGH], **settings) == []
    merged = detect(scores_of(column), LABELS, [LAUGH], **{**settings, "max_gap": 0.5})
    assert [(e.start, e.end) for e in merged] == [pytest.approx(span(1, 3))]


def test_smoothing_averages_neighbours_and_fewer_at_the_ends() -> None:
    """A lone spike is averaged with its two neighbours; at the start with one."""
    spike = [0.0, 0.0, 0.9, 0.0, 0.0]
    assert detect(scores_of(spike), LABELS, [LAUGH], **{**PLAIN, "smooth": 3}) == []
    first = [0.9, 0.6, 0.0, 0.0]  # patch 0: (0.9 + 0.6) / 2, not divided by 3
    events = detect(scores_of(first), LABELS, [LAUGH], **{**PLAIN, "smooth": 3})
    assert len(events) == 1
    assert events[0].peak == pytest.approx(0.75)
    assert events[0].start == 0.0


def test_event_at_the_very_start_and_end() -> None:
    """An event from the first patch starts at 0 s; one to the last ends at the end."""
    column = [0.9, 0.9, 0.0, 0.0, 0.9, 0.9]
    events = detect(scores_of(column), LABELS, [LAUGH], **PLAIN)
    assert [(e.start, e.end) for e in events] == [
        pytest.approx((0.0, span(0, 1)[1])), pytest.approx(span(4, 5))]
    ended = detect(scores_of(column), LABELS, [LAUGH], **PLAIN, duration=3.1)
    assert ended[1].end == pytest.approx(3.1)
    # A duration shorter than the last hop's end (a padded last patch) clips it too.
    assert detect(scores_of([0.9, 0.9]), LABELS, [LAUGH], **PLAIN,
                  duration=1.0)[0].end == pytest.approx(1.0)


def test_silence_and_nothing_give_no_events() -> None:
    """All-quiet scores, and no scores at all, have no events."""
    assert detect(np.zeros((500, len(LABELS)), np.float32), LABELS, LAUGHTER[:3]) == []
    assert detect(np.zeros((0, len(LABELS)), np.float32), LABELS, [LAUGH]) == []
    assert detect([], LABELS, [LAUGH], duration=0.0) == []


def test_classes_by_name_or_index_each_found_separately() -> None:
    """Classes are named as the class map names them, or indexed; each has its events."""
    scores = scores_of([0.0, 0.9, 0.9, 0.0, 0.0, 0.0])
    scores[3:5, 15] = 0.8
    scores[:, 2] = 0.9  # not asked for
    events = detect(scores, LABELS, ["Laughter", 15, "Giggle"], **PLAIN)
    assert [(e.label, e.class_index) for e in events] == [("Laughter", 13), ("Giggle", 15)]
    assert events[1].start == pytest.approx(span(3, 4)[0])
    one = detect(scores, LABELS, "Laughter", **PLAIN)
    assert [e.label for e in one] == ["Laughter"]


def test_unknown_classes_say_what_exists() -> None:
    """A name the model lacks suggests close names; an index out of range is refused."""
    with pytest.raises(ConfigError, match=r"no class named 'laugh' \(did you mean "
                                          r"'Laughter', 'Baby laughter'\?\)"):
        detect(scores_of([0.0]), LABELS, ["laugh"])
    with pytest.raises(ConfigError, match="no class 20: its classes are 0 to 19"):
        detect(scores_of([0.0]), LABELS, [20])
    with pytest.raises(ConfigError, match="no sound classes"):
        detect(scores_of([0.0]), LABELS, [])


@pytest.mark.parametrize("settings", [
    {"threshold": 0.3, "release": 0.5},
    {"threshold": 1.5},
    {"min_duration": -1.0},
    {"max_gap": -0.1},
    {"smooth": 0},
])
def test_bad_settings_are_config_errors(settings: dict[str, float]) -> None:
    """Settings that cannot work name themselves."""
    with pytest.raises(ConfigError, match=next(iter(settings))):
        EventDetector(LABELS, [LAUGH], **settings)  # type: ignore[arg-type]


def test_windows_must_come_in_order() -> None:
    """A skipped or repeated window is a caller's bug, refused loudly."""
    detector = EventDetector(LABELS, [LAUGH])
    detector.push(0, scores_of([0.0] * 5))
    with pytest.raises(ValueError, match="from patch 3 pushed when patch 5 was due"):
        detector.push(3, scores_of([0.0] * 5))


def random_scores(patches: int, seed: int) -> np.ndarray:
    """Scores that wander across the thresholds: bursts of several lengths and noise."""
    generator = np.random.default_rng(seed)
    scores = generator.uniform(0.0, 0.4, (patches, len(LABELS))).astype(np.float32)
    for column in (13, 14, 15):
        for _ in range(patches // 15):
            start = int(generator.integers(0, patches))
            length = int(generator.integers(1, 8))
            scores[start:start + length, column] = generator.uniform(0.3, 1.0)
    return scores


@pytest.mark.parametrize("split", [1, 2, 7, 125, "random"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_streaming_gives_the_events_of_one_call(split: int | str, seed: int) -> None:
    """Scores pushed window by window, cut anywhere, give exactly the same events (with
    settings that make many of them out of the noise of these scores)."""
    scores = random_scores(600, seed)
    settings = {"threshold": 0.3, "release": 0.2, "min_duration": 0.5, "max_gap": 0.5,
                "smooth": 3, "duration": 300.0}
    whole = detect(scores, LABELS, LAUGHTER[:3], **settings)
    assert len(whole) > 10
    cuts = (sorted(np.random.default_rng(seed).choice(np.arange(1, 600), 40, replace=False))
            if split == "random" else list(range(int(split), 600, int(split))))
    bounds = [0, *cuts, 600]
    parts = [(a, scores[a:b]) for a, b in itertools.pairwise(bounds)]
    assert detect(parts, LABELS, LAUGHTER[:3], **settings) == whole


def test_detector_returns_events_as_soon_as_they_are_final() -> None:
    """push() hands out an event once no later patch can change it; finish() the rest."""
    detector = EventDetector(LABELS, [LAUGH], **{**PLAIN, "max_gap": 0.5})
    column = [0.9, 0.9, 0.0, 0.0, 0.0, 0.9]
    early = detector.push(0, scores_of(column[:5]))
    assert [(e.start, e.end) for e in early] == [pytest.approx((0.0, span(0, 1)[1]))]
    assert detector.push(5, scores_of(column[5:])) == []
    assert [(e.start, e.end) for e in detector.finish()] == [pytest.approx(span(5, 5))]


def test_tone_bursts_in_a_recording_become_events(tmp_path: Path) -> None:
    """Fixture model over an MP3, window by window: the bursts' classes and times."""
    build_fixture_model(tmp_path / "fixture.onnx")
    write_class_map(tmp_path / "fixture_class_map.csv")
    model = AudioModel.load(tmp_path / "fixture.onnx")
    signal = tone_bursts(90.0, 22_050, [(10.0, 14.0), (61.0, 63.5)], frequency=1_000,
                         background=0.005)
    signal += tone_bursts(90.0, 22_050, [(30.0, 32.0)], frequency=3_000)
    path = write_audio(tmp_path / "day.mp3", signal, 22_050, format="mp3")
    settings = {"threshold": 0.5, "release": 0.35}
    found: list[Event] = []
    detector = EventDetector(model.labels, LAUGHTER, **settings)
    with windows(path, patches_per_window=20) as stream:
        for window in stream:
            found += detector.push(window.start // PATCH_HOP, model.scores(window.samples))
    found += detector.finish(90.0)
    assert [e.label for e in found] == ["Laughter", "Giggle", "Laughter"]
    for event, (start, end) in zip(found, [(10.0, 14.0), (30.0, 32.0), (61.0, 63.5)],
                                   strict=True):
        assert abs(event.start - start) < 0.7 and abs(event.end - end) < 0.7
        assert event.peak > 0.99
    with windows(path, patches_per_window=1_000) as stream:
        whole = np.concatenate([w.samples for w in stream])
    assert detect(model.scores(whole), model.labels, LAUGHTER, **settings,
                  duration=90.0) == found
