"""Syncing a knowledge base into an OpenAI vector store, against a local server that
implements the endpoints used as the API reference documents them (fake_openai.py)."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_openai import KEY, FakeOpenAI, serving

from backends import query
from gristmill.errors import ConfigError, CredentialError
from gristmill.knowledge_base import KnowledgeBase
from gristmill.sinks import SyncReport, VectorStoreApi, sync_openai
from process_tools import env_for, gristmill, start

TEXTS = {"heron.txt": "The grey heron stands in the shallow water, waiting.",
         "notes.md": "# Notes\n\nKingfishers dive for small fish.",
         "owl.txt": "The barn owl hunts over the meadow at dusk."}


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with serving() as server:
        yield server


@pytest.fixture
def src(tmp_path: Path) -> Path:
    folder = tmp_path / "src"
    folder.mkdir()
    for name, text in TEXTS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _kb(tmp_path: Path, fake: FakeOpenAI, **settings: object) -> KnowledgeBase:
    return KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                              sink_openai_base_url=fake.url, **settings)


def _sync(kb: KnowledgeBase, store: str, **options: object) -> SyncReport:
    return sync_openai(kb.db, kb.settings, vector_store=store, **options)  # type: ignore[arg-type]


def _by_source(fake: FakeOpenAI, store: str) -> dict[str, bytes]:
    """What the store holds: each file's content by its source attribute."""
    return {Path(f["attributes"]["source"]).name: fake.contents[f["id"]]
            for f in fake.held(store)}


def test_sync_uploads_each_item_with_its_item_id_and_source(
        tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """Every indexed item becomes one file in the store holding its text, with the
    item's id and source as attributes."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        report = _sync(kb, store)
        ids = dict(query(tmp_path / "home", "SELECT source, id FROM items"))
    assert (report.uploaded, report.unchanged, report.failed) == (3, 0, 0)
    held = fake.held(store)
    assert all(f["status"] == "completed" for f in held)
    assert {f["attributes"]["source"]: f["attributes"]["item_id"] for f in held} == ids
    contents = _by_source(fake, store)
    assert set(contents) == set(TEXTS)
    for name, text in TEXTS.items():
        assert contents[name].decode() == text
    names = {fake.files[f["id"]]["filename"] for f in held}
    assert names == {"heron.txt", "notes.md", "owl.txt"}


def test_a_second_sync_uploads_nothing(tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """Unchanged items are never uploaded twice."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        _sync(kb, store)
        uploads = fake.count("POST", "/v1/files")
        again = _sync(kb, store)
    assert again.to_dict() == {"vector_store": store, "uploaded": 0, "replaced": 0,
                               "deleted": 0, "unchanged": 3, "failed": 0}
    assert fake.count("POST", "/v1/files") == uploads
    assert len(fake.held(store)) == 3


def test_a_changed_item_replaces_its_file_and_a_deleted_one_is_removed(
        tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """A changed file's new text replaces the old file (deleted from the store and from
    Files); a deleted file's item is removed from both."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        _sync(kb, store)
        old = {Path(f["attributes"]["source"]).name: f["id"] for f in fake.held(store)}
        time.sleep(0.01)
        (src / "heron.txt").write_text("The heron has flown to the estuary.", "utf-8")
        kb.ingest([src])
        changed = _sync(kb, store)
        assert (changed.replaced, changed.uploaded, changed.unchanged) == (1, 0, 2)
        assert _by_source(fake, store)["heron.txt"].decode() == \
            "The heron has flown to the estuary."
        assert old["heron.txt"] not in fake.files
        assert old["heron.txt"] not in {f["id"] for f in fake.held(store)}
        (src / "owl.txt").unlink()
        kb.ingest([src])
        deleted = _sync(kb, store)
    assert (deleted.deleted, deleted.unchanged) == (1, 2)
    assert set(_by_source(fake, store)) == {"heron.txt", "notes.md"}
    assert old["owl.txt"] not in fake.files
    assert query(tmp_path / "home", "SELECT count(*) FROM sink_files") == [(2,)]


def test_a_429_with_retry_after_is_waited_out_and_retried(
        tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """A rate-limited request waits at least the server's Retry-After, then succeeds."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        fake.script = [(429, {"Retry-After": "1"}), (503, {})]
        started = time.monotonic()
        report = _sync(kb, store)
        elapsed = time.monotonic() - started
    assert report.uploaded == 3 and not fake.script
    assert elapsed >= 1.0
    assert len(fake.held(store)) == 3


def test_a_refused_key_says_which_variable_to_fix(
        tmp_path: Path, src: Path, fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch) -> None:
    """A key the service refuses (also when read again) stops the sync with a fix."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wrong")
        with pytest.raises(CredentialError, match="OPENAI_API_KEY"):
            _sync(kb, store)


def test_a_wrong_store_id_stops_before_anything_is_uploaded(
        tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """A store id the service does not know (or none given) is the user's to fix;
    nothing is sent."""
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        with pytest.raises(ConfigError, match="--vector-store ID, or --create NAME"):
            sync_openai(kb.db, kb.settings)
        with pytest.raises(ConfigError, match="no vector store vs_missing"):
            _sync(kb, "vs_missing")
    assert fake.count("POST", "/v1/files") == 0


def test_original_files_are_uploaded_and_a_refused_one_fails_alone(
        tmp_path: Path, src: Path, fake: FakeOpenAI) -> None:
    """--original sends the files themselves; one the store cannot read is counted
    failed, leaves nothing behind, and the others are synced."""
    (src / "table.csv").write_text("bird,count\nheron,2\n", "utf-8")
    with _kb(tmp_path, fake) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        report = _sync(kb, store, original=True)
    assert (report.uploaded, report.failed) == (3, 1)
    assert report.failures[0][0].endswith("table.csv")
    assert "unsupported_file" in report.failures[0][1]
    contents = _by_source(fake, store)
    assert set(contents) == set(TEXTS)
    assert contents["notes.md"] == (src / "notes.md").read_bytes()
    assert len(fake.files) == 3  # the refused upload was deleted


def test_listing_a_store_follows_its_pages(tmp_path: Path, src: Path,
                                           fake: FakeOpenAI) -> None:
    """The store's files are listed page by page, each once."""
    fake.page_cap = 2
    with _kb(tmp_path, fake, sink_openai_batch_files=2) as kb:
        kb.ingest([src])
        store = VectorStoreApi(fake.url).create_store("kb")
        _sync(kb, store)
    listed = [f["id"] for f in VectorStoreApi(fake.url).store_files(store)]
    assert sorted(listed) == sorted(f["id"] for f in fake.held(store))
    assert len(listed) == 3


def test_cli_creates_a_store_and_prints_json(tmp_path: Path, src: Path,
                                             fake: FakeOpenAI) -> None:
    """`gristmill sync openai --create NAME --json` makes the store and reports counts."""
    env = env_for(tmp_path / "home", sink_openai_base_url=fake.url)
    env["OPENAI_API_KEY"] = KEY
    assert gristmill("ingest", str(src), env=env).returncode == 0
    done = gristmill("sync", "openai", "--create", "birds", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["vector_store"] in fake.stores
    assert fake.stores[report["vector_store"]]["name"] == "birds"
    assert {k: report[k] for k in ("uploaded", "replaced", "deleted", "unchanged",
                                   "failed")} == {"uploaded": 3, "replaced": 0,
                                                  "deleted": 0, "unchanged": 0,
                                                  "failed": 0}
    assert "created vector store" in done.stderr


@pytest.mark.slow
def test_kill_9_mid_sync_then_rerun_holds_every_item_once(tmp_path: Path,
                                                          fake: FakeOpenAI) -> None:
    """A sync killed -9 part way, run again, leaves each item in the store exactly once
    and nothing pending."""
    src = tmp_path / "many"
    src.mkdir()
    for i in range(12):
        (src / f"bird{i:02d}.txt").write_text(f"bird number {i} sings at dawn", "utf-8")
    home = tmp_path / "home"
    env = env_for(home, sink_openai_base_url=fake.url, sink_openai_batch_files="3")
    env["OPENAI_API_KEY"] = KEY
    assert gristmill("ingest", str(src), env=env).returncode == 0
    store = VectorStoreApi(fake.url).create_store("kb")
    fake.delay = 0.15
    proc = start("sync", "openai", "--vector-store", store, env=env)
    deadline = time.monotonic() + 60
    # Killed as its second file batch reaches the server, which attaches the batch all
    # the same: files in the store that the catalog only knows as pending.
    batches = f"/v1/vector_stores/{store}/file_batches"
    while sum(1 for m, p in list(fake.requests) if m == "POST" and p == batches) < 2:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the sync never got going"
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    time.sleep(2 * fake.delay)  # the server finishes the request of the killed sync
    assert len(fake.held(store)) == 6
    synced, pending = query(home, "SELECT count(file_id), count(pending_file_id) FROM "
                            "sink_files")[0]
    assert (synced, pending) == (3, 3), "the kill did not land mid-sync"
    fake.delay = 0.0
    done = gristmill("sync", "openai", "--vector-store", store, "--json", env=env)
    assert done.returncode == 0, done.stderr
    held = [f for f in fake.held(store)]
    item_ids = [f["attributes"]["item_id"] for f in held]
    assert len(item_ids) == 12 and len(set(item_ids)) == 12
    assert all(f["status"] == "completed" and f["id"] in fake.files for f in held)
    assert len(fake.files) == 12  # the killed batch's files were deleted, not left over
    assert query(home, "SELECT count(*) FROM sink_files WHERE pending_file_id IS NOT "
                 "NULL OR stale_file_id IS NOT NULL OR state <> 'synced'") == [(0,)]
    again = gristmill("sync", "openai", "--vector-store", store, "--json", env=env)
    assert json.loads(again.stdout)["unchanged"] == 12
