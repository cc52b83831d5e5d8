"""`gristmill rebuild` (issue 17): a collection extracted, chunked and indexed again
from the store of originals, its sources gone; on a new machine after export and
import; continued after a kill -9 without redoing what was rebuilt; an original not in
the store failing its item with what to do; the store folder gone pausing the job;
a git work tree's markup still source code; no store set refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedFS

from backends import ON_POSTGRES, query, url_for
from docs import make_docx, make_pdf
from gate import Gate
from gristmill.errors import ConfigError
from gristmill.knowledge_base import KnowledgeBase
from gristmill.store import object_key
from process_tools import env_for, gristmill, gristmill_json, start

QUERIES = ("barley", "flour", "guild", "water wheel", "millpond sluice")


def _kb(home: Path, **settings: object) -> KnowledgeBase:
    """The knowledge base at ``home``, on its own catalog on either backend."""
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    if ON_POSTGRES:
        settings.setdefault("database_url", url_for(home / "gristmill.db"))
    return KnowledgeBase.open(home, **settings)


def _corpus(folder: Path) -> None:
    """Text, PDF, DOCX, a nested file, a zip (its member comes back with it) and an
    unsupported file (never kept: left as it is)."""
    (folder / "notes").mkdir(parents=True)
    (folder / "readme.txt").write_text("The granary ledger lists every sack of barley.\n")
    make_pdf(folder / "report.pdf", ["Quarterly milling report: wheat flour output rose."])
    make_docx(folder / "minutes.docx", ["Minutes of the miller guild meeting."])
    (folder / "notes" / "deep.txt").write_text("A nested note about the water wheel.\n")
    with zipfile.ZipFile(folder / "bundle.zip", "w") as archive:
        archive.writestr("inside.txt", "A member about the millpond sluice.\n")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 4)


def _items(home: Path) -> list[tuple[str, str, str | None]]:
    """Every item: source, status, sha256."""
    return sorted((str(s), str(st), sha) for s, st, sha in query(
        home, "SELECT source, status, sha256 FROM items"))


def _chunks(home: Path) -> list[tuple[str, int, str]]:
    """Every chunk: its item's source, its place, its text."""
    return sorted((str(s), int(q), str(t)) for s, q, t in query(
        home, "SELECT i.source, c.seq, c.text FROM chunks c JOIN items i "
        "ON i.id = c.item_id"))


def _search(env: dict[str, str]) -> dict[str, list[tuple[str, str]]]:
    return {q: [(hit["source"], hit["text"]) for hit in gristmill_json(
        "search", q, "--mode", "keyword", env=env)] for q in QUERIES}


def _rebuilt_by_job(home: Path) -> dict[str, float]:
    """Top-level items a rebuild job settled, with when (``updated_at``)."""
    return {str(source): float(at) for source, at in query(
        home, "SELECT source, updated_at FROM items WHERE parent_id IS NULL AND status IN "
        "('extracted', 'indexed', 'skipped', 'failed') AND seen_run IN (SELECT r.id FROM "
        "runs r JOIN jobs j ON j.id = r.job_id WHERE j.spec LIKE ?)", ('%"rebuild"%',),
        missing_ok=True)}


def test_a_collection_is_rebuilt_from_the_store_with_its_sources_gone(
        tmp_path: Path) -> None:
    """Ingested with a folder store, its source folder deleted: `gristmill rebuild`
    extracts every item again from the store, and the items (named by their sources),
    chunks and search results are those of the ingest; the unsupported file, never
    kept, stays skipped."""
    src, store, home = tmp_path / "src", tmp_path / "store", tmp_path / "home"
    store.mkdir()
    _corpus(src)
    env = env_for(home, store=str(store))
    first = gristmill_json("ingest", str(src), "--collection", "mill", env=env)
    assert first["failed"] == 0
    items, chunks, hits = _items(home), _chunks(home), _search(env)
    assert all(hits.values())
    shutil.rmtree(src)  # the sources are gone: nothing can read them
    report = gristmill_json("rebuild", "--collection", "mill", env=env)
    assert report["state"] == "succeeded" and report["failed"] == 0
    assert report["discovered"]["outdated"] == 5  # every kept original, no more
    assert report["processed"] == 6  # and the zip's member with its container
    assert _items(home) == items
    assert _chunks(home) == chunks
    assert _search(env) == hits
    assert not src.exists()
    skipped = query(home, "SELECT error_type FROM items WHERE source LIKE '%blob.bin'")
    assert skipped == [("unsupported",)]
    jobs = gristmill_json("jobs", "list", env=env)
    assert [job["kind"] for job in jobs] == ["rebuild", "ingest"]


def test_a_rebuild_reads_an_s3_store(tmp_path: Path, seaweed: SeaweedFS,
                                     bucket: str) -> None:
    """With the originals under an s3:// prefix (SeaweedFS), the rebuild downloads
    each and finds the same chunks; an object deleted from the bucket fails its item."""
    src = tmp_path / "src"
    _corpus(src)
    with _kb(tmp_path / "home", store=f"s3://{bucket}/originals/") as kb:
        assert kb.ingest([src]).failed == 0
        chunks = _chunks(tmp_path / "home")
        hits = {q: [(h.source, h.text) for h in kb.search(q, mode="keyword")]
                for q in QUERIES}
        shutil.rmtree(src)
        report = kb.rebuild()
        assert report.state == "succeeded" and report.failed == 0 and report.processed == 6
        assert _chunks(tmp_path / "home") == chunks
        assert {q: [(h.source, h.text) for h in kb.search(q, mode="keyword")]
                for q in QUERIES} == hits
        # An object gone from the bucket: its item fails saying so, the rest rebuild.
        (sha,) = query(tmp_path / "home", "SELECT sha256 FROM items WHERE source LIKE ?",
                       ("%readme.txt",))[0]
        seaweed.client().delete_object(Bucket=bucket, Key=f"originals/{object_key(sha)}")
        again = kb.rebuild()
        assert again.failed == 1 and again.items["indexed"] == 5
        assert "not in the store" in again.failures[0]


def test_a_moved_knowledge_base_is_rebuilt_on_the_new_machine(tmp_path: Path) -> None:
    """Exported, imported into a new home, the sources absent there: a rebuild with the
    same store gives the same search results."""
    src, store = tmp_path / "src", tmp_path / "store"
    store.mkdir()
    _corpus(src)
    old = env_for(tmp_path / "old", store=str(store))
    gristmill_json("ingest", str(src), env=old)
    hits = _search(old)
    archive = tmp_path / "kb.gristmill"
    gristmill_json("export", str(archive), env=old)
    shutil.rmtree(src)
    shutil.rmtree(tmp_path / "old")
    new = env_for(tmp_path / "new", store=str(store))
    gristmill_json("import", str(archive), env=new)
    report = gristmill_json("rebuild", env=new)
    assert report["failed"] == 0 and report["processed"] == 6
    assert _search(new) == hits


def test_a_rebuild_killed_mid_run_continues_without_redoing_what_it_rebuilt(
        tmp_path: Path) -> None:
    """kill -9 of the rebuild once some items are rebuilt and others held mid-way: the
    next `gristmill rebuild` continues the same job, rebuilds each remaining item once,
    leaves those rebuilt before the kill alone, and duplicates no chunk."""
    src, store, home = tmp_path / "src", tmp_path / "store", tmp_path / "home"
    store.mkdir()
    src.mkdir()
    for n in range(16):
        (src / f"f{n:02d}.txt").write_text(f"Sack number {n} of barley, weighed twice.\n")
    env = env_for(home, store=str(store), workers="2")
    gristmill_json("ingest", str(src), env=env)
    chunks = _chunks(home)
    shutil.rmtree(src)
    gate = Gate(tmp_path / "gate")
    gated = gate.env(env)
    proc = start("rebuild", "--json", env=gated)
    gate.admit(5)
    deadline = time.monotonic() + 300
    while not (len(_rebuilt_by_job(home)) >= 5 and not list(gate.folder.glob("ticket-*"))
               and query(home, "SELECT count(*) FROM items WHERE status = 'processing'")
               [0][0] > 0):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the rebuild never committed its share"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = _rebuilt_by_job(home)
    passed_before = len(gate.passed())
    assert 5 <= len(before) < 16
    gate.open()
    done = gristmill("rebuild", "--json", env=gated)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    assert report["state"] == "succeeded" and report["failed"] == 0
    after = _rebuilt_by_job(home)
    assert len(after) == 16
    assert {source: after[source] for source in before} == before  # not redone
    redone = [Path(line).name for line in gate.passed()[passed_before:]]
    assert sorted(redone) == sorted(Path(s).name for s in after if s not in before)
    assert _chunks(home) == chunks  # each once: none lost, none twice
    jobs = gristmill_json("jobs", "list", env=env)
    newest = jobs[0]  # the one rebuild job, continued by the second run
    assert (newest["kind"], newest["state"], newest["runs"]) == ("rebuild", "succeeded", 2)
    assert len(jobs) == 2


def test_an_item_without_its_original_in_the_store_fails_saying_what_to_do(
        tmp_path: Path) -> None:
    """Items ingested before `store` was set have no original there: each fails with a
    reason saying to ingest it from its source; the others are rebuilt."""
    early, late, store = tmp_path / "early", tmp_path / "late", tmp_path / "store"
    store.mkdir()
    early.mkdir()
    (early / "old.txt").write_text("An old note about the tithe barn.\n")
    late.mkdir()
    (late / "new.txt").write_text("A new note about the grain store.\n")
    with _kb(tmp_path / "home") as kb:
        kb.ingest([early])
    with _kb(tmp_path / "home", store=str(store)) as kb:
        kb.ingest([late])
        report = kb.rebuild()
        assert report.failed == 1 and report.state == "succeeded"
        assert report.items["indexed"] == 1
        (failure,) = report.failures
        assert failure.startswith(str(early / "old.txt"))
        assert "not in the store" in failure and "gristmill store push" in failure
        assert kb.search("grain", mode="keyword")


def test_without_a_store_rebuild_says_to_set_it(tmp_path: Path) -> None:
    """No `store` setting: a configuration error (exit 2) naming the setting."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("A note.\n")
    env = env_for(tmp_path / "home")
    gristmill_json("ingest", str(tmp_path / "src"), env=env)
    done = gristmill("rebuild", env=env)
    assert done.returncode == 2
    assert "`store` is not set" in done.stderr and "GRISTMILL_STORE" in done.stderr


def test_rebuild_of_an_empty_collection_is_refused(tmp_path: Path) -> None:
    """A collection with no items: nothing to rebuild, said with where to look."""
    store = tmp_path / "store"
    store.mkdir()
    with _kb(tmp_path / "home", store=str(store)) as kb, \
            pytest.raises(ConfigError, match="no items to rebuild"):
        kb.rebuild("nothing")


def test_a_store_gone_pauses_the_rebuild_and_jobs_resume_finishes_it(
        tmp_path: Path) -> None:
    """The store folder missing (a NAS not mounted): the rebuild pauses with the reason
    and fails no item; mounted again, `gristmill jobs resume ID` finishes it."""
    src, store, home = tmp_path / "src", tmp_path / "store", tmp_path / "home"
    store.mkdir()
    _corpus(src)
    env = env_for(home, store=str(store))
    gristmill_json("ingest", str(src), env=env)
    chunks = _chunks(home)
    shutil.rmtree(src)
    store.rename(tmp_path / "unmounted")
    paused = gristmill_json("rebuild", env=env)
    assert paused["state"] == "paused" and paused["failed"] == 0
    assert str(store) in paused["reason"] and "does not exist" in paused["reason"]
    (tmp_path / "unmounted").rename(store)
    done = gristmill_json("jobs", "resume", str(paused["job_id"]), env=env)
    assert done["state"] == "succeeded" and done["failed"] == 0
    assert _chunks(home) == chunks


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_git_repository_is_rebuilt_with_the_same_extractors(tmp_path: Path) -> None:
    """A web.xml in a git work tree is source code (markup entities), not a document:
    rebuilt from its copy in the store, with the repository gone, it still is."""
    repo, store, home = tmp_path / "repo", tmp_path / "store", tmp_path / "home"
    store.mkdir()
    (repo / "WEB-INF").mkdir(parents=True)
    (repo / "WEB-INF" / "web.xml").write_text(
        "<?xml version=\"1.0\"?>\n<web-app>\n  <servlet>\n    <servlet-name>Granary"
        "</servlet-name>\n    <servlet-class>org.mill.Granary</servlet-class>\n"
        "  </servlet>\n</web-app>\n")
    (repo / "Granary.java").write_text("public class Granary {\n  void weigh() {}\n}\n")
    git_env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
               "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    for args in (["init", "-q"], ["add", "."], ["commit", "-qm", "mill"]):
        subprocess.run(["git", "-C", str(repo), *args], check=True, env=git_env)
    env = env_for(home, store=str(store))
    gristmill_json("ingest", str(repo), env=env)
    extractors = query(home, "SELECT source, extractor FROM items ORDER BY source")
    assert "markup" in {extractor for _, extractor in extractors}
    chunks = _chunks(home)
    shutil.rmtree(repo)
    assert gristmill_json("rebuild", env=env)["failed"] == 0
    assert query(home, "SELECT source, extractor FROM items ORDER BY source") == extractors
    assert _chunks(home) == chunks
