"""kill -9 at random moments loses nothing and duplicates nothing."""

from __future__ import annotations

import os
import random
import signal
import time
from pathlib import Path

import pytest

from backends import ON_POSTGRES, open_catalog, query
from corpus import build, marker
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


def _crash_until_done(corpus: Path, env: dict[str, str], took: float, seed: int) -> int:
    """Run ingest, SIGKILL its whole process group at random moments, until one run
    finishes by itself. Returns how many runs were killed.

    ``took`` is how long an uninterrupted run of the same corpus took on this machine,
    now. Each run is killed at a random moment within a slice of that, so the first three
    kills together leave at least a fifth of the work undone however fast the machine
    is; each kill widens the slice by 1.3x so the runs do end.
    """
    rng = random.Random(seed)
    kills = 0
    for _attempt in range(40):
        proc = start("ingest", str(corpus), env=env)
        # Never before ~1 s: start-up (imports, discovery, the fork server) takes most of
        # that, and a run killed before its first commit cannot make progress.
        delay = 1.0 + rng.uniform(0.0, max(0.3, took / 5) * 1.3**kills)
        try:
            proc.wait(timeout=delay)
        except Exception:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver, its workers, the fork server
            proc.communicate()
            kills += 1
            continue
        out, err = proc.communicate()
        assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{err}"
        return kills
    raise AssertionError("ingest never finished after 40 runs")


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
    """SIGKILL of the whole process group at random moments, then re-runs until done,
    gives exactly the chunks, statuses and search results of an uninterrupted run."""
    corpus = tmp_path / "corpus"
    build(corpus, 600, pdf_pages=6)
    (corpus / "broken.pdf").write_bytes(b"%PDF-1.4\n" + os.urandom(2000))
    ref_env = env_for(tmp_path / "ref", workers="2")
    started = time.monotonic()
    done = gristmill("ingest", str(corpus), env=ref_env)
    assert done.returncode == 0, done.stderr
    took = time.monotonic() - started
    print(f"uninterrupted run: {took:.1f} s")

    crash_env = env_for(tmp_path / "crash", workers="2", flush_seconds="0.3")
    kills = _crash_until_done(corpus, crash_env, took, seed=1)
    print(f"killed {kills} runs")
    assert kills >= 3, "the test must really interrupt runs"
    _check_same(tmp_path / "ref", tmp_path / "crash", ref_env, crash_env)


@pytest.mark.slow
def test_kill_9_with_embeddings(tmp_path: Path) -> None:
    """With the real embedder, crashes during extraction and embedding leave every chunk
    embedded exactly once and hybrid search equal to an uninterrupted run."""
    corpus = tmp_path / "corpus"
    build(corpus, 40, pdf_pages=3)
    ref_env = env_for(tmp_path / "ref", embedder="minilm", workers="2")
    started = time.monotonic()
    done = gristmill("ingest", str(corpus), env=ref_env)
    assert done.returncode == 0, done.stderr
    took = time.monotonic() - started

    # Small embedding batches commit every second or two, so kills land between them.
    crash_env = env_for(tmp_path / "crash", embedder="minilm", workers="2",
                        flush_seconds="0.3", embed_batch="16")
    kills = _crash_until_done(corpus, crash_env, took, seed=2)
    assert kills >= 3
    snapshot = _snapshot(tmp_path / "crash")
    assert snapshot["unembedded"] == 0
    _check_same(tmp_path / "ref", tmp_path / "crash", ref_env, crash_env)
