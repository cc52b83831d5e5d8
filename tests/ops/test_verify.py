"""``gristmill verify``: a sound knowledge base passes; each kind of damage is found and
named with a fix that works; ``--repair`` mends what it safely can."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from backends import ON_POSTGRES, query, url_for
from gristmill.catalog import lease_owner_token, open_database
from gristmill.config import Settings
from gristmill.embed.minilm import DIM, MODEL_ID
from gristmill.knowledge_base import KnowledgeBase
from gristmill.ops.verify import Finding, Verification, repair_database, verify_database
from process_tools import env_for, gristmill


def _docs(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    (docs / "sub").mkdir(parents=True)
    (docs / "heron.txt").write_text("The grey heron stands in the river at dawn.\n")
    (docs / "sub" / "leases.txt").write_text("Leases expire and items become claimable.\n")
    (docs / "notes.md").write_text("# Harbour\n\nNovember boats wait in the harbour.\n")
    # A container: its member is an item of its own, with no file of its own on disk.
    with zipfile.ZipFile(docs / "bundle.zip", "w") as bundle:
        bundle.writestr("inside.txt", "A lighthouse keeper named Mike.\n")
    return docs


def _ingest(home: Path, docs: Path) -> None:
    with KnowledgeBase.open(home, embedder="minilm", workers=1) as kb:
        kb.ingest([docs], collection="default")


@pytest.fixture
def kb(tmp_path: Path) -> Path:
    """The home of a small knowledge base of text files, with vectors."""
    home = tmp_path / "home"
    _ingest(home, _docs(tmp_path))
    return home


def _verify(home: Path, *, sources: bool = False) -> Verification:
    settings = Settings.load(home=home, embedder="minilm")
    db = open_database(settings, readonly=True)
    try:
        return verify_database(db, settings, sources=sources)
    finally:
        db.close()


def _repair(home: Path) -> list[str]:
    settings = Settings.load(home=home, embedder="minilm")
    db = open_database(settings)
    try:
        return repair_database(db, verify_database(db, settings).findings)
    finally:
        db.close()


def _damage(home: Path, *statements: str, foreign_keys: bool = True) -> None:
    """Run SQL on the catalog from another connection, as a bug or a bad copy would;
    ``foreign_keys=False``: with the database's foreign-key checks off."""
    if ON_POSTGRES:
        import psycopg

        with psycopg.connect(url_for(home / "gristmill.db"), autocommit=True) as conn:
            if not foreign_keys:
                try:  # foreign keys (and their cascades) are triggers a replica skips
                    conn.execute("SET session_replication_role = replica")
                except psycopg.errors.InsufficientPrivilege:
                    pytest.skip("turning foreign keys off needs a PostgreSQL superuser")
            for sql in statements:
                conn.execute(sql)
        return
    import sqlite3

    conn = sqlite3.connect(home / "gristmill.db", isolation_level=None)
    try:
        conn.execute(f"PRAGMA foreign_keys = {'ON' if foreign_keys else 'OFF'}")
        for sql in statements:
            conn.execute(sql)
    finally:
        conn.close()


def _one(result: Verification, check: str) -> Finding:
    found = [f for f in result.findings if f.check == check]
    assert len(found) == 1 and len(result.findings) == 1, result.findings
    return found[0]


def _search(home: Path, words: str) -> list[str]:
    with KnowledgeBase.open(home, create=False, embedder="none") as kb:
        return [Path(hit.source).name for hit in kb.search(words, mode="keyword")]


def test_a_sound_knowledge_base_passes(kb: Path) -> None:
    """Freshly ingested: no findings, and the counts of what was looked at."""
    result = _verify(kb, sources=True)
    assert result.ok and result.findings == []
    items, chunks, vectors = query(kb, "SELECT (SELECT count(*) FROM items), "
                                   "(SELECT count(*) FROM chunks), "
                                   "(SELECT count(*) FROM embeddings)")[0]
    assert result.checked["items"] == items == 5  # 4 files + the zip's member
    assert result.checked["chunks"] == chunks and result.checked["vectors"] == vectors > 0
    assert result.checked["source_files"] == 4  # the member has no file of its own


@pytest.mark.slow  # ~25 s: the ingest shares the cores with the verify processes
def test_a_running_ingest_is_not_a_problem(tmp_path: Path) -> None:
    """Verified while an ingest is extracting and embedding: its live leases, its
    extracted items still waiting for vectors, its half-done state are no findings
    (every check reads one snapshot)."""
    docs = tmp_path / "many"
    docs.mkdir()
    for n in range(200):
        (docs / f"note{n:03}.txt").write_text(f"Note {n} about herons and harbours.\n")
    env = env_for(tmp_path / "home", embedder="minilm", workers="2")
    log = (tmp_path / "ingest.log").open("w")
    run = subprocess.Popen([sys.executable, "-m", "gristmill", "ingest", str(docs)],
                           env=env, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
    try:
        verified_while_running = 0
        while run.poll() is None:
            done = gristmill("verify", "--json", env=env)
            if done.returncode == 1 and "no knowledge base" in done.stderr:
                continue  # the ingest has not made its catalog yet
            assert done.returncode == 0, done.stdout + done.stderr
            verified_while_running += run.poll() is None
    finally:
        run.wait(timeout=300)
        log.close()
    assert run.returncode == 0, (tmp_path / "ingest.log").read_text()
    assert verified_while_running >= 1
    assert gristmill("verify", "--sources", env=env).returncode == 0


def test_cli_exit_status_text_and_json(kb: Path) -> None:
    """Exit 0 with a summary when all holds; exit 1 with one `error:` line per finding
    (and the JSON shape scripts read) when not; verify alone changes nothing."""
    env = env_for(kb, embedder="minilm")
    clean = gristmill("verify", "--sources", env=env)
    assert clean.returncode == 0, clean.stderr
    assert clean.stdout.strip().endswith("no problems found.")

    _damage(kb, "UPDATE items SET chunk_count = chunk_count + 2 "
                "WHERE source LIKE '%heron.txt'")
    for _ in range(2):  # the second run still finds it: verify repaired nothing
        broken = gristmill("verify", env=env)
        assert broken.returncode == 1
        lines = broken.stdout.strip().splitlines()
        assert len(lines) == 2 and lines[0].startswith("error: 1 item of collection default")
        assert "gristmill verify --repair" in lines[0] and "1 problem found" in lines[1]

    as_json = gristmill("verify", "--json", env=env)
    assert as_json.returncode == 1
    data = json.loads(as_json.stdout)
    assert data["ok"] is False and data["checked"]["items"] == 5
    assert [set(f) for f in data["findings"]] == [{"check", "what", "fix"}]
    assert data["findings"][0]["check"] == "chunk_counts"

    repaired = gristmill("verify", "--repair", "--json", env=env)
    assert repaired.returncode == 0, repaired.stdout
    assert json.loads(repaired.stdout)["repaired"] == [
        "queued 1 item with a wrong chunk count to be extracted again"]


@pytest.mark.sqlite_only("PostgreSQL's tsvector is a generated column of each chunk's "
                         "own row: no chunk can be left out of it")
def test_chunk_missing_from_keyword_index_is_found_and_rebuilt(kb: Path) -> None:
    """A chunk the FTS index lost is reported; --repair rebuilds the index and keyword
    search finds the chunk again."""
    _damage(kb, "INSERT INTO chunks_fts (chunks_fts, rowid, text, heading, terms) "
                "SELECT 'delete', c.id, c.text, c.heading, c.terms FROM chunks c "
                "JOIN items i ON i.id = c.item_id WHERE i.source LIKE '%heron.txt'")
    assert _search(kb, "heron") == []
    finding = _one(_verify(kb), "keyword_index")
    assert finding.what.startswith("1 chunk of collection default is missing from the "
                                   "keyword index")
    assert "gristmill verify --repair" in finding.fix

    assert _repair(kb) == ["rebuilt the keyword index"]
    assert _verify(kb).ok
    assert _search(kb, "heron") == ["heron.txt"]


def test_vector_of_wrong_length_is_found_and_embedded_again(kb: Path, tmp_path: Path
                                                            ) -> None:
    """A truncated vector is reported against the model's dimension; repairing and
    ingesting again (the fix given) stores a whole one."""
    cut = "substring(vector from 1 for 100)" if ON_POSTGRES else "substr(vector, 1, 100)"
    _damage(kb, f"UPDATE embeddings SET vector = {cut} WHERE text_hash = (SELECT "
                "c.text_hash FROM chunks c JOIN items i ON i.id = c.item_id "
                "WHERE i.source LIKE '%heron.txt')")
    finding = _one(_verify(kb), "vectors")
    assert finding.what == f"1 vector of model {MODEL_ID} is 25 floats long, not {DIM}"

    _repair(kb)
    _ingest(kb, tmp_path / "docs")
    assert _verify(kb).ok
    size = "octet_length" if ON_POSTGRES else "length"
    assert {row[0] for row in query(kb, f"SELECT {size}(vector) FROM embeddings")} == {
        DIM * 4}


def test_indexed_chunk_without_vector_is_found_and_embedded_again(
        kb: Path, tmp_path: Path) -> None:
    """An indexed item whose chunk lost its vector is reported; --repair sends it back
    to `extracted`, and the ingest the fix names embeds it."""
    _damage(kb, "DELETE FROM embeddings WHERE text_hash = (SELECT c.text_hash FROM chunks c "
                "JOIN items i ON i.id = c.item_id WHERE i.source LIKE '%notes.md')")
    finding = _one(_verify(kb), "vectors")
    assert finding.what.startswith(f"1 chunk of 1 indexed item of collection default has "
                                   f"no {MODEL_ID} vector")
    assert "gristmill ingest" in finding.fix

    assert _repair(kb) == ["queued 1 item for embedding"]
    assert query(kb, "SELECT status FROM items WHERE source LIKE '%notes.md'") == [
        ("extracted",)]
    _ingest(kb, tmp_path / "docs")
    assert _verify(kb).ok
    assert query(kb, "SELECT status FROM items WHERE source LIKE '%notes.md'") == [
        ("indexed",)]


def test_orphans_are_found_and_deleted(kb: Path) -> None:
    """Chunks of a deleted item, and audio events of no recording, are orphans; --repair
    deletes them and keyword search no longer returns the gone item's text."""
    _damage(kb, "DELETE FROM items WHERE source LIKE '%heron.txt'",
            "INSERT INTO audio_events (item_id, model, label, class_index, start_s, end_s, "
            "peak, mean) SELECT id, 'yamnet', 'Laughter', 13, 1.0, 2.0, 0.9, 0.8 "
            "FROM items WHERE source LIKE '%notes.md'", foreign_keys=False)
    result = _verify(kb)
    assert sorted(f.what for f in result.findings) == [
        "1 audio event whose recording is gone", "1 chunk whose item is gone"]
    assert {f.check for f in result.findings} == {"orphans"}

    done = _repair(kb)
    assert "deleted 1 chunk whose item is gone" in done
    assert "deleted 1 audio event whose recording is gone" in done
    assert _verify(kb).ok
    assert _search(kb, "heron") == []


def test_leases_left_behind_are_found_and_returned(kb: Path) -> None:
    """An expired lease and one whose holder on this host is gone are reported; a live
    job's lease is not; --repair puts the left-behind items back to pending."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    now = time.time()
    _damage(kb,
            "UPDATE items SET status = 'processing', lease_owner = 'laptop:41:1.00', "
            f"lease_expires = {now - 60} WHERE source LIKE '%heron.txt'",
            "UPDATE items SET status = 'processing', lease_owner = "
            f"'{socket.gethostname()}:{dead.pid}:1.00', lease_expires = {now + 600} "
            "WHERE source LIKE '%leases.txt'",
            f"UPDATE items SET status = 'processing', lease_owner = '{lease_owner_token()}', "
            f"lease_expires = {now + 600} WHERE source LIKE '%notes.md'")
    result = _verify(kb)
    whys = sorted(f.what for f in result.findings)
    assert {f.check for f in result.findings} == {"leases"} and len(whys) == 2
    assert "under a lease of laptop:41:1.00 that has expired" in whys[0] + whys[1]
    assert f"{dead.pid}:1.00, a process that is gone" in whys[0] + whys[1]
    assert result.checked["leases"] == 3

    assert _repair(kb) == ["returned 2 left-behind leases to pending"]
    assert _verify(kb).ok
    assert sorted(query(kb, "SELECT status FROM items WHERE status IN ('pending', "
                            "'processing')")) == [("pending",), ("pending",), ("processing",)]


def test_missing_source_file_is_found_with_sources(kb: Path, tmp_path: Path) -> None:
    """A deleted file is reported only with --sources, named, with the ingest that
    drops it; running that ingest makes verify pass."""
    (tmp_path / "docs" / "sub" / "leases.txt").unlink()
    assert _verify(kb).ok
    finding = _one(_verify(kb, sources=True), "sources")
    docs = tmp_path / "docs"
    assert finding.what == (f"1 file of collection default is missing from {docs} "
                            f"({docs / 'sub' / 'leases.txt'})")
    assert finding.fix == (f"restore them, or run `gristmill ingest {docs} --collection "
                           "default` so that the catalog drops them")
    _ingest(kb, docs)
    assert _verify(kb, sources=True).ok


def test_chunk_count_disagreeing_is_found_and_extracted_again(kb: Path, tmp_path: Path
                                                              ) -> None:
    """An item whose recorded chunk count differs from its chunks is reported; --repair
    queues it and the next ingest extracts it anew."""
    _damage(kb, "UPDATE items SET chunk_count = 7 WHERE source LIKE '%notes.md'")
    finding = _one(_verify(kb), "chunk_counts")
    assert finding.what == ("1 item of collection default has a different number of "
                            "chunks than the catalog records")
    _repair(kb)
    _ingest(kb, tmp_path / "docs")
    assert _verify(kb).ok
    assert query(kb, "SELECT chunk_count FROM items WHERE source LIKE '%notes.md'") == [(1,)]


@pytest.mark.sqlite_only("builds a catalog of an older schema step by step; PostgreSQL's "
                         "catalog is upgraded by the same open_database")
def test_an_older_schema_is_reported_and_upgraded_by_repair(tmp_path: Path) -> None:
    """A catalog a previous gristmill wrote: one finding (nothing else is read from
    columns it lacks); `--repair` upgrades it and it then passes."""
    import sqlite3

    from gristmill.catalog.migrations.sqlite import MIGRATIONS

    home = tmp_path / "home"
    home.mkdir()
    conn = sqlite3.connect(home / "gristmill.db", isolation_level=None)
    for version, step in enumerate(MIGRATIONS[:-1], start=1):
        conn.execute("BEGIN")
        step(conn)
        conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    conn.close()
    env = env_for(home)
    old = gristmill("verify", "--json", env=env)
    assert old.returncode == 1
    [finding] = json.loads(old.stdout)["findings"]
    assert finding["check"] == "schema" and "gristmill verify --repair" in finding["fix"]
    upgraded = gristmill("verify", "--repair", env=env)
    assert upgraded.returncode == 0, upgraded.stdout
    assert gristmill("verify", env=env).returncode == 0


def test_archive_is_checked_against_its_manifest(kb: Path, tmp_path: Path) -> None:
    """`verify ARCHIVE` passes a fresh export and refuses it, in one line, once one
    byte of it is flipped."""
    env = env_for(kb, embedder="minilm")
    archive = tmp_path / "kb.gristmill"
    exported = gristmill("export", str(archive), env=env)
    assert exported.returncode == 0, exported.stderr
    sound = gristmill("verify", str(archive), "--json", env=env)
    assert sound.returncode == 0, sound.stdout
    assert json.loads(sound.stdout)["ok"] is True

    data = bytearray(archive.read_bytes())
    data[512 + 20] ^= 0xFF  # inside the first member, just past its tar header
    archive.write_bytes(bytes(data))
    damaged = gristmill("verify", str(archive), env=env)
    assert damaged.returncode == 1
    errors = [line for line in damaged.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, damaged.stdout


def test_archive_damage_is_one_line_and_repair_is_refused(tmp_path: Path) -> None:
    """`verify ARCHIVE` on a file that is no archive: exit 1, one error line; --repair
    is refused for an archive (exit 2)."""
    junk = tmp_path / "kb.gristmill"
    junk.write_bytes(b"not a tar at all" * 100)
    env = env_for(tmp_path / "home")
    done = gristmill("verify", str(junk), env=env)
    assert done.returncode == 1
    errors = [line for line in done.stdout.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(junk) in errors[0]
    refused = gristmill("verify", str(junk), "--repair", env=env)
    assert refused.returncode == 2 and "import the archive" in refused.stderr
