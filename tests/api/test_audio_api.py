"""Audio over HTTP: `POST /api/v1/jobs` with `"kind": "audio"` queues a scan job per user,
run by `gristmill jobs run` processes as any job; `GET /api/v1/audio/events` lists what
they found exactly as `gristmill audio events --json` does.

Against a real `gristmill serve`, the fixture ONNX model (a 1 kHz tone burst "laughs")
and recordings written by the test.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from http_server import TOKEN, Server, events, job_processes, start_server, wait_for

from audio.fixture_model import build_fixture_model, write_class_map
from audio.sounds import tone_bursts, write_audio
from gristmill.audio.recording import model_sha256
from process_tools import env_for, gristmill_json

# As in tests/audio/test_scan.py: a burst of this amplitude scores 0.5 when it fills
# half a patch, where the threshold sits, so events match bursts within half a second.
AMPLITUDE = 0.0632
DETECTION = {"audio_threshold": "0.5", "audio_release": "0.5", "audio_smooth": "1"}
TOLERANCE = 0.5
READ_TOKEN = "audio-read-only-token"
#: Each user's recordings: (name, seconds, sample rate, format, bursts).
PLAN = {
    "alice": [("day1.wav", 20.0, 16_000, "wav", [(4.0, 6.0), (12.0, 13.5)])],
    "bob": [("morning.flac", 15.0, 22_050, "flac", [(3.0, 5.0)]),
            ("evening.wav", 10.0, 16_000, "wav", [(6.0, 7.5)])],
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source root: the model (outside the uploads), two users' recordings, and a
    folder with no users in it."""
    base = tmp_path_factory.mktemp("audio-api").resolve() / "root"
    models = base / "models"
    models.mkdir(parents=True)
    write_class_map(models / "fixture_class_map.csv")
    build_fixture_model(models / "fixture.onnx")
    for user, recordings in PLAN.items():
        for name, seconds, rate, fmt, bursts in recordings:
            path = base / "uploads" / user / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_audio(path, tone_bursts(seconds, rate, bursts, amplitude=AMPLITUDE),
                        rate, format=fmt)
    (base / "empty").mkdir()
    return base


def _env(home: Path, root: Path, **settings: str) -> dict[str, str]:
    return env_for(home, source_roots=str(root), api_token=TOKEN, workers="2",
                   **{**DETECTION, **settings})


def _serve(env: dict[str, str], home: Path, folder: Path) -> Server:
    """`gristmill serve` in ``folder``, whose gristmill.toml adds a read-only token."""
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(READ_TOKEN.encode()).hexdigest()
    (folder / "gristmill.toml").write_text(
        f'[[api_tokens]]\nname = "viewer"\nsha256 = "{digest}"\nscope = "read"\n')
    return start_server(env, home, folder / "serve.log", cwd=folder)


def _stop(server: Server) -> None:
    server.stop()
    for proc in job_processes(server.home):  # only ever a failed test's leftover
        proc.kill()
    psutil.wait_procs(job_processes(server.home), timeout=10)


@pytest.fixture(scope="module")
def server(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the fixture model as its audio_model."""
    folder = tmp_path_factory.mktemp("audio-serve")
    home = folder / "home"
    running = _serve(_env(home, root, audio_model=str(root / "models" / "fixture.onnx")),
                     home, folder / "cwd")
    yield running
    _stop(running)


def _cli_env(server: Server, root: Path) -> dict[str, str]:
    return _env(server.home, root)


def test_a_per_user_scan_runs_a_job_per_user_and_lists_the_clis_events(
        server: Server, root: Path) -> None:
    """POST queues one audio job per user, run one after another outside the server;
    each job's SSE stream carries the audio progress; GET /audio/events returns what
    `gristmill audio events --json` prints, one event per burst."""
    created = server.client.post("/api/v1/jobs", json={
        "kind": "audio", "root": str(root / "uploads"), "per_user": True})
    assert created.status_code == 202, created.text
    body = created.json()
    ids = body["ids"]
    assert body["kind"] == "audio" and len(ids) == 2 and ids == sorted(ids)
    assert created.headers["Location"] == f"/api/v1/jobs/{ids[0]}"
    assert [(job["id"], job["kind"], job["audio"]["user"], job["state"])
            for job in body["jobs"]] == [(ids[0], "audio", "alice", "queued"),
                                         (ids[1], "audio", "bob", "queued")]

    # Bob's stream, from queued to its end: its last event carries the scan's figures.
    seen = list(events(server.client, ids[1]))
    assert seen[0]["event"] == "state" and seen[-1]["data"]["state"] == "succeeded"
    figures = seen[-1]["data"]["phases"]["audio"]
    assert (figures["recordings"], figures["total"], figures["events"]) == (2, 2, 2)
    assert figures["audio_seconds"] == pytest.approx(25.0, abs=0.2)
    assert figures["realtime_factor"] > 0
    alice = wait_for(server.client, ids[0], "succeeded", "failed", "paused", timeout=120)
    assert alice["state"] == "succeeded" and alice["phases"]["audio"]["events"] == 2

    listed = server.client.get("/api/v1/audio/events")
    assert listed.status_code == 200, listed.text
    cli = gristmill_json("audio", "events", env=_cli_env(server, root))
    assert listed.json() == cli
    expected = {str(root / "uploads" / user / name): bursts
                for user, recordings in PLAN.items()
                for name, _, _, _, bursts in recordings}
    found: dict[str, list[tuple[float, float]]] = {}
    for event in cli:
        assert event["label"] == "Laughter" and event["clip"] is None
        found.setdefault(event["source"], []).append((event["start"], event["end"]))
    assert set(found) == set(expected)
    for source, bursts in expected.items():
        for (start, end), (first, last) in zip(found[source], bursts, strict=True):
            assert abs(start - first) <= TOLERANCE and abs(end - last) <= TOLERANCE

    bob = server.client.get("/api/v1/audio/events", params={"user": "bob"}).json()
    assert bob == [e for e in cli if e["user"] == "bob"] and len(bob) == 2
    assert server.client.get("/api/v1/audio/events", params={"limit": 1}).json() == cli[:1]
    future = server.client.get("/api/v1/audio/events", params={"since": "2200-01-01"})
    assert future.status_code == 200 and future.json() == []
    # The events of one model revision: `--model`'s sha256 prefix.
    sha256 = model_sha256(root / "models" / "fixture.onnx")
    by_model = server.client.get("/api/v1/audio/events", params={"model": sha256[:10]})
    assert by_model.status_code == 200 and by_model.json() == cli
    other = "0" if sha256[0] != "0" else "1"
    assert server.client.get("/api/v1/audio/events", params={"model": other * 12}
                             ).json() == []


def test_one_users_folder_with_settings_of_its_own(server: Server, root: Path) -> None:
    """`user` names the user whose folder root is; threshold, min_duration, clips and
    since go into the job's spec as `audio scan`'s flags do."""
    created = server.client.post("/api/v1/jobs", json={
        "kind": "audio", "root": str(root / "uploads" / "alice"), "user": "carol",
        "threshold": 0.6, "min_duration": 0.8, "clips": True, "since": "2001-01-01",
        "collection": "nightly"})
    assert created.status_code == 202, created.text
    [job] = created.json()["jobs"]
    spec = job["audio"]
    assert (job["collection"], spec["user"], spec["threshold"], spec["min_duration"],
            spec["clips"]) == ("nightly", "carol", 0.6, 0.8, True)
    assert spec["since"] is not None
    done = wait_for(server.client, job["id"], "succeeded", "failed", "paused", timeout=120)
    assert done["state"] == "succeeded", done
    carol = server.client.get("/api/v1/audio/events",
                              params={"user": "carol", "collection": "nightly"}).json()
    assert len(carol) == 2 and all(Path(e["clip"]).is_file() for e in carol)


@pytest.mark.parametrize(("body", "starts"), [
    ({"per_user": True, "user": "bob"}, "per_user"),
    ({"per_user": True, "threshold": 2}, "threshold"),
    ({"per_user": True, "min_duration": -1}, "min_duration"),
    ({"per_user": True, "since": "yesterday"}, "since"),
    ({"per_user": True, "since": "9999-12-31"}, "since"),
    ({"per_user": True, "clip": True}, "clip"),  # misspelt: never ignored
    ({"root": None}, "root"),
    ({"user": "."}, "user"),
])
def test_bad_bodies_are_refused_with_the_field_named(server: Server, root: Path,
                                                     body: dict[str, object],
                                                     starts: str) -> None:
    """A body `audio scan` would refuse is a 422 whose detail starts with its field."""
    sent = {"kind": "audio", "root": str(root / "uploads"), **body}
    if sent["root"] is None:
        del sent["root"]
    refused = server.client.post("/api/v1/jobs", json=sent)
    assert refused.status_code == 422, refused.text
    assert refused.json()["detail"].startswith(starts), refused.text


def test_roots_kinds_and_queries_are_checked(server: Server, root: Path,
                                             tmp_path: Path) -> None:
    """No users' folders, an unknown kind, a root outside the source roots, and a bad
    events query are refused, each saying what is wrong."""
    post = server.client.post
    empty = post("/api/v1/jobs", json={"kind": "audio", "root": str(root / "empty"),
                                       "per_user": True})
    assert empty.status_code == 422 and "no users' folders" in empty.json()["detail"]
    kind = post("/api/v1/jobs", json={"kind": "video", "source": str(root)})
    assert kind.status_code == 422 and kind.json()["detail"].startswith("kind")
    outside = post("/api/v1/jobs", json={"kind": "audio", "root": str(tmp_path)})
    assert outside.status_code == 403 and "source roots" in outside.json()["detail"]
    for when in ("soon", "9999-01-01"):
        since = server.client.get("/api/v1/audio/events", params={"since": when})
        assert since.status_code == 422, since.text
        assert since.json()["detail"].startswith("query.since"), since.text
    limit = server.client.get("/api/v1/audio/events", params={"limit": 0})
    assert limit.status_code == 422 and limit.json()["detail"].startswith("query.limit")
    model = server.client.get("/api/v1/audio/events", params={"model": "yamnet"})
    assert model.status_code == 422 and model.json()["detail"].startswith("query.model")


def test_reading_events_needs_a_token_and_scanning_an_admin_one(
        server: Server, root: Path) -> None:
    """Without a token both routes are 401; a read-only token lists events but cannot
    start a scan (403)."""
    body = {"kind": "audio", "root": str(root / "uploads"), "per_user": True}
    headers = {"Authorization": ""}
    assert server.client.get("/api/v1/audio/events", headers=headers).status_code == 401
    assert server.client.post("/api/v1/jobs", json=body, headers=headers).status_code == 401
    reader = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert server.client.get("/api/v1/audio/events", headers=reader).status_code == 200
    refused = server.client.post("/api/v1/jobs", json=body, headers=reader)
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]


def test_without_an_audio_model_the_setting_is_named(root: Path, tmp_path: Path) -> None:
    """A server with no audio_model answers 409 naming the setting, and queues nothing."""
    home = tmp_path / "home"
    server = _serve(_env(home, root), home, tmp_path / "cwd")
    try:
        refused = server.client.post("/api/v1/jobs", json={
            "kind": "audio", "root": str(root / "uploads"), "per_user": True})
        assert refused.status_code == 409 and "audio_model" in refused.json()["detail"]
        assert server.client.get("/api/v1/jobs").json() == []
    finally:
        _stop(server)


@pytest.mark.slow
def test_the_dashboard_shows_an_audio_jobs_figures(server: Server, root: Path) -> None:
    """An audio job's card shows its user, recordings done of total, hours of audio,
    speed in times real time and events found (Debian's Chromium, via Playwright)."""
    playwright_api = pytest.importorskip("playwright.sync_api")
    chromium = Path("/usr/bin/chromium")
    if not chromium.exists():
        pytest.skip(f"{chromium} is missing (apt-get install chromium)")
    created = server.client.post("/api/v1/jobs", json={
        "kind": "audio", "root": str(root / "uploads" / "bob"), "user": "dana"})
    assert created.status_code == 202, created.text
    job_id = created.json()["ids"][0]
    assert wait_for(server.client, job_id, "succeeded", "failed", "paused",
                    timeout=120)["state"] == "succeeded"
    with playwright_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(chromium),
                                             args=["--no-sandbox"])
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(server.url)
            page.get_by_label("API token").fill(TOKEN)
            page.get_by_role("button", name="Use token").click()
            card = page.locator(f'#jobs li[data-job-id="{job_id}"]')
            playwright_api.expect(card).to_have_attribute("data-kind", "audio")
            stats = card.locator(".job-stats")
            for text in ("user dana", "recordings 2 / 2", "audio 0.01 h", "events 2"):
                playwright_api.expect(stats).to_contain_text(text)
            playwright_api.expect(stats).to_contain_text(re.compile(r"speed \d.*× real time"))
            playwright_api.expect(stats).not_to_contain_text("chunks")
            assert errors == []
        finally:
            browser.close()
