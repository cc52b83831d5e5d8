"""Sound events from patch scores: smoothed, hysteresis-thresholded, merged, filtered.

For each class of interest the scores of consecutive patches (one row every 0.48 s,
:mod:`gristmill.audio.framing`) are

1. smoothed: a centred moving average over ``smooth`` patches (fewer at the
   recording's two ends, so an event there is not diluted by patches that do not exist);
2. thresholded with hysteresis: an event opens at a patch scoring ``threshold`` or
   more and lasts while patches score ``release`` or more;
3. merged: an event opening at most ``max_gap`` seconds after the previous one ended
   (of the same class) continues it;
4. kept if it lasts ``min_duration`` seconds or more.

Times: patch ``p`` reads ``[0.48 p, 0.48 p + 0.96]`` s, overlapping both neighbours, so
each patch stands for the 0.48 s hop around its centre, ``[0.48 p + 0.24, 0.48 p +
0.72]``; consecutive patches tile the recording. An event over patches ``a..b`` runs
from the start of ``a``'s hop to the end of ``b``'s, with the first patch starting at
0 s and, when the recording's duration is given, the last patch ending at the end.
An event's ``peak`` and ``mean`` are of the smoothed scores over its patches (gaps it
was merged across included), so ``peak >= threshold`` always holds.

:class:`EventDetector` does this window by window, carrying its state, so a recording
is never held whole; :func:`detect` runs it over all of one recording's scores. Both
give the same events however the scores are split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from gristmill.audio.framing import HOP_SECONDS, PATCH_SECONDS
from gristmill.errors import ConfigError

__all__ = ["DEFAULT_CLASSES", "DEFAULT_MAX_GAP", "DEFAULT_MIN_DURATION", "DEFAULT_RELEASE",
           "DEFAULT_SMOOTH", "DEFAULT_THRESHOLD", "LAUGHTER", "Event", "EventDetector",
           "detect"]

#: YAMNet's laughter classes (indices 13-18).
LAUGHTER = ("Laughter", "Baby laughter", "Giggle", "Snicker", "Belly laugh",
            "Chuckle, chortle")

# The defaults were chosen on composed recordings with known laughter times
# (benchmarks/bench_audio.py; BENCHMARKS.md, "Audio"): the best F1 on a development set
# (seed 0), reported on a held-out test set (seed 1: precision 0.96, recall 0.87) and
# 3-hour recordings (0.98, 0.91). The earlier 0.3 / smoothing 3 found 12 % of the laughs.
#
# YAMNet scores laughter in a recording low: Laughter peaks at 0.1-0.6 on the laughs
# (median 0.3; the quieter the laugh, the lower), while speech, words and music mostly
# stay under 0.05; a few effects and the word "laugh" said aloud reach 0.1-0.45 (the
# false alarms, 1-2 an hour there). 0.1 is the highest threshold within one laugh of
# the best F1 (0.96; 0.78 at 0.2, 0.33 at 0.3).
DEFAULT_THRESHOLD = 0.1
# Below the threshold so a laugh's quieter breaths do not split it (no measurable
# difference at this threshold).
DEFAULT_RELEASE = 0.075
# No minimum: 0.5 s changed nothing on the development set; 1 s dropped short giggles
# (F1 0.78).
DEFAULT_MIN_DURATION = 0.0
# A laugh is bursts and breaths: parts of one laugh up to 3 s apart are one event
# (shorter gaps split laughs into several rows, duplicates the user must skip).
DEFAULT_MAX_GAP = 3.0
# Two patches (each averaged with the next): as good as none on the development set,
# with fewer false alarms; three already dilute short giggles (test recall 0.82).
DEFAULT_SMOOTH = 2
#: The default classes of interest: Laughter alone. YAMNet scores a laugh on Laughter
#: and, lower, on Giggle, Snicker, Chuckle...: with all six classes each laugh comes
#: back as two or three events (one per class) and is found no more often (test set:
#: precision 0.34 against 0.96, the same recall).
DEFAULT_CLASSES = ("Laughter",)

# The hop a patch stands for starts this far into the patch (0.24 s).
_HOP_OFFSET = (PATCH_SECONDS - HOP_SECONDS) / 2


@dataclass(frozen=True)
class Event:
    """One detected sound: a class, a time span in seconds, its smoothed scores, and
    the file of its clip once one is cut (the catalog stores events in this shape)."""

    label: str
    class_index: int
    start: float
    end: float
    peak: float
    mean: float
    clip: str | None = None


class EventDetector:
    """Finds events in one recording's scores given window by window.

    Example::

        detector = EventDetector(model.labels, LAUGHTER)
        for window in windows(path):
            first = window.start // PATCH_HOP
            found += detector.push(first, model.scores(window.samples))
        found += detector.finish(duration)
    """

    def __init__(self, labels: Sequence[str], classes: Sequence[int | str], *,
                 threshold: float = DEFAULT_THRESHOLD, release: float = DEFAULT_RELEASE,
                 min_duration: float = DEFAULT_MIN_DURATION,
                 max_gap: float = DEFAULT_MAX_GAP, smooth: int = DEFAULT_SMOOTH) -> None:
        _check_settings(threshold, release, min_duration, max_gap, smooth)
        self._labels = list(labels)
        self._classes = _class_indexes(self._labels, classes)
        self._threshold = threshold
        self._release = release
        self._min_duration = min_duration
        self._max_gap = max_gap
        # A centred window: `before` patches back, `after` ahead (one more ahead if even).
        self._before = (smooth - 1) // 2
        self._after = smooth // 2
        self._tracks = [_Track() for _ in self._classes]
        self._first: int | None = None  # the recording's first patch
        self._next = 0  # the patch the next push must start at
        self._pending = 0  # the first patch not yet smoothed
        # Raw scores (classes of interest only) of the patches from _kept_from on: what
        # smoothing the pending patches still needs.
        self._kept = np.zeros((0, len(self._classes)), dtype=np.float64)
        self._kept_from = 0

    def push(self, first_patch: int, scores: np.ndarray) -> list[Event]:
        """Add the score rows of patches ``first_patch, first_patch + 1, ...``.

        Windows must come in order, each patch once. Returns the events that ended
        for good with these rows (no later row can extend or merge them).
        """
        rows = np.asarray(scores)
        if rows.ndim != 2 or rows.shape[1] != len(self._labels):
            raise ValueError(f"scores must have shape [patches, {len(self._labels)}], not "
                             f"{rows.shape}")
        if self._first is None:
            self._first = self._next = self._pending = self._kept_from = first_patch
        if first_patch != self._next:
            raise ValueError(f"scores from patch {first_patch} pushed when patch "
                             f"{self._next} was due: push each window once, in order")
        self._kept = np.concatenate([self._kept, rows[:, self._classes].astype(np.float64)])
        self._next += len(rows)
        return self._advance(self._next - 1 - self._after)

    def finish(self, duration: float | None = None) -> list[Event]:
        """End the recording; return the events still open or waiting for a merge.

        ``duration`` (seconds) is the recording's length: the events running to its
        last patch end there, and none ends after it.
        """
        if self._first is None:
            return []
        return self._advance(self._next - 1, finished=True, duration=duration)

    def _advance(self, last: int, *, finished: bool = False,
                 duration: float | None = None) -> list[Event]:
        # Smooth and track patches _pending..last; then, if finished, close every event.
        found: list[Event] = []
        if last >= self._pending:
            smoothed = self._smooth(self._pending, last)
            for offset, values in enumerate(smoothed):
                patch = self._pending + offset
                for column, track in enumerate(self._tracks):
                    event = self._step(track, column, patch, float(values[column]))
                    if event is not None:
                        found.append(event)
            self._pending = last + 1
            drop = max(0, self._pending - self._before - self._kept_from)
            self._kept = self._kept[drop:]
            self._kept_from += drop
        if finished:
            for column, track in enumerate(self._tracks):
                event = self._close(track, column, duration)
                if event is not None:
                    found.append(event)
        found.sort(key=lambda e: (e.start, e.class_index))
        return found

    def _smooth(self, first: int, last: int) -> np.ndarray:
        # Each patch's average is summed in the same order whatever rows came with it,
        # so splitting a recording differently cannot change a single bit of it.
        assert self._first is not None
        patches = np.arange(first, last + 1)
        total = np.zeros((len(patches), len(self._classes)), dtype=np.float64)
        count = np.zeros(len(patches), dtype=np.float64)
        for shift in range(-self._before, self._after + 1):
            source = patches + shift
            present = (source >= self._first) & (source < self._next)
            total[present] += self._kept[source[present] - self._kept_from]
            count += present
        smoothed: np.ndarray = total / count[:, None]
        return smoothed

    def _step(self, track: _Track, column: int, patch: int, score: float) -> Event | None:
        if track.open:
            if score >= self._release:
                track.extend(patch, score)
            else:
                track.open = False
                track.gap_total, track.gap_patches = score, 1
            return None
        if track.last is None:  # nothing open, nothing waiting
            if score >= self._threshold:
                track.begin(patch, score)
            return None
        gap = (patch - track.last - 1) * HOP_SECONDS  # from the event's end to this hop
        if score >= self._threshold and gap <= self._max_gap:
            track.open = True
            track.extend(patch, score)
            return None
        if score >= self._threshold:
            event = self._event(track, column, None)
            track.begin(patch, score)
            return event
        track.gap_total += score
        track.gap_patches += 1
        # A patch opening after this one would be more than max_gap away: no merge.
        if gap + HOP_SECONDS > self._max_gap:
            event = self._event(track, column, None)
            track.reset()
            return event
        return None

    def _close(self, track: _Track, column: int, duration: float | None) -> Event | None:
        if track.last is None:
            return None
        event = self._event(track, column, duration if track.open else None, duration)
        track.reset()
        return event

    def _event(self, track: _Track, column: int, end: float | None,
               limit: float | None = None) -> Event | None:
        assert track.first is not None and track.last is not None
        start = 0.0 if track.first == self._first else track.first * HOP_SECONDS + _HOP_OFFSET
        if end is None:
            end = track.last * HOP_SECONDS + _HOP_OFFSET + HOP_SECONDS
        if limit is not None:
            end = min(end, limit)
        if end - start < self._min_duration:
            return None
        index = self._classes[column]
        return Event(label=self._labels[index], class_index=index, start=start, end=end,
                     peak=track.peak, mean=track.total / (track.last - track.first + 1))


class _Track:
    """One class's state: the event open or waiting to merge, and the gap after it."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.open = False
        self.first: int | None = None
        self.last: int | None = None  # the event's last patch at or above release
        self.total = 0.0
        self.peak = 0.0
        self.gap_total = 0.0  # scores of the patches since `last`, merged in if it resumes
        self.gap_patches = 0

    def begin(self, patch: int, score: float) -> None:
        self.reset()
        self.open = True
        self.first = self.last = patch
        self.total = self.peak = score

    def extend(self, patch: int, score: float) -> None:
        self.last = patch
        self.total += self.gap_total + score
        self.gap_total, self.gap_patches = 0.0, 0
        self.peak = max(self.peak, score)


def detect(scores: Iterable[tuple[int, np.ndarray]] | np.ndarray, labels: Sequence[str],
           classes: Sequence[int | str], *, threshold: float = DEFAULT_THRESHOLD,
           release: float = DEFAULT_RELEASE, min_duration: float = DEFAULT_MIN_DURATION,
           max_gap: float = DEFAULT_MAX_GAP, smooth: int = DEFAULT_SMOOTH,
           duration: float | None = None) -> list[Event]:
    """Events of ``classes`` (indexes or names) in one recording's scores.

    ``scores`` is the whole ``[patches, classes]`` array, or ``(first_patch, rows)``
    pairs window by window. ``duration`` (seconds), when known, ends the last events
    at the recording's end. Events come sorted by start, then class.

    Example: ``detect(model.scores(samples), model.labels, LAUGHTER, threshold=0.4)``
    """
    detector = EventDetector(labels, classes, threshold=threshold, release=release,
                             min_duration=min_duration, max_gap=max_gap, smooth=smooth)
    windows = [(0, scores)] if isinstance(scores, np.ndarray) else scores
    found: list[Event] = []
    for first_patch, rows in windows:
        found += detector.push(first_patch, rows)
    found += detector.finish(duration)
    found.sort(key=lambda e: (e.start, e.class_index))
    return found


def _class_indexes(labels: list[str], classes: Sequence[int | str]) -> list[int]:
    if isinstance(classes, str):  # one name, not a sequence of its letters
        classes = [classes]
    indexes: list[int] = []
    for wanted in classes:
        if isinstance(wanted, str):
            if wanted not in labels:
                close = [name for name in labels if wanted.lower() in name.lower()][:5]
                hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
                raise ConfigError(f"the audio model has no class named {wanted!r}{hint}: "
                                  "name classes as the model's class map does, or give "
                                  "their indexes")
            index = labels.index(wanted)
        else:
            index = int(wanted)
            if not 0 <= index < len(labels):
                raise ConfigError(f"the audio model has no class {index}: its classes are "
                                  f"0 to {len(labels) - 1}")
        if index not in indexes:
            indexes.append(index)
    if not indexes:
        raise ConfigError("no sound classes to detect: name at least one (for example "
                          "Laughter)")
    return indexes


def _check_settings(threshold: float, release: float, min_duration: float, max_gap: float,
                    smooth: int) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold {threshold} is not a score: choose one in (0, 1]")
    if not 0.0 < release <= threshold:
        raise ConfigError(f"release {release} must be above 0 and at most the threshold "
                          f"({threshold}): an event ends when scores fall below it")
    if min_duration < 0:
        raise ConfigError(f"min_duration {min_duration} is negative: give seconds, 0 or more")
    if max_gap < 0:
        raise ConfigError(f"max_gap {max_gap} is negative: give seconds, 0 or more")
    if smooth < 1:
        raise ConfigError(f"smooth {smooth} must be at least 1 patch (1: no smoothing)")
