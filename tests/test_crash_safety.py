"""kill -9 part way through a run, again and again, loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from backends import ON_POSTGRES, open_catalog, query
from corpus import build, marker
from crashes import crash_by_progress
from gate import Gate
from gristmill.index import make_index
from process_tools import env_for, gristmill, gristmill_json, start

QUERIES = ["lease batch window", "crash resume journal", marker(3), marker(17), "zqmark"]


def _snapshot(home: Path) -> dict[str, object]:
    """Everything a user could observe about a finished knowledge base."""
    chunks = query(home, "SELECT i.source, c.seq, c.text, c.page FROM chunks c JOIN items i "
                   "ON i.id = c.item_id ORDER BY i.source, c.seq")
    statuses = dict(query(home, "SELECT source, status FROM items"))
    if ON_POSTGRES:  # a generated tsvector column: one per chunk row by construction
        db = open_catalog(home / "gristmill.db")
        try:
            fts_rows = query(home, "SELECT count(*) FROM chunks WHERE tsv IS NOT NULL")[0][0]
            fts_hits = len(make_index(db).keyword("lease", None, 1_000_000))
        finally:
            db.close()
    else:
        fts_rows = query(home, "SELECT count(*) FROM chunks_fts")[0][0]
        fts_hits = query(home, "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH "
                         "'lease'")[0][0]
    vectors = query(home, "SELECT count(*) FROM embeddings")[0][0]
    unembedded = query(home, "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM "
                       "embeddings e WHERE e.text_hash = c.text_hash)")[0][0]
    return {"chunks": chunks, "statuses": statuses, "fts_rows": fts_rows,
            "fts_hits": fts_hits, "vectors": vectors, "unembedded": unembedded}


def _check_same(reference: Path, crashed: Path, ref_env: dict[str, str],
                crash_env: dict[str, str]) -> None:
    ref, got = _snapshot(reference), _snapshot(crashed)
    assert set(got["statuses"].values()) <= {"indexed", "skipped", "failed"}
    assert got["statuses"] == ref["statuses"]  # both homes ingested the same folder
    assert got["chunks"] == ref["chunks"], "chunks differ from an uninterrupted run"
    assert got["fts_rows"] == len(got["chunks"]), "full-text index holds duplicates"
    assert got["fts_hits"] == ref["fts_hits"]
    assert got["vectors"] == ref["vectors"]
    assert got["unembedded"] == ref["unembedded"]
    for words in QUERIES:
        a = gristmill_json("search", words, "-k", "10", env=ref_env)
        b = gristmill_json("search", words, "-k", "10", env=crash_env)
        assert [(h["source"], h["text"]) for h in a] == [(h["source"], h["text"]) for h in b]


@pytest.mark.slow
def test_kill_9_keyword_only(tmp_path: Path) -> None:
    """SIGKILL of the whole process group part way through runs (mid-extraction, and
    at moments around commits), then a run to the end, gives exactly the chunks,
    statuses and search results of an uninterrupted run."""
    corpus = tmp_path / "corpus"
    build(corpus, 600, pdf_pages=6)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    ref_env = env_for(tmp_path / "ref", workers="2")
    done = gristmill("ingest", str(corpus), env=ref_env)
    assert done.returncode == 0, done.stderr

    crash_env = env_for(tmp_path / "crash", workers="2", flush_seconds="0.3")
    kills = crash_by_progress(["ingest", str(corpus)], crash_env, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=4, step=40, seed=1)
    assert kills >= 3, "the test must really interrupt runs"
    _check_same(tmp_path / "ref", tmp_path / "crash", ref_env, crash_env)


@pytest.mark.slow
def test_kill_9_with_embeddings(tmp_path: Path) -> None:
    """With the real embedder, crashes during extraction and embedding leave every chunk
    embedded exactly once and hybrid search equal to an uninterrupted run."""
    corpus = tmp_path / "corpus"
    build(corpus, 40, pdf_pages=3)
    ref_env = env_for(tmp_path / "ref", embedder="minilm", workers="2")
    done = gristmill("ingest", str(corpus), env=ref_env)
    assert done.returncode == 0, done.stderr

    # Small embedding batches: the items a run let through are still being embedded,
    # or just were, when it is killed.
    crash_env = env_for(tmp_path / "crash", embedder="minilm", workers="2",
                        flush_seconds="0.3", embed_batch="16")
    kills = crash_by_progress(["ingest", str(corpus)], crash_env, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=3, step=6, seed=2)
    assert kills >= 3
    snapshot = _snapshot(tmp_path / "crash")
    assert snapshot["unembedded"] == 0
    _check_same(tmp_path / "ref", tmp_path / "crash", ref_env, crash_env)


def _java_repository(root: Path, files: int) -> None:
    """A git repository of ``files`` generated Java classes with a few methods each."""
    for i in range(files):
        folder = root / "src" / "org" / "acme" / f"pkg{i % 7}"
        folder.mkdir(parents=True, exist_ok=True)
        methods = "\n".join(
            f"    /** Computes part {m} of ledger {i}. */\n"
            f"    public long ledger{i}Part{m}(long cents) {{\n"
            f"        return cents * {m + 2} + {i};\n    }}\n" for m in range(4))
        (folder / f"Ledger{i}.java").write_text(
            f"package org.acme.pkg{i % 7};\n\npublic class Ledger{i} {{\n{methods}}}\n")
    _git(root, "init", "-q", "-b", "main")
    _git(root, "add", "-A")
    _git(root, "commit", "-q", "-m", "generated")


def _git(root: Path, *args: str) -> None:
    import subprocess

    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, env=env)


def _code_snapshot(home: Path) -> list[tuple[object, ...]]:
    return query(home, "SELECT i.source, i.git_commit, c.seq, c.text, c.kind, c.entity, "
                 "c.line_start, c.line_end FROM chunks c JOIN items i ON i.id = c.item_id "
                 "ORDER BY i.source, c.seq")


@pytest.mark.slow
def test_kill_9_while_indexing_a_repository_and_its_next_commits(tmp_path: Path) -> None:
    """Code keeps the engine's promise: runs killed -9 part way through a repository's
    first listing, and through the re-index of its next commit (read from git's diff),
    end with exactly the entities, line ranges and commits of uninterrupted runs."""
    repo = tmp_path / "repo"
    _java_repository(repo, 300)
    ref_env = env_for(tmp_path / "ref", workers="2")
    crash_env = env_for(tmp_path / "crash", workers="2", flush_seconds="0.3")

    def compare() -> None:
        got, want = _code_snapshot(tmp_path / "crash"), _code_snapshot(tmp_path / "ref")
        assert got == want, "entities differ from an uninterrupted run"
        assert len({row[5] for row in got if row[4] == "method"}) == len(
            [row for row in got if row[4] == "method"]), "an entity is stored twice"

    assert gristmill("ingest", str(repo), env=ref_env).returncode == 0
    kills = crash_by_progress(["ingest", str(repo)], crash_env, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=3, step=40, seed=3)
    assert kills == 3
    compare()

    for i in range(0, 120, 2):  # the next commit: changed, renamed and deleted classes
        path = repo / "src" / "org" / "acme" / f"pkg{i % 7}" / f"Ledger{i}.java"
        path.write_text(path.read_text().replace("cents *", "cents -"))
    for i in range(1, 40, 2):
        folder = repo / "src" / "org" / "acme" / f"pkg{i % 7}"
        _git(repo, "mv", str(folder / f"Ledger{i}.java"), str(folder / f"Moved{i}.java"))
    for i in range(41, 61, 2):
        (repo / "src" / "org" / "acme" / f"pkg{i % 7}" / f"Ledger{i}.java").unlink()
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "next")
    assert gristmill("ingest", str(repo), env=ref_env).returncode == 0
    # The re-index turns finished items back to pending, so it is killed by tickets
    # used, not by a count of finished items: each run lets 10 changed classes through,
    # then dies while the next ones wait at the gate.
    gate = Gate(tmp_path / "gate2")
    for _ in range(2):
        gate.close()
        proc = start("ingest", str(repo), env=gate.env(crash_env))
        gate.admit(10)
        deadline = time.monotonic() + 300
        while list(gate.folder.glob("ticket-*")) or not query(
                tmp_path / "crash", "SELECT count(*) FROM items WHERE status = 'processing'"
        )[0][0]:
            assert proc.poll() is None, "the run ended before it was killed"
            assert time.monotonic() < deadline, "the run never used its tickets"
            time.sleep(0.05)
        time.sleep(0.5)  # a flush (flush_seconds 0.3) may or may not have landed
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
    gate.open()
    assert gristmill("ingest", str(repo), env=gate.env(crash_env)).returncode == 0
    compare()
    assert not query(tmp_path / "crash", "SELECT count(*) FROM items WHERE git_commit IS "
                     "NULL OR source LIKE '%Ledger41.java'")[0][0]
