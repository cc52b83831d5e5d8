"""kill -9 part way through a run, again and again, loses nothing and duplicates nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from backends import ON_POSTGRES, open_catalog, query
from corpus import build, marker
from crashes import crash_by_progress
from gate import Gate
from gristmill.index import make_index
from process_tools import env_for, gristmill, gristmill_json

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
