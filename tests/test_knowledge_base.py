"""Ingest through the library: resume, change detection, removal, filters, dedup."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backends import query
from docs import make_pdf
from gristmill.errors import ConfigError, SourceError
from gristmill.knowledge_base import KnowledgeBase


def _kb(tmp_path: Path, **settings: object) -> KnowledgeBase:
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    return KnowledgeBase.open(tmp_path / "home", **settings)


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _sources(kb: KnowledgeBase, query: str) -> list[str]:
    return [Path(h.source).name for h in kb.search(query, mode="keyword", k=50)]


def test_ingest_makes_every_file_searchable_with_page_numbers(tmp_path: Path) -> None:
    """Text and PDF files become searchable; PDF hits carry their page number."""
    src = tmp_path / "src"
    _write(src, "notes.txt", "The heron stands in the shallow water.")
    make_pdf(src / "paper.pdf", ["Introduction about kingfishers.", "Results about herons."])
    with _kb(tmp_path) as kb:
        report = kb.ingest([src])
        assert report.items["indexed"] == 2 and report.failed == 0
        hits = kb.search("herons", mode="keyword")
        assert {Path(h.source).name for h in hits} == {"notes.txt", "paper.pdf"}
        pdf_hit = next(h for h in hits if h.source.endswith("paper.pdf"))
        assert pdf_hit.page == 2


def test_rerun_skips_unchanged_and_reprocesses_changed(tmp_path: Path) -> None:
    """A re-run touches nothing unchanged and re-indexes a changed file's new text."""
    src = tmp_path / "src"
    _write(src, "a.txt", "alpha original wording")
    _write(src, "b.txt", "bravo stays the same")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        again = kb.ingest([src])
        assert (again.discovered.new, again.discovered.changed) == (0, 0)
        assert again.discovered.unchanged == 2
        time.sleep(0.01)
        _write(src, "a.txt", "alpha rewritten completely")
        third = kb.ingest([src])
        assert third.discovered.changed == 1
        assert _sources(kb, "rewritten") == ["a.txt"]
        assert _sources(kb, "original") == []
        assert kb.status()["chunks"] == 2


def test_touched_file_with_same_bytes_is_not_reprocessed(tmp_path: Path) -> None:
    """A new mtime with identical bytes keeps the existing chunks (no re-extraction)."""
    src = tmp_path / "src"
    path = _write(src, "a.txt", "charlie content")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
        report = kb.ingest([src])
        assert report.discovered.unchanged == 1 and report.discovered.changed == 0


def test_removed_file_loses_its_chunks(tmp_path: Path) -> None:
    """A file deleted from the source disappears from search on the next run."""
    src = tmp_path / "src"
    _write(src, "keep.txt", "delta keeps")
    gone = _write(src, "gone.txt", "echo vanishes")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        gone.unlink()
        report = kb.ingest([src])
        assert report.discovered.removed == 1
        assert _sources(kb, "vanishes") == []
        assert kb.status()["items"]["indexed"] == 1


def test_file_replaced_by_a_fifo_loses_its_chunks(tmp_path: Path) -> None:
    """An indexed path that stops being a regular file is skipped with a reason and its
    old text no longer comes up in search."""
    src = tmp_path / "src"
    path = _write(src, "notes.txt", "papa was here")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        assert _sources(kb, "papa") == ["notes.txt"]
        path.unlink()
        os.mkfifo(path)
        kb.ingest([src])
        assert _sources(kb, "papa") == []
        assert kb.status()["items"]["skipped"] == 1 and kb.status()["chunks"] == 0
        assert "named pipe" in kb.errors()[0].examples[0]["error"]


def test_capped_run_removes_nothing(tmp_path: Path) -> None:
    """--max-files does not look everywhere, so it never deletes unseen items."""
    src = tmp_path / "src"
    for i in range(5):
        _write(src, f"f{i}.txt", f"foxtrot number {i}")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        report = kb.ingest([src], max_files=2)
        assert report.discovered.seen == 2 and report.discovered.removed == 0
        assert kb.status()["items"]["indexed"] == 5


def test_include_and_exclude_patterns(tmp_path: Path) -> None:
    """Only included names are ingested, excluded ones never, and hidden folders are skipped."""
    src = tmp_path / "src"
    _write(src, "a.md", "golf markdown")
    _write(src, "b.txt", "golf text")
    _write(src, "drafts/c.md", "golf draft")
    _write(src, ".git/d.md", "golf hidden")
    with _kb(tmp_path) as kb:
        kb.ingest([src], include=["*.md"], exclude=["drafts/*"])
        assert _sources(kb, "golf") == ["a.md"]


def test_identical_files_share_chunks_and_vectors_are_not_duplicated(tmp_path: Path) -> None:
    """Two copies of a file are both searchable; their text is embedded once."""
    src = tmp_path / "src"
    _write(src, "one.txt", "hotel identical content for both copies")
    _write(src, "two.txt", "hotel identical content for both copies")
    with _kb(tmp_path, embedder="minilm") as kb:
        kb.ingest([src])
        assert sorted(_sources(kb, "hotel")) == ["one.txt", "two.txt"]
        status = kb.status()
        assert status["items"]["indexed"] == 2
        assert status["chunks"] == 2 and status["vectors"] == 1


def test_keyword_only_kb_gets_vectors_when_an_embedder_is_turned_on(tmp_path: Path) -> None:
    """Items indexed with embedder none are embedded by a later run with minilm."""
    src = tmp_path / "src"
    _write(src, "a.txt", "india the quick brown fox jumps over the lazy dog")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        assert "vectors" not in kb.status()
    with _kb(tmp_path, embedder="minilm") as kb:
        kb.ingest([src])
        status = kb.status()
        assert status["items"]["indexed"] == 1 and status["vectors"] == 1
        hits = kb.search("a fast auburn fox leaping", mode="vector")
        assert hits and hits[0].source.endswith("a.txt")


def test_two_phase_ingest_then_embed(tmp_path: Path) -> None:
    """With embed=False items are keyword-searchable but `extracted`; embed_pending
    finishes them."""
    src = tmp_path / "src"
    _write(src, "a.txt", "juliet speaks of stars")
    with _kb(tmp_path, embedder="minilm") as kb:
        kb.ingest([src], embed=False)
        assert kb.status()["items"]["extracted"] == 1
        assert _sources(kb, "stars") == ["a.txt"]
        kb.embed_pending()
        assert kb.status()["items"]["indexed"] == 1


def test_collections_are_separate(tmp_path: Path) -> None:
    """Search in one collection never returns another's chunks."""
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "x.txt", "kilo in collection a")
    _write(b, "y.txt", "kilo in collection b")
    with _kb(tmp_path) as kb:
        kb.ingest([a], collection="ca")
        kb.ingest([b], collection="cb")
        assert [Path(h.source).name for h in kb.search("kilo", collection="ca")] == ["x.txt"]
        assert set(kb.status()["collections"]) == {"ca", "cb"}


def test_failed_items_can_be_retried(tmp_path: Path) -> None:
    """reset_failed re-queues failures; a fixed file is then indexed."""
    src = tmp_path / "src"
    broken = src / "doc.pdf"
    src.mkdir()
    broken.write_bytes(b"%PDF-1.4 not really a pdf")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        assert kb.status()["items"]["failed"] == 1
        assert kb.errors()[0].examples[0]["source"] == str(broken)
        assert kb.reset_failed() == 1
        report = kb.ingest([src])
        assert report.items["failed"] == 1  # still broken: fails again, not stuck


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    """A source path that does not exist raises SourceError naming it."""
    with _kb(tmp_path) as kb, pytest.raises(SourceError, match="does not exist"):
        kb.ingest([tmp_path / "nope"])


def test_hostile_queries_are_safe(tmp_path: Path) -> None:
    """Quotes, FTS operators and unicode in queries never raise."""
    src = tmp_path / "src"
    _write(src, "a.txt", "lima NEAR the café")
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        for query in ['"', 'lima AND', "NEAR(", "*", "café:", "()", "", "日本語", "a OR"]:
            kb.search(query)
        assert _sources(kb, 'café" OR') == ["a.txt"]
        with pytest.raises(ConfigError):
            kb.search("x", k=0)


def test_extraction_starts_before_a_slow_walk_ends(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers get the first files while discovery is still hashing the rest, so a
    large pile on a slow disk is searchable piece by piece, not after the whole walk."""
    import gristmill.discovery

    src = tmp_path / "src"
    for i in range(120):
        _write(src, f"f{i:03d}.txt", f"document number {i} about millstones")
    real_hash = gristmill.discovery.sha256_file
    hashed: list[str] = []

    def held_hash(path: str) -> str:
        # After the first batch (16 files) the walk waits until a file is indexed: it can
        # only go on if workers got files while it was still hashing (however fast or
        # slow the machine).
        hashed.append(path)
        deadline = time.monotonic() + 120
        while len(hashed) > 16 and not query(
                tmp_path / "home", "SELECT 1 FROM items WHERE status = 'indexed'"):
            assert time.monotonic() < deadline, "nothing indexed before the walk ended"
            time.sleep(0.02)
        return real_hash(path)

    monkeypatch.setattr(gristmill.discovery, "sha256_file", held_hash)
    with _kb(tmp_path) as kb:
        report = kb.ingest([src])
        assert report.items["indexed"] == 120
    [(first_done, last_found)] = query(
        tmp_path / "home", "SELECT (SELECT min(updated_at) FROM items WHERE status = "
        "'indexed'), (SELECT max(created_at) FROM items)")
    assert first_done < last_found


def test_a_pending_file_removed_from_the_source_is_never_attempted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An item left pending by an earlier run whose file is gone is dropped by the next
    walk, not handed to a worker that would fail on it while the walk goes on."""
    import gristmill.discovery

    real_walk = gristmill.discovery.walk

    def slow_walk(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        for facts in real_walk(*args, **kwargs):  # type: ignore[arg-type]
            time.sleep(0.05)  # the runner is claiming long before the walk ends
            yield facts

    monkeypatch.setattr(gristmill.discovery, "walk", slow_walk)
    src = tmp_path / "src"
    for i in range(40):
        _write(src, f"f{i:02d}.txt", f"kept file {i}")
    gone = _write(src, "a-gone.txt", "this file will vanish")
    with _kb(tmp_path) as kb:
        # As if an earlier run discovered everything and was killed before extracting.
        from gristmill.catalog import FileFacts
        from gristmill.sources import sha256_file

        facts = [FileFacts(str(p), p.stat().st_size, p.stat().st_mtime_ns)
                 for p in sorted(src.iterdir())]
        from gristmill.catalog.jobs import JobSpec

        earlier = kb.jobs.create(JobSpec("default", (str(src),)), "someone-else")
        run = kb.jobs.start_run(earlier, "someone-else")
        kb.catalog.record_discovered("default", str(src), facts, run, sha256_file)
        gone.unlink()
        report = kb.ingest([src])
        assert report.discovered.removed == 1
        assert report.items == {**report.items, "indexed": 40, "failed": 0}
        assert report.failures == [] and report.failed == 0  # not even a transient one
        assert kb.errors() == []


def test_bumping_an_extractor_version_redoes_only_its_items(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """After an upgrade that bumps the text extractor, the next run re-extracts the text
    files and leaves the PDF alone (its chunks keep their ids)."""
    import gristmill.extract

    src = tmp_path / "src"
    _write(src, "a.txt", "first text about sluices")
    _write(src, "b.md", "# Notes\n\nsecond text about sluices")
    make_pdf(src / "c.pdf", ["a page about sluices"])

    def chunk_ids(kb: KnowledgeBase) -> dict[str, list[int]]:
        ids: dict[str, list[int]] = {}
        for source, chunk_id in kb.db.conn.execute(
                "SELECT i.source, c.id FROM chunks c JOIN items i ON i.id = c.item_id"):
            ids.setdefault(Path(source).name, []).append(chunk_id)
        return ids

    with _kb(tmp_path) as kb:
        kb.ingest([src])
        before = chunk_ids(kb)
        assert kb.ingest([src]).discovered.outdated == 0
        monkeypatch.setitem(gristmill.extract._BUILTIN_VERSIONS, "text", 99)
        report = kb.ingest([src])
        after = chunk_ids(kb)
        assert report.discovered.outdated == 2
        assert report.items["indexed"] == 3
        assert after["c.pdf"] == before["c.pdf"]
        assert set(after["a.txt"]).isdisjoint(before["a.txt"])
        assert set(after["b.md"]).isdisjoint(before["b.md"])
        assert {Path(h.source).name for h in kb.search("sluices", mode="keyword")} == {
            "a.txt", "b.md", "c.pdf"}


def test_progress_total_counts_files_discovered_during_the_run(tmp_path: Path) -> None:
    """Discovery runs beside extraction, so the progress total grows with it and ends
    equal to what was done: the ETA and the bar never stall at 'n/0'."""
    src = tmp_path / "src"
    for i in range(60):
        _write(src, f"f{i:02d}.txt", f"file {i} about hoppers")
    seen = []
    with _kb(tmp_path) as kb:
        kb.ingest([src], on_progress=lambda p: seen.append((p.done, p.total)))
    assert seen[-1] == (60, 60)
    assert all(done <= total for done, total in seen if total)


def test_files_without_an_extension_are_read_when_they_are_text(tmp_path: Path) -> None:
    """README-style files with no extension are read as text; binary ones are skipped
    as an unsupported type."""
    src = tmp_path / "src"
    _write(src, "README", "the wombat burrow guide")
    (src / "blob").write_bytes(bytes(range(256)) * 10)
    with _kb(tmp_path) as kb:
        report = kb.ingest([src])
        assert _sources(kb, "wombat") == ["README"]
        assert report.items["indexed"] == 1 and report.items["skipped"] == 1
        [group] = kb.errors()
        assert group.examples[0]["error"] == "unsupported file type (no extension)"


def test_symlinks_out_of_the_source_roots_are_not_followed(tmp_path: Path) -> None:
    """With source_roots set (as the HTTP API requires), a file symlink planted inside an
    allowed folder that points outside it is skipped with a reason, never read; one
    pointing inside is read."""
    secret = _write(tmp_path / "outside", "secret.txt", "the badger password")
    src = tmp_path / "src"
    inside = _write(src, "real.txt", "the otter holt")
    (src / "escape.txt").symlink_to(secret)
    (src / "alias.txt").symlink_to(inside)
    with _kb(tmp_path, source_roots=[src]) as kb:
        kb.ingest([src])
        assert _sources(kb, "badger") == []
        assert sorted(_sources(kb, "otter")) == ["alias.txt", "real.txt"]
        [group] = kb.errors()
        assert group.examples[0]["error"] == ("symlink out of the allowed source roots "
                                              "(source_roots)")


def test_the_embedding_cache_reports_hits_and_misses_per_run_and_overall(
        tmp_path: Path) -> None:
    """A text embedded once is a miss; the same text again (another file, another
    collection, a later run) is a hit: per run in the report's progress, and over every
    run in `status` (`embedding_cache`: hits, misses, hit_rate)."""
    first, second = tmp_path / "first", tmp_path / "second"
    _write(first, "a.txt", "Herons wade in shallow water at dawn.")
    _write(first, "b.txt", "Kingfishers dive for small fish.")
    _write(second, "copy.txt", "Herons wade in shallow water at dawn.")
    _write(second, "new.txt", "Cormorants dry their wings in the sun.")
    with _kb(tmp_path, embedder="minilm") as kb:
        cache = kb.ingest([first]).progress["embed"]["cache"]
        assert cache == {"hits": 0, "misses": 2, "hit_rate": 0.0}
        cache = kb.ingest([second], collection="other").progress["embed"]["cache"]
        assert cache == {"hits": 1, "misses": 1, "hit_rate": 0.5}
        assert kb.status()["embedding_cache"] == {"hits": 1, "misses": 3, "hit_rate": 0.25}
