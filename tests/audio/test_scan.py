"""Audio scans as gristmill jobs: per user, re-runs, clips, bad input, kill -9, overlap.

Every recording is written by the test (``sounds.py``) and scored by the fixture ONNX
model (``fixture_model.py``), whose Laughter class answers a 700-2,000 Hz band: a 1 kHz
tone burst "laughs". The bursts' amplitude and the detection settings below put the
threshold at half a patch's coverage, so an event's edges land within half a hop
(0.24 s) of a burst's on the 0.48 s patch grid, plus a little: the tests accept 0.5 s.
On PostgreSQL (``GRISTMILL_TEST_DATABASE=postgresql``) the catalog of every scan, in
process or in a subprocess, is a database of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fixture_model import build_fixture_model, write_class_map
from sounds import silence, tone_bursts, write_audio, write_video

from backends import query
from gristmill.audio.decode import probe
from gristmill.audio.recording import AudioOptions, model_sha256
from gristmill.audio.scan import scan_lock
from gristmill.catalog.jobs import JobState
from gristmill.errors import ModelError
from gristmill.extract import Limits
from gristmill.knowledge_base import KnowledgeBase
from gristmill.runtime.worker import Outcome, WorkOptions, process_item
from process_tools import env_for, gristmill, gristmill_json, start

#: A tone of this amplitude scores 0.5 in the fixture's Laughter class when it fills
#: half a patch (band mean square 1e-3): the threshold below sits there.
AMPLITUDE = 0.0632
DETECTION = {"audio_threshold": "0.5", "audio_release": "0.5", "audio_smooth": "1",
             "audio_clip_padding": "0.5"}
TOLERANCE = 0.5  # seconds between a burst's edge and its event's
EVENT_KEYS = {"user", "source", "start", "end", "label", "score", "clip"}
Bursts = list[tuple[float, float]]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fixture model, its class map beside it (where a scan looks by default)."""
    folder = tmp_path_factory.mktemp("model")
    write_class_map(folder / "fixture_class_map.csv")
    return build_fixture_model(folder / "fixture.onnx")


def recording(path: Path, seconds: float, rate: int, bursts: Bursts, fmt: str, *,
              channels: int = 1) -> Path:
    signal_ = (tone_bursts(seconds, rate, bursts, amplitude=AMPLITUDE) if bursts
               else silence(seconds, rate))
    return write_audio(path, signal_, rate, channels=channels, format=fmt)


def make_uploads(root: Path) -> dict[str, Bursts]:
    """Two users' folders of three recordings each (a silent one each; MP3, FLAC and
    M4A among them) and a note that is no recording; the bursts of each recording."""
    plan: dict[str, tuple[float, int, Bursts, str, int]] = {
        "alice/day1.wav": (30.0, 16_000, [(4.0, 6.0), (20.0, 21.5)], "wav", 1),
        "alice/day2.mp3": (20.0, 44_100, [(10.0, 12.0)], "mp3", 2),
        "alice/quiet.flac": (10.0, 22_050, [], "flac", 1),
        "bob/morning.m4a": (25.0, 44_100, [(3.0, 5.0), (15.0, 17.5)], "m4a", 2),
        "bob/evening.flac": (20.0, 48_000, [(8.0, 9.5)], "flac", 1),
        "bob/quiet.wav": (10.0, 16_000, [], "wav", 1),
    }
    expected: dict[str, Bursts] = {}
    for name, (seconds, rate, bursts, fmt, channels) in plan.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        recording(path, seconds, rate, bursts, fmt, channels=channels)
        expected[str(path)] = bursts
    (root / "alice" / "notes.txt").write_text("not a recording\n")
    return expected


def open_kb(home: Path, model: Path, **settings: Any) -> KnowledgeBase:
    detection = {name: float(value) for name, value in DETECTION.items()}
    detection["audio_smooth"] = 1
    return KnowledgeBase.open(home, embedder="none", workers=2, audio_model=model,
                              **{**detection, **settings})


def events_by_source(events: list[dict[str, Any]]) -> dict[str, Bursts]:
    found: dict[str, Bursts] = {}
    for event in events:
        found.setdefault(event["source"], []).append((event["start"], event["end"]))
    return found


def assert_bursts_found(events: list[dict[str, Any]], expected: dict[str, Bursts]) -> None:
    """One Laughter event per burst, each edge within TOLERANCE of the burst's."""
    assert {e["label"] for e in events} <= {"Laughter"}
    found = events_by_source(events)
    for source, bursts in expected.items():
        spans = found.get(source, [])
        assert len(spans) == len(bursts), (source, spans, bursts)
        for (begins, ends), (first, last) in zip(spans, bursts, strict=True):
            assert abs(begins - first) <= TOLERANCE and abs(ends - last) <= TOLERANCE, (
                source, (begins, ends), (first, last))


def rows(home: Path, sql: str) -> int:
    return int(query(home, sql)[0][0])


# -- users, events, re-runs ---------------------------------------------------------------


def test_per_user_scan_finds_each_users_bursts(tmp_path: Path, model: Path) -> None:
    """`audio scan --per-user` scans each user's folder as a job of its own and finds
    exactly the bursts; `audio events --json` lists them in the contract's shape."""
    expected = make_uploads(tmp_path / "uploads")
    home = tmp_path / "home"
    env = env_for(home, audio_model=str(model), **DETECTION)
    report = gristmill_json("audio", "scan", str(tmp_path / "uploads"), "--per-user",
                            "--workers", "2", env=env)
    users = report["users"]
    assert [u["user"] for u in users] == ["alice", "bob"]
    assert [(u["recordings"], u["events"], u["state"]) for u in users] == [
        (3, 3, "succeeded"), (3, 3, "succeeded")]
    assert len({u["job_id"] for u in users}) == 2  # a job per user
    for user in users:  # the memory of the driver and its pool, before and after
        assert user["rss_before"] > 0 and user["rss_after"] > 0
        assert user["rss_peak"] >= max(user["rss_before"], user["rss_after"])
        assert user["audio_seconds"] == pytest.approx(60.0 if user["user"] == "alice"
                                                      else 55.0, abs=0.2)
    events = gristmill_json("audio", "events", env=env)
    assert all(set(event) == EVENT_KEYS for event in events)
    assert all(event["clip"] is None and 0.5 <= event["score"] <= 1 for event in events)
    assert_bursts_found(events, expected)
    assert {e["user"] for e in gristmill_json("audio", "events", "--user", "bob",
                                              env=env)} == {"bob"}
    jobs = gristmill_json("jobs", "list", env=env)
    assert [(j["kind"], j["audio"]["user"]) for j in jobs] == [("audio", "bob"),
                                                               ("audio", "alice")]
    assert rows(home, "SELECT count(*) FROM items WHERE status = 'indexed' "
                "AND chunk_count = 0") == 6  # the note was never an item


def test_rerun_rescans_only_what_changed(tmp_path: Path, model: Path) -> None:
    """A re-run scans nothing and keeps the events as they were (no duplicates); a
    changed recording alone is scanned again, its events replaced; a new threshold
    scans every recording again."""
    uploads = tmp_path / "uploads"
    expected = make_uploads(uploads)
    home = tmp_path / "home"
    with open_kb(home, model) as kb:
        kb.scan_audio(uploads, per_user=True)
        before = [e.to_dict() for e in kb.audio_events()]
        again = kb.scan_audio(uploads, per_user=True)
        assert [(u.recordings, u.unchanged, u.events) for u in again.users] == [
            (0, 3, 0), (0, 3, 0)]
        assert [e.to_dict() for e in kb.audio_events()] == before
        assert rows(home, "SELECT count(*) FROM audio_events") == len(before) == 6

        evening = uploads / "bob" / "evening.flac"
        recording(evening, 20.0, 48_000, [(2.0, 4.0), (12.0, 13.0)], "flac")
        os.utime(evening, ns=(time.time_ns(), time.time_ns() + 10**9))
        changed = kb.scan_audio(uploads, per_user=True)
        assert [u.recordings for u in changed.users] == [0, 1]
        expected[str(evening)] = [(2.0, 4.0), (12.0, 13.0)]
        assert_bursts_found([e.to_dict() for e in kb.audio_events()], expected)
        assert rows(home, "SELECT count(*) FROM audio_events") == 7
    with open_kb(home, model, audio_threshold=0.6, audio_release=0.6) as kb:
        stricter = kb.scan_audio(uploads, per_user=True)
        assert [(u.recordings, u.rescanned) for u in stricter.users] == [(3, 3), (3, 3)]
        settings = query(home, "SELECT DISTINCT settings FROM audio_recordings")
        assert [json.loads(row[0])["threshold"] for row in settings] == [0.6]


def test_clips_are_cut_named_for_their_event_and_replaced(tmp_path: Path,
                                                          model: Path) -> None:
    """`--clips` cuts each event plus the padding into a file named for the recording,
    model and event; a re-scan writes the same names over them, and a recording
    deleted from the folder loses its events and its clips."""
    uploads = tmp_path / "uploads"
    make_uploads(uploads)
    home = tmp_path / "home"
    clips = home / "clips"
    with open_kb(home, model) as kb:
        kb.scan_audio(uploads, per_user=True, clips=True)
        events = kb.audio_events()
        sha = model_sha256(model)[:8]
        durations = {source: probe(Path(source)).duration for source in
                     {e.source for e in events}}
        for event in events:
            assert event.clip is not None
            clip = Path(event.clip)
            assert clip.parent == clips.absolute() / event.user
            assert clip.name.split("-")[1:] == [sha, f"{round(event.start * 1000)}",
                                                f"{event.event.class_index}.wav"]
            length = min(event.end + 0.5, durations[event.source] or 0) - max(
                event.start - 0.5, 0.0)
            assert probe(clip).duration == pytest.approx(length, abs=0.05)
        on_disk = sorted(clips.rglob("*.wav"))
        assert on_disk == sorted(Path(e.clip) for e in events if e.clip)
    # What a crash can leave: a clip whose event was never committed, one half-written.
    orphan = clips / "alice" / f"999-{sha}-1000-13.wav"
    orphan.write_bytes(b"RIFF")
    half = clips / "bob" / f".{on_disk[-1].name}.x8k2q1"
    half.write_bytes(b"RIFF")
    mine = clips / "alice" / "keep-me.txt"  # not a clip: never touched
    mine.write_text("mine")
    # Other settings: every recording scanned again, the same events, the same files.
    with open_kb(home, model, audio_min_duration=0.4) as kb:
        rescan = kb.scan_audio(uploads, per_user=True, clips=True)
        assert sum(u.recordings for u in rescan.users) == 6
        assert sorted(clips.rglob("*")) == sorted(
            [clips / "alice", clips / "bob", mine, *on_disk])
        (uploads / "alice" / "day1.wav").unlink()
        gone = kb.scan_audio(uploads, per_user=True, clips=True)
        assert gone.users[0].removed == 1
        left = kb.audio_events()
        assert str(uploads / "alice" / "day1.wav") not in {e.source for e in left}
        assert sorted(clips.rglob("*.wav")) == sorted(Path(e.clip) for e in left if e.clip)
        assert len(left) == 4 and mine.exists()


def test_a_new_model_adds_its_events_beside_the_old_ones(tmp_path: Path,
                                                         model: Path) -> None:
    """A scan with another model keeps the first model's events (and clips) beside its
    own; `audio events` lists the configured model's, `--model` another's; going back
    to the first model scans nothing again; a changed recording drops every older
    revision and its clips."""
    uploads = tmp_path / "uploads"
    expected = make_uploads(uploads)
    home = tmp_path / "home"
    # Ten times as sensitive: each burst's event starts or ends a patch (0.48 s) wider.
    other = build_fixture_model(model.with_name("other.onnx"), sensitivity=10.0)
    write_class_map(other.with_name("other_class_map.csv"))
    first, second = model_sha256(model), model_sha256(other)
    with open_kb(home, model) as kb:
        kb.scan_audio(uploads, per_user=True, clips=True)
        by_first = [e.to_dict() for e in kb.audio_events()]
    assert_bursts_found(by_first, expected)
    with open_kb(home, other) as kb:
        report = kb.scan_audio(uploads, per_user=True, clips=True)
        assert [(u.recordings, u.rescanned) for u in report.users] == [(3, 3), (3, 3)]
        by_second = [e.to_dict() for e in kb.audio_events()]
        assert len(by_second) == len(by_first)
        assert all(b["start"] <= a["start"] and b["end"] >= a["end"]
                   and (b["start"], b["end"]) != (a["start"], a["end"])
                   and b["clip"] != a["clip"]
                   for a, b in zip(by_first, by_second, strict=True))
        assert [e.to_dict() for e in kb.audio_events(model=first[:8])] == by_first
        assert rows(home, "SELECT count(*) FROM audio_recordings") == 12
        assert rows(home, "SELECT count(*) FROM audio_events") == 12
    env = env_for(home, audio_model=str(model), **DETECTION)
    assert gristmill_json("audio", "events", env=env) == by_first
    assert gristmill_json("audio", "events", "--model", second[:10].upper(),
                          env=env) == by_second
    clips = sorted(home.rglob("*.wav"))
    assert clips == sorted(Path(e["clip"]) for e in by_first + by_second)
    with open_kb(home, model) as kb:
        back = kb.scan_audio(uploads, per_user=True, clips=True)
        assert [(u.recordings, u.unchanged) for u in back.users] == [(0, 3), (0, 3)]
        assert sorted(home.rglob("*.wav")) == clips
        # bob's evening recording changes: scanned by this model, the other's revision
        # of the old content (and its clip) goes.
        evening = uploads / "bob" / "evening.flac"
        recording(evening, 20.0, 48_000, [(2.0, 4.0), (12.0, 13.0)], "flac")
        os.utime(evening, ns=(time.time_ns(), time.time_ns() + 10**9))
        changed = kb.scan_audio(uploads, per_user=True, clips=True)
        assert [u.recordings for u in changed.users] == [0, 1]
        assert query(home, "SELECT r.model FROM audio_recordings r JOIN items i ON "
                     "i.id = r.item_id WHERE i.source = ?", (str(evening),)) == [(first,)]
        assert [e.start for e in kb.audio_events(model=second) if e.source == str(evening)
                ] == []
        left = kb.audio_events() + kb.audio_events(model=second)
        assert sorted(home.rglob("*.wav")) == sorted({Path(e.clip) for e in left if e.clip})


def test_since_looks_only_at_recent_recordings_and_removes_nothing(tmp_path: Path,
                                                                   model: Path) -> None:
    """`since` scans only recordings modified on or after it; the older ones keep their
    items and events (a partial listing removes nothing)."""
    uploads = tmp_path / "uploads"
    make_uploads(uploads)
    old = uploads / "alice" / "day1.wav"
    os.utime(old, (1_600_000_000, 1_600_000_000))  # September 2020
    home = tmp_path / "home"
    with open_kb(home, model) as kb:
        recent = kb.scan_audio(uploads / "alice", since=1_700_000_000)
        assert (recent.users[0].user, recent.users[0].recordings) == ("alice", 2)
        assert str(old) not in {e.source for e in kb.audio_events()}
        everything = kb.scan_audio(uploads / "alice")
        assert everything.users[0].recordings == 1
        assert len(kb.audio_events(user="alice")) == 3
        again = kb.scan_audio(uploads / "alice", since=1_700_000_000)
        assert (again.users[0].recordings, again.users[0].removed) == (0, 0)
        assert len(kb.audio_events(since=1_700_000_000)) == 1
        assert rows(home, "SELECT count(*) FROM items WHERE status = 'indexed'") == 3


# -- bad input, torn reads, wrong settings ----------------------------------------------


def test_bad_recordings_get_a_reason_and_the_rest_are_scanned(tmp_path: Path,
                                                              model: Path) -> None:
    """A zero-length file, a text file named .m4a, a video without sound and truncated
    files each end skipped or failed with their reason; the good recording is
    scanned."""
    folder = tmp_path / "carol"
    folder.mkdir()
    (folder / "empty.wav").write_bytes(b"")
    (folder / "letter.m4a").write_text("Dear Carol, this is not a recording.\n" * 30)
    write_video(folder / "silent-film.mp4", 2.0)
    for fmt in ("mp3", "wav"):
        whole = recording(tmp_path / f"whole.{fmt}", 30.0, 44_100, [(4.0, 6.0)], fmt)
        data = whole.read_bytes()
        (folder / f"cut.{fmt}").write_bytes(data[:len(data) // 2])
    recording(folder / "good.flac", 12.0, 44_100, [(3.0, 5.0)], "flac")
    home = tmp_path / "home"
    with open_kb(home, model) as kb:
        report = kb.scan_audio(folder)
        assert (report.users[0].user, report.users[0].recordings) == ("carol", 6)
        assert [e.source for e in kb.audio_events()] == [str(folder / "good.flac")]
    found = {Path(source).name: (status, error) for source, status, error in query(
        home, "SELECT source, status, error FROM items")}
    assert found["good.flac"] == ("indexed", None)
    assert found["empty.wav"][0] == "skipped" and "empty" in found["empty.wav"][1]
    assert found["letter.m4a"][0] == "skipped" and "text" in found["letter.m4a"][1]
    assert found["silent-film.mp4"][0] == "skipped"
    assert "no audio track" in found["silent-film.mp4"][1]
    for name in ("cut.mp3", "cut.wav"):
        status, error = found[name]
        assert status == "failed" and "truncated" in error and "15.0 s" in error, error


def test_a_recording_written_while_scanned_is_read_again(
        tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A recording still being written while it is scanned (its size changes under the
    scan) gives no events: the worker says `changed`, and the run reads it again."""
    import gristmill.audio.recording as scanning

    path = recording(tmp_path / "growing.wav", 10.0, 16_000, [(2.0, 4.0)], "wav")
    stat = path.stat()
    real_scan = scanning.scan_recording

    def scan_while_written(*args: Any, **kwargs: Any) -> scanning.RecordingScan:
        result = real_scan(*args, **kwargs)
        with path.open("ab") as recorder:  # the recorder appends its next block
            recorder.write(np.zeros(16_000, dtype=np.int16).tobytes())
        return result

    monkeypatch.setattr(scanning, "scan_recording", scan_while_written)
    options = AudioOptions(user="u", model=str(model), model_sha256=model_sha256(model),
                           classes=(13,))
    work = WorkOptions(chunk_tokens=200, max_file_bytes=2**30, limits=Limits(), audio=options)
    result = process_item(str(path), work, expected=(stat.st_size, stat.st_mtime_ns),
                          item_id=1)
    assert (result.outcome, result.events) == (Outcome.CHANGED, None)
    monkeypatch.setattr(scanning, "scan_recording", real_scan)
    whole = process_item(str(path), work, item_id=1)
    assert whole.outcome == Outcome.EXTRACTED and whole.events and len(whole.events) == 1


def test_a_class_the_model_lacks_pauses_the_job(tmp_path: Path, model: Path) -> None:
    """A class name the model does not have is the settings' fault, not the
    recordings': the job pauses with the reason, its recordings wait (pending), and
    the scan says what to fix; once fixed, the scan runs."""
    uploads = tmp_path / "uploads"
    make_uploads(uploads)
    home = tmp_path / "home"
    with open_kb(home, model, audio_classes=["Laughing"]) as kb:
        with pytest.raises(ModelError, match="no class named 'Laughing'"):
            kb.scan_audio(uploads / "alice")
        job = kb.jobs.recent()[0]
        assert (job.state, job.spec.kind) == (JobState.PAUSED, "audio")
        assert "Laughing" in (job.reason or "")
        assert kb.catalog.counts("audio") == {**dict.fromkeys(
            ("processing", "extracted", "indexed", "skipped", "failed"), 0), "pending": 3}
    with open_kb(home, model) as kb:
        report = kb.scan_audio(uploads / "alice")
        assert (report.state, report.users[0].recordings) == ("succeeded", 3)
        assert len(kb.audio_events()) == 3


def test_a_queued_audio_job_runs_like_any_job(tmp_path: Path, model: Path) -> None:
    """An audio job recorded as queued (what the HTTP API makes) is claimed and run by
    `gristmill jobs run`, which `serve` starts for each job: its spec says it scans;
    `jobs show` says it is an audio job; clips no event names are swept after it."""
    from gristmill.audio.scan import audio_job_spec

    uploads = tmp_path / "uploads"
    expected = make_uploads(uploads)
    home = tmp_path / "home"
    with open_kb(home, model) as kb:
        options = AudioOptions.from_settings(kb.settings, "bob")
        job_id = kb.jobs.create(audio_job_spec(options, "audio", str(uploads / "bob")),
                                "nobody", state=JobState.QUEUED)
    env = env_for(home, audio_model=str(model), **DETECTION)
    orphan = home / "clips" / "bob" / "999-deadbeef-1000-13.wav"  # a crash's leftover
    orphan.parent.mkdir(parents=True)
    orphan.write_bytes(b"RIFF")
    done = gristmill("jobs", "run", str(job_id), env=env)
    assert done.returncode == 0, done.stderr
    assert not orphan.exists()
    job = gristmill_json("jobs", "show", str(job_id), env=env)
    assert (job["state"], job["kind"], job["items"]) == ("succeeded", "audio",
                                                         {"indexed": 3})
    assert "kind: audio" in gristmill("jobs", "show", str(job_id), env=env).stdout
    bob = {source: bursts for source, bursts in expected.items() if "/bob/" in source}
    assert_bursts_found(gristmill_json("audio", "events", env=env), bob)


def test_no_model_configured_says_where_to_get_one(tmp_path: Path) -> None:
    """Without audio_model the scan stops before it starts, naming the setting and
    where YAMNet comes from."""
    folder = tmp_path / "alice"
    folder.mkdir()
    done = gristmill("audio", "scan", str(folder), env=env_for(tmp_path / "home"))
    assert done.returncode == 2, done.stderr
    assert "audio_model" in done.stderr and "google/yamnet" in done.stderr


# -- one scan at a time, and kill -9 -----------------------------------------------------


def test_a_second_scan_exits_75_or_waits(tmp_path: Path, model: Path) -> None:
    """While a scan holds the home's lock another exits 75 naming its pid and --wait;
    with --wait it starts when the lock is released, and reports on the terminal."""
    uploads = tmp_path / "uploads"
    make_uploads(uploads)
    home = tmp_path / "home"
    env = env_for(home, audio_model=str(model), **DETECTION)
    home.mkdir()
    with scan_lock(home):
        refused = gristmill("audio", "scan", str(uploads / "bob"), env=env)
        assert refused.returncode == 75, refused.stderr
        assert f"process {os.getpid()}" in refused.stderr and "--wait" in refused.stderr
        waiting = start("audio", "scan", str(uploads / "bob"), "--wait", env=env)
        assert waiting.stderr is not None
        first = _line_within(waiting.stderr, 60)
        assert "running; waiting for it to end" in first, first
        assert waiting.poll() is None
        assert rows(home, "SELECT count(*) FROM jobs") == 0
    out, err = waiting.communicate(timeout=120)
    assert waiting.returncode == 0, err
    assert "bob: 3 recordings scanned" in out and "MB before" in out
    assert "recordings" in err and "x real time" in err  # the progress lines


def _line_within(stream: Any, seconds: float) -> str:
    """The next line of ``stream``, or a failure after ``seconds``."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(stream.readline()), daemon=True)
    reader.start()
    reader.join(seconds)
    assert lines, f"no line within {seconds} s"
    return lines[0]


@pytest.mark.slow
def test_kill_9_mid_scan_then_rerun_scans_each_recording_once(tmp_path: Path,
                                                              model: Path) -> None:
    """A scan killed -9 (its whole process group) after some recordings are committed
    and while others are in flight loses nothing and duplicates nothing when run
    again: every recording scanned, each once, each event and clip once, and the lock
    it held does not stop the re-run."""
    many = 14
    folder = _long_calls(tmp_path / "dave", many)
    home = tmp_path / "home"
    env = env_for(home, audio_model=str(model), workers="1", **DETECTION)
    proc = start("audio", "scan", str(folder), "--clips", env=env)
    committed = _kill_after_commits(proc, home, 2)
    before = dict(query(home, "SELECT item_id, scanned_at FROM audio_recordings"))
    assert len(before) >= committed
    report = gristmill_json("audio", "scan", str(folder), "--clips", env=env)
    assert report["users"][0]["recordings"] == many - len(before)
    after = dict(query(home, "SELECT item_id, scanned_at FROM audio_recordings"))
    assert len(after) == many
    assert all(after[item] == at for item, at in before.items())  # not scanned again
    assert rows(home, "SELECT count(*) FROM audio_events") == many
    assert query(home, "SELECT item_id, start_s, count(*) FROM audio_events "
                 "GROUP BY item_id, start_s HAVING count(*) > 1") == []
    clips = sorted((home / "clips" / "dave").iterdir())
    assert [p.suffix for p in clips] == [".wav"] * many  # no stray temporaries either
    assert rows(home, "SELECT count(*) FROM items WHERE status = 'indexed'") == many


def _long_calls(folder: Path, count: int) -> Path:
    """``count`` 4-minute recordings with one burst each (at 10 s, 11 s, ...): long
    enough (about a second each on one worker) that a scan is still running when a test
    sees two committed; at 60 s each it sometimes ended first."""
    folder.mkdir()
    for index in range(count):
        recording(folder / f"call-{index:02d}.wav", 240.0, 16_000,
                  [(10.0 + index, 12.0 + index)], "wav")
    return folder


def _kill_after_commits(proc: subprocess.Popen[str], home: Path, at_least: int) -> int:
    """SIGKILL ``proc``'s group once ``at_least`` recordings are committed and another
    is claimed; how many were committed when it was seen."""
    deadline = time.monotonic() + 120
    try:
        while True:
            assert proc.poll() is None, "the scan ended before it could be killed"
            assert time.monotonic() < deadline, "the scan committed nothing in time"
            scanned = query(home, "SELECT count(*) FROM audio_recordings", missing_ok=True)
            done = scanned[0][0] if scanned else 0
            claimed = query(home, "SELECT count(*) FROM items WHERE status = 'processing'",
                            missing_ok=True)
            if done >= at_least and claimed and claimed[0][0] > 0:
                os.killpg(proc.pid, signal.SIGKILL)
                return done
            time.sleep(0.02)
    finally:
        proc.wait(timeout=30)
        _close(proc)


def _close(proc: subprocess.Popen[str]) -> None:
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()



def test_schedule_prints_the_nightly_units(tmp_path: Path) -> None:
    """`audio schedule ROOT --per-user --print` prints the service, timer and cron line
    of a nightly per-user scan of ROOT; without --print it installs nothing and says
    how."""
    uploads = tmp_path / "uploads"
    (uploads / "alice").mkdir(parents=True)
    env = env_for(tmp_path / "home")
    printed = gristmill("audio", "schedule", str(uploads), "--per-user", "--print",
                        env=env)
    assert printed.returncode == 0, printed.stderr
    assert "gristmill-audio.timer" in printed.stdout and "OnCalendar=" in printed.stdout
    assert "audio scan" in printed.stdout and "--per-user" in printed.stdout
    refused = gristmill("audio", "schedule", str(uploads), env=env)
    assert refused.returncode == 2 and "--print" in refused.stderr


def test_since_must_be_a_date_the_catalog_can_hold() -> None:
    """A date past 2262 (the catalog keeps nanoseconds in 64 bits) or before 1970 is
    refused with the range, not a crash."""
    from gristmill.audio.scan import parse_since
    from gristmill.errors import ConfigError

    assert parse_since("2024-05-01T00:00+00:00") == 1_714_521_600
    for text in ("3000-01-01", "1900-01-01", "yesterday"):
        with pytest.raises(ConfigError, match="--since"):
            parse_since(text)


@pytest.mark.slow
def test_an_audio_job_pauses_resumes_and_cancels_on_request(tmp_path: Path,
                                                             model: Path) -> None:
    """`jobs pause` stops a running scan between recordings (what is committed stays),
    `jobs resume` scans only the rest, each recording once; `jobs cancel` ends one."""
    many = 10
    folder = _long_calls(tmp_path / "erin", many)
    home = tmp_path / "home"
    # One recording in flight at a time: a pause then always leaves some unclaimed.
    env = env_for(home, audio_model=str(model), workers="1", window="1", **DETECTION)
    proc = start("audio", "scan", str(folder), env=env)
    try:
        deadline = time.monotonic() + 120
        while (query(home, "SELECT count(*) FROM audio_recordings", missing_ok=True)
               or [(0,)])[0][0] < 2:
            assert proc.poll() is None, "the scan ended before it could be paused"
            assert time.monotonic() < deadline, "the scan committed nothing in time"
            time.sleep(0.05)
        [(job_id,)] = query(home, "SELECT max(id) FROM jobs")
        assert gristmill("jobs", "pause", str(job_id), env=env).returncode == 0
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _close(proc)
    paused = gristmill_json("jobs", "show", str(job_id), env=env)
    assert paused["state"] == "paused"
    scanned = dict(query(home, "SELECT item_id, scanned_at FROM audio_recordings"))
    assert 2 <= len(scanned) < many
    resumed = gristmill("jobs", "resume", str(job_id), env=env)
    assert resumed.returncode == 0, resumed.stderr
    assert gristmill_json("jobs", "show", str(job_id), env=env)["state"] == "succeeded"
    after = dict(query(home, "SELECT item_id, scanned_at FROM audio_recordings"))
    assert len(after) == many
    assert all(after[item] == at for item, at in scanned.items())  # not scanned again
    assert rows(home, "SELECT count(*) FROM audio_events") == many

    for index in range(many, many + 4):
        recording(folder / f"call-{index:02d}.wav", 240.0, 16_000, [(5.0, 7.0)], "wav")
    proc = start("audio", "scan", str(folder), env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            jobs = query(home, "SELECT id, state FROM jobs WHERE id > ? ORDER BY id",
                         (job_id,))
            if jobs and jobs[0][1] == "running":
                break
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert gristmill("jobs", "cancel", str(jobs[0][0]), env=env).returncode == 0
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        _close(proc)
    assert gristmill_json("jobs", "show", str(jobs[0][0]), env=env)["state"] == "cancelled"
