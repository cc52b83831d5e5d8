"""The PostgreSQL index: tsvector keyword search, vectors by pgvector's HNSW index or by
an exact client-side scan, idempotent writes, hits with provenance.

Two real servers: the system PostgreSQL (``GRISTMILL_TEST_POSTGRES``, default
127.0.0.1:5432, no pgvector) for the client-side scan, and a PostgreSQL 16 with pgvector
started by the ``pgserver`` package (a dev dependency) for the HNSW path. Each test gets
a database of its own, dropped afterwards.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import urllib.parse
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psycopg
import pytest

from gristmill.catalog.postgres import PostgresDatabase
from gristmill.index import StoredChunk, make_index
from gristmill.index.base import Scope
from gristmill.index.postgres import NO_PGVECTOR, PostgresIndex, vector_search_check

MODEL = "test-model"
SYSTEM_ADMIN = os.environ.get("GRISTMILL_TEST_POSTGRES",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


# -- servers and databases -----------------------------------------------------------


def _with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def system_admin() -> str:
    try:
        with psycopg.connect(SYSTEM_ADMIN, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL at {SYSTEM_ADMIN} is not reachable ({exc}); start it "
                    "(.ci/run does) or set GRISTMILL_TEST_POSTGRES")
    return SYSTEM_ADMIN


@pytest.fixture(scope="session")
def pgvector_admin() -> Iterator[str]:
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI containers).
            warnings.simplefilter("ignore")
            import pgserver
    except ImportError:
        pytest.skip("pgserver is not installed (pip install -e '.[dev]'): it provides the "
                    "PostgreSQL with pgvector these tests need")
    # Not under pytest's basetemp: a concurrent pytest session may prune that.
    data = Path(tempfile.mkdtemp(prefix="gristmill-pgserver-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        server = pgserver.get_server(data, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(data, ignore_errors=True)


def _fresh_database(admin: str) -> Iterator[str]:
    name = f"gm_index_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(admin, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def system_url(system_admin: str) -> Iterator[str]:
    yield from _fresh_database(system_admin)


@pytest.fixture
def pgvector_url(pgvector_admin: str) -> Iterator[str]:
    yield from _fresh_database(pgvector_admin)


@pytest.fixture(params=["client-scan", "pgvector"])
def url(request: pytest.FixtureRequest) -> str:
    """A fresh database on the server that gives the engine named by the param."""
    fixture = "system_url" if request.param == "client-scan" else "pgvector_url"
    return str(request.getfixturevalue(fixture))


@pytest.fixture
def db(url: str) -> Iterator[PostgresDatabase]:
    database = PostgresDatabase(url)
    yield database
    database.close()


@pytest.fixture
def index(db: PostgresDatabase) -> PostgresIndex:
    made = make_index(db)
    assert isinstance(made, PostgresIndex)
    return made


# -- helpers -------------------------------------------------------------------------


def add_item(db: PostgresDatabase, source: str, collection: str = "docs") -> int:
    now = time.time()
    with db.transaction() as txn:
        row = txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
            "VALUES (?, ?, '/r', 'extracted', ?, ?) RETURNING id",
            (collection, source, now, now)).fetchone()
    assert row is not None
    return int(row[0])


def put_chunks(db: PostgresDatabase, item_id: int, texts: list[str],
               collection: str = "docs", heading: str | None = None) -> None:
    with db.transaction() as txn:
        PostgresIndex.replace_chunks(txn, item_id, collection, [
            StoredChunk(seq, text, f"hash-{text}", seq + 1, heading)
            for seq, text in enumerate(texts)])


def chunk_rows(db: PostgresDatabase, item_id: int) -> list[tuple[object, ...]]:
    return db.conn.execute(
        "SELECT seq, text, text_hash, page, heading, collection FROM chunks "
        "WHERE item_id = ? ORDER BY seq", (item_id,)).fetchall()


def sources(index: PostgresIndex, query: str, collection: str | None = None,
            limit: int = 10) -> list[str]:
    return [h.source for h in index.hits(index.keyword(query, collection, limit))]


# Real prose, a paragraph per chunk (from the Wikipedia articles on each subject).
HERON = ("The grey heron is a long-legged wading bird of the heron family, native "
         "throughout temperate Europe and Asia. It feeds mostly on fish, which it catches "
         "by standing motionless in shallow water and striking with its bill.")
MILL = ("A gristmill grinds cereal grain into flour and middlings. The term can refer to "
        "either the grinding mechanism or the building that holds it. Water mills turned "
        "the millstones with a water wheel fed by a mill race.")
KINGFISHER = ("Kingfishers are small to medium-sized, brightly coloured birds. They hunt "
              "fish by diving into water from a perch, and most species nest in burrows "
              "dug into river banks.")
GRANARY = ("A granary is a storehouse for threshed grain or animal feed. Ancient granaries "
           "were built of pottery, and raised floors kept the grain away from damp and "
           "from mice.")


# -- keyword search --------------------------------------------------------------------


def test_a_chunk_with_every_word_ranks_above_one_with_some(
        index: PostgresIndex, db: PostgresDatabase) -> None:
    """Chunks holding all the query's words come first, then those holding some."""
    put_chunks(db, add_item(db, "/r/heron.txt"), [HERON])
    put_chunks(db, add_item(db, "/r/mill.txt"), [MILL])
    put_chunks(db, add_item(db, "/r/kingfisher.txt"), [KINGFISHER])
    put_chunks(db, add_item(db, "/r/granary.txt"), [GRANARY])
    # "fish" and "water" are both in the heron's and the kingfisher's paragraphs; the
    # mill's has "water" alone, the granary's neither.
    found = sources(index, "fish water")
    assert set(found[:2]) == {"/r/heron.txt", "/r/kingfisher.txt"}
    assert found[2:] == ["/r/mill.txt"]
    assert sources(index, "fish standing") == ["/r/heron.txt", "/r/kingfisher.txt"]


def test_some_words_only_fill_the_list_when_every_word_finds_too_few(
        index: PostgresIndex, db: PostgresDatabase) -> None:
    """AND first: chunks with only some words are added below ``limit`` alone, and never
    scored above a chunk with every word."""
    put_chunks(db, add_item(db, "/r/all.txt"), [HERON, KINGFISHER, MILL, GRANARY])
    every = index.keyword("fish water", None, 2)
    assert {h.text for h in index.hits(every)} == {HERON, KINGFISHER}
    filled = index.keyword("fish water", None, 10)
    assert filled[:2] == every
    assert [h.text for h in index.hits(filled[2:])] == [MILL]
    assert filled[2][1] <= filled[1][1]
    # No chunk holds both words: all four hold one, in score order.
    some = index.keyword("fish grain", None, 10)
    assert {h.text for h in index.hits(some)} == {HERON, KINGFISHER, MILL, GRANARY}
    scores = [s for _, s in some]
    assert scores == sorted(scores, reverse=True)


def test_stemming_finds_other_forms_of_a_word(index: PostgresIndex,
                                              db: PostgresDatabase) -> None:
    """`english` stems as SQLite's porter tokenizer does: "herons" finds "heron",
    "Grinding MILLS" finds "grinds ... mills"."""
    put_chunks(db, add_item(db, "/r/heron.txt"), [HERON])
    assert sources(index, "herons") == ["/r/heron.txt"]
    put_chunks(db, add_item(db, "/r/mill.txt"), [MILL])
    assert sources(index, "Grinding MILLS") == ["/r/mill.txt"]


def test_headings_are_searchable(index: PostgresIndex, db: PostgresDatabase) -> None:
    """A word only in the chunk's heading finds the chunk."""
    put_chunks(db, add_item(db, "/r/book.txt"), [GRANARY], heading="Chapter Seven: Storage")
    assert sources(index, "storage") == ["/r/book.txt"]


HOSTILE = [
    "", " ", '"', "'", "''", "a'b", "\\", "\\'", "&", "|", "!", "!!", "(", ")", "()", ":*",
    "corn:*", "fish & | water", "!fish", "fish <-> water", "fish <2> water", "a:A", "a:*B",
    "(((fish", "fish)))", "'fish' & 'water'", "fish' | 'x", "'; DROP TABLE chunks; --",
    "\x00", "fish\x00water", "ünïcödé 東京 Ωμέγα", "emoji 🌽🌾", "%s %(x)s ?", ":name",
    "$1", "a" * 5000, "x " * 1000, "the and or not", "NEAR(a b, 2)", "heading:fish",
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(system_url: str, query: str) -> None:
    """Any string a user types into search returns results or nothing, never an error."""
    db = PostgresDatabase(system_url)
    try:
        index = PostgresIndex(db)
        put_chunks(db, add_item(db, "/r/heron.txt"), [HERON])
        results = index.keyword(query, None, 10)
        assert isinstance(results, list)
        if query.startswith("fish"):
            assert results, "the words of an operator-laden query are still searched"
    finally:
        db.close()


def test_stop_words_alone_find_nothing(index: PostgresIndex, db: PostgresDatabase) -> None:
    """`english` drops stop words: a query of only "the and" matches nothing (and says
    nothing worse than that)."""
    put_chunks(db, add_item(db, "/r/heron.txt"), [HERON])
    assert index.keyword("the and", None, 10) == []
    assert sources(index, "the heron") == ["/r/heron.txt"]


def test_keyword_filters_by_collection(index: PostgresIndex, db: PostgresDatabase) -> None:
    """A collection filter keeps other collections' chunks out, however well they rank."""
    put_chunks(db, add_item(db, "/r/a.txt", "birds"), [HERON], collection="birds")
    put_chunks(db, add_item(db, "/r/b.txt", "mills"), [MILL], collection="mills")
    assert sources(index, "water", "birds") == ["/r/a.txt"]
    assert sources(index, "water", "mills") == ["/r/b.txt"]
    assert sources(index, "water", "nothing") == []


def test_keyword_respects_limit(index: PostgresIndex, db: PostgresDatabase) -> None:
    """No more than ``limit`` hits, best first."""
    put_chunks(db, add_item(db, "/r/a.txt"), [f"{HERON} {i}" for i in range(20)])
    assert len(index.keyword("heron", None, 7)) == 7


# -- writing ---------------------------------------------------------------------------


@pytest.mark.parametrize("count", [3, 200])  # one pipelined INSERT; COPY
def test_replace_chunks_is_idempotent(index: PostgresIndex, db: PostgresDatabase,
                                      count: int) -> None:
    """Writing an item's chunks twice leaves one copy, searchable, in order."""
    item = add_item(db, "/r/a.txt")
    texts = [f"paragraph {i}: {HERON}" for i in range(count)]
    put_chunks(db, item, texts)
    put_chunks(db, item, texts)
    rows = chunk_rows(db, item)
    assert [r[1] for r in rows] == texts
    assert [r[3] for r in rows] == list(range(1, count + 1))
    assert index.chunk_count() == count
    assert len(index.keyword("heron", None, 1000)) == count


def test_replace_chunks_drops_old_chunks_and_their_words(
        index: PostgresIndex, db: PostgresDatabase) -> None:
    """A re-extracted item's old text leaves the full-text index with its chunks."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, [HERON, KINGFISHER])
    put_chunks(db, item, [MILL])
    assert [r[1] for r in chunk_rows(db, item)] == [MILL]
    assert index.keyword("heron", None, 10) == []
    assert sources(index, "millstones") == ["/r/a.txt"]


def test_replace_chunks_touches_only_its_item(index: PostgresIndex,
                                              db: PostgresDatabase) -> None:
    """Another item's chunks survive."""
    first, second = add_item(db, "/r/a.txt"), add_item(db, "/r/b.txt")
    put_chunks(db, first, [HERON])
    put_chunks(db, second, [MILL])
    put_chunks(db, first, [])
    assert chunk_rows(db, first) == []
    assert sources(index, "millstones") == ["/r/b.txt"]


def test_code_chunks_are_found_by_their_split_identifiers_with_their_metadata(
        index: PostgresIndex, db: PostgresDatabase) -> None:
    """As on SQLite: `terms` is searched with the text (the generated tsvector), and hits
    carry the entity, its kind, language and line range; a COPY-sized batch keeps them."""
    item = add_item(db, "/r/Billing.java")
    chunks = [StoredChunk(0, "void applyDiscount(Invoice invoice) {}", "h0", None, None,
                          language="java", kind="method", entity="Billing.applyDiscount(Invoice)",
                          parent="Billing", lines=(3, 3), terms="apply discount")]
    chunks += [StoredChunk(i, f"int field{i};", f"h{i}", None, None, language="java",
                           kind="field", entity=f"Billing.field{i}", lines=(i + 3, i + 3))
               for i in range(1, 300)]
    with db.transaction() as txn:
        PostgresIndex.replace_chunks(txn, item, "docs", chunks)
    [hit] = index.hits(index.keyword("apply discount", None, 10))
    assert (hit.entity, hit.kind, hit.language, hit.lines) == (
        "Billing.applyDiscount(Invoice)", "method", "java", (3, 3))
    assert db.conn.execute("SELECT count(*) FROM chunks WHERE kind = 'field' AND "
                           "line_start = seq + 3").fetchone()[0] == 299


def test_code_filters_narrow_keyword_and_vector_rankings(
        index: PostgresIndex, db: PostgresDatabase) -> None:
    """--language, --kind and --path (a glob, read as SQLite's GLOB reads it) in SQL."""
    items = {}
    for source, language, kind in [("/r/src/main/Invoice.java", "java", "method"),
                                   ("/r/src/test/InvoiceTest.java", "java", "class"),
                                   ("/r/tools/invoice.py", "python", "function")]:
        item = items[source] = add_item(db, source)
        with db.transaction() as txn:
            PostgresIndex.replace_chunks(txn, item, "docs", [StoredChunk(
                0, f"invoice {kind}", f"h-{item}", None, None, language=language,
                kind=kind, entity=f"e{item}", lines=(1, 2))])
            index.store_vectors(txn, "m", [f"h-{item}"], np.array([[1.0, 0.0]]))

    def found(ranked: list[tuple[int, float]]) -> set[str]:
        return {hit.source for hit in index.hits(ranked)}

    java = {"/r/src/main/Invoice.java", "/r/src/test/InvoiceTest.java"}
    assert found(index.keyword("invoice", Scope(language="java"), 10)) == java
    assert found(index.vector(np.array([1.0, 0.0]), "m", Scope(language="java"), 10)) == java
    assert found(index.keyword("invoice", Scope(path="src/*Test.java"), 10)) == \
        {"/r/src/test/InvoiceTest.java"}
    assert found(index.vector(np.array([1.0, 0.0]), "m", Scope(kind="function"), 10)) == \
        {"/r/tools/invoice.py"}


def test_copy_chunks_gives_a_twin_the_same_chunks(index: PostgresIndex,
                                                  db: PostgresDatabase) -> None:
    """A duplicate file gets a copy of its twin's chunks in its own collection, twice or
    once alike."""
    original, twin = add_item(db, "/r/a.txt"), add_item(db, "/r/b.txt", "other")
    put_chunks(db, original, [HERON, MILL])
    for _ in range(2):
        with db.transaction() as txn:
            assert PostgresIndex.copy_chunks(txn, original, twin, "other") == 2
    assert [r[:5] for r in chunk_rows(db, twin)] == [r[:5] for r in chunk_rows(db, original)]
    assert {r[5] for r in chunk_rows(db, twin)} == {"other"}
    assert sources(index, "millstones", "other") == ["/r/b.txt"]


def test_nul_characters_are_dropped_not_fatal(index: PostgresIndex,
                                              db: PostgresDatabase) -> None:
    """PostgreSQL text cannot hold NUL: it is removed, the rest is stored."""
    item = add_item(db, "/r/a.bin")
    with db.transaction() as txn:
        PostgresIndex.replace_chunks(txn, item, "docs", [
            StoredChunk(0, "heron\x00 water", "h", None, "a\x00b")])
    assert chunk_rows(db, item)[0][1:5] == ("heron water", "h", None, "ab")


def test_store_vectors_first_writer_wins(index: PostgresIndex, db: PostgresDatabase) -> None:
    """A text's vector is written once; a later different vector does not replace it, in
    the cache or in the vector index."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, ["h"])
    with db.transaction() as txn:
        index.store_vectors(txn, MODEL, ["hash-h"], np.array([[1.0, 0.0]]))
    with db.transaction() as txn:
        index.store_vectors(txn, MODEL, ["hash-h"], np.array([[0.0, 1.0]]))
    stored = db.conn.execute("SELECT vector FROM embeddings").fetchall()
    assert [np.frombuffer(v, np.float32).tolist() for (v,) in stored] == [[1.0, 0.0]]
    assert index.vector_counts() == {MODEL: 1}
    assert index.vector(np.array([1.0, 0.0]), MODEL, None, 5) == [
        (chunk_rows_ids(db, item)[0], pytest.approx(1.0))]


def chunk_rows_ids(db: PostgresDatabase, item_id: int) -> list[int]:
    return [int(i) for (i,) in db.conn.execute(
        "SELECT id FROM chunks WHERE item_id = ? ORDER BY seq", (item_id,)).fetchall()]


def test_pending_chunks_lists_chunks_without_vectors(index: PostgresIndex,
                                                     db: PostgresDatabase) -> None:
    """The backlog: chunks of extracted items whose text has no vector, after a cursor."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, ["has vector", "needs one", "needs another"])
    with db.transaction() as txn:
        index.store_vectors(txn, MODEL, ["hash-has vector"], np.ones((1, 2)))
    pending = index.pending_chunks(MODEL, 0, 10)
    assert [p.text for p in pending] == ["needs one", "needs another"]
    assert [p.text for p in index.pending_chunks(MODEL, pending[0].chunk_id, 10)] == [
        "needs another"]
    assert index.pending_chunks("other-model", 0, 1)[0].text == "has vector"


# -- hits ------------------------------------------------------------------------------


def test_hits_keep_order_and_provenance(index: PostgresIndex, db: PostgresDatabase) -> None:
    """Hits come back in the given order with source, page, heading, collection, item."""
    a, b = add_item(db, "/r/a.txt"), add_item(db, "/r/b.txt", "mills")
    put_chunks(db, a, [HERON], heading="Birds")
    put_chunks(db, b, [MILL, GRANARY], collection="mills")
    ids_a, ids_b = chunk_rows_ids(db, a), chunk_rows_ids(db, b)
    order = [(ids_b[1], 3.0), (ids_a[0], 2.0), (999_999, 1.5), (ids_b[0], 1.0)]
    hits = index.hits(order)
    assert [(h.chunk_id, h.score) for h in hits] == [order[0], order[1], order[3]]
    assert (hits[0].source, hits[0].text, hits[0].page, hits[0].collection,
            hits[0].item_id) == ("/r/b.txt", GRANARY, 2, "mills", b)
    assert (hits[1].heading, hits[1].page) == ("Birds", 1)
    assert index.hits([]) == []


# -- vectors ---------------------------------------------------------------------------


def random_unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def put_vectors(db: PostgresDatabase, index: PostgresIndex, vectors: np.ndarray,
                collections: list[str]) -> list[int]:
    """One chunk per vector (its own text and item per collection); chunk ids in order."""
    items = {c: add_item(db, f"/r/{c}.txt", c) for c in dict.fromkeys(collections)}
    texts = [f"text {i}" for i in range(len(vectors))]
    with db.transaction() as txn:
        for name, item in items.items():
            PostgresIndex.replace_chunks(txn, item, name, [
                StoredChunk(i, texts[i], f"hash-{i}", None, None)
                for i, c in enumerate(collections) if c == name])
        index.store_vectors(txn, MODEL, [f"hash-{i}" for i in range(len(vectors))], vectors)
    by_hash = dict(db.conn.execute("SELECT text_hash, id FROM chunks").fetchall())
    return [int(by_hash[f"hash-{i}"]) for i in range(len(vectors))]


def exact_top(vectors: np.ndarray, ids: list[int], q: np.ndarray, k: int,
              keep: np.ndarray | None = None) -> list[int]:
    scores = vectors @ q
    order = np.argsort(-scores, kind="stable")
    chosen = [ids[i] for i in order if keep is None or keep[i]]
    return chosen[:k]


def test_client_scan_equals_an_exact_numpy_ranking(system_url: str) -> None:
    """Without pgvector, vector search is exact: the same order and cosine scores as
    NumPy, over 400 random unit vectors, with and without a collection filter."""
    db = PostgresDatabase(system_url)
    try:
        index = PostgresIndex(db)
        assert index.vector_engine == "client-scan"
        vectors = random_unit_vectors(400, 48, seed=1)
        collections = ["even" if i % 2 == 0 else "odd" for i in range(400)]
        ids = put_vectors(db, index, vectors, collections)
        for q in random_unit_vectors(10, 48, seed=2):
            got = index.vector(q, MODEL, None, 10)
            assert [cid for cid, _ in got] == exact_top(vectors, ids, q, 10)
            by_id = dict(zip(ids, vectors @ q, strict=True))
            assert [s for _, s in got] == pytest.approx([by_id[c] for c, _ in got], abs=1e-6)
            keep = np.array([c == "odd" for c in collections])
            odd = index.vector(q, MODEL, "odd", 10)
            assert [cid for cid, _ in odd] == exact_top(vectors, ids, q, 10, keep)
    finally:
        db.close()


def test_client_scan_reads_in_blocks(system_url: str, monkeypatch: pytest.MonkeyPatch
                                     ) -> None:
    """Blocks smaller than the index give the same answer (the top k is kept across
    blocks)."""
    import gristmill.index.postgres as module

    monkeypatch.setattr(module, "_SCAN_BLOCK", 7)
    db = PostgresDatabase(system_url)
    try:
        index = PostgresIndex(db)
        vectors = random_unit_vectors(100, 8, seed=3)
        ids = put_vectors(db, index, vectors, ["docs"] * 100)
        q = random_unit_vectors(1, 8, seed=4)[0]
        assert [c for c, _ in index.vector(q, MODEL, None, 5)] == exact_top(vectors, ids, q, 5)
    finally:
        db.close()


def test_pgvector_hnsw_recall_against_exact(pgvector_url: str) -> None:
    """With pgvector, the HNSW index finds at least 9 of the exact 10 nearest on
    average, over 500 random unit vectors, and scores are cosine similarities."""
    db = PostgresDatabase(pgvector_url)
    try:
        index = PostgresIndex(db)
        assert index.vector_engine == "pgvector"
        vectors = random_unit_vectors(500, 64, seed=5)
        ids = put_vectors(db, index, vectors, ["docs"] * 500)
        recalls = []
        for q in random_unit_vectors(20, 64, seed=6):
            got = index.vector(q, MODEL, None, 10)
            truth = exact_top(vectors, ids, q, 10)
            recalls.append(len({c for c, _ in got} & set(truth)) / 10)
            by_id = dict(zip(ids, vectors @ q, strict=True))
            assert [s for _, s in got] == pytest.approx([by_id[c] for c, _ in got], abs=1e-5)
            assert [s for _, s in got] == sorted((s for _, s in got), reverse=True)
        assert np.mean(recalls) >= 0.9
    finally:
        db.close()  # its sessions end, and report their statistics
    assert hnsw_scans(pgvector_url) > 0, "the searches did not use the HNSW index"


def hnsw_scans(url: str) -> int:
    # The closed sessions report their statistics on their way out: wait for them.
    deadline = time.monotonic() + 60
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute("SELECT coalesce(sum(idx_scan), 0) FROM pg_stat_user_indexes "
                               "WHERE indexrelname LIKE 'embedding_vectors_hnsw_%'").fetchone()
            if row and row[0]:
                return int(row[0])
            time.sleep(0.1)
            conn.execute("SELECT pg_stat_clear_snapshot()")
    return 0


def test_pgvector_collection_filter_loses_no_results(pgvector_url: str) -> None:
    """A collection holding 2 % of the vectors still gets its full, exact top 10: the
    index's candidates run out after the filter and an exact scan answers."""
    db = PostgresDatabase(pgvector_url)
    try:
        index = PostgresIndex(db)
        vectors = random_unit_vectors(600, 32, seed=7)
        collections = ["rare" if i % 50 == 0 else "common" for i in range(600)]
        ids = put_vectors(db, index, vectors, collections)
        keep = np.array([c == "rare" for c in collections])
        for q in random_unit_vectors(5, 32, seed=8):
            got = index.vector(q, MODEL, "rare", 10)
            assert [c for c, _ in got] == exact_top(vectors, ids, q, 10, keep)
    finally:
        db.close()


def test_pgvector_finds_a_collection_none_of_whose_vectors_are_near(
        pgvector_url: str) -> None:
    """A collection whose vectors all point away from the query is outside every HNSW
    candidate: its chunks are still returned, exactly ranked."""
    db = PostgresDatabase(pgvector_url)
    try:
        index = PostgresIndex(db)
        q = random_unit_vectors(1, 32, seed=12)[0]
        near = random_unit_vectors(400, 32, seed=13) + 2 * q
        far = random_unit_vectors(5, 32, seed=14) - 3 * q
        vectors = np.vstack([near, far])
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        collections = ["near"] * 400 + ["far"] * 5
        ids = put_vectors(db, index, vectors, collections)
        keep = np.array([c == "far" for c in collections])
        got = index.vector(q, MODEL, "far", 10)
        assert [c for c, _ in got] == exact_top(vectors, ids, q, 10, keep)
        assert len(got) == 5 and all(s < 0 for _, s in got)
    finally:
        db.close()


def test_vectors_of_deleted_chunks_do_not_crowd_out_results(pgvector_url: str) -> None:
    """The cache keeps vectors after their chunks go; search still returns ``limit``
    live chunks."""
    db = PostgresDatabase(pgvector_url)
    try:
        index = PostgresIndex(db)
        vectors = random_unit_vectors(300, 16, seed=9)
        put_vectors(db, index, vectors, ["gone"] * 250 + ["kept"] * 50)
        db.conn.execute("DELETE FROM items WHERE collection = 'gone'")
        q = random_unit_vectors(1, 16, seed=10)[0]
        assert len(index.vector(q, MODEL, None, 10)) == 10
    finally:
        db.close()


def test_vector_filters_by_model(index: PostgresIndex, db: PostgresDatabase) -> None:
    """Another model's vectors are never compared with the query."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, ["one", "two"])
    with db.transaction() as txn:
        index.store_vectors(txn, MODEL, ["hash-one"], np.array([[1.0, 0.0]]))
        index.store_vectors(txn, "other", ["hash-two"], np.array([[1.0, 0.0, 0.0]]))
    assert len(index.vector(np.array([1.0, 0.0]), MODEL, None, 10)) == 1
    assert len(index.vector(np.array([1.0, 0.0, 0.0]), "other", None, 10)) == 1
    assert index.vector(np.array([1.0, 0.0]), "absent", None, 10) == []


# -- which engine ----------------------------------------------------------------------


def test_without_pgvector_the_scan_is_announced_once(
        system_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """A server without the extension gets the client scan and one plain warning."""
    import gristmill.index.postgres as module

    module._said.discard(NO_PGVECTOR)
    db = PostgresDatabase(system_url)
    try:
        with caplog.at_level(logging.WARNING, logger="gristmill.index.postgres"):
            first, second = PostgresIndex(db), PostgresIndex(db)
        assert first.vector_engine == second.vector_engine == "client-scan"
        assert first.vector_engine_note == NO_PGVECTOR
        assert [r.getMessage() for r in caplog.records].count(NO_PGVECTOR) == 1
    finally:
        db.close()


def test_a_role_that_may_not_create_the_extension_falls_back(pgvector_admin: str) -> None:
    """pgvector available but CREATE EXTENSION refused: client scan, and the note says
    who must do what. Once a superuser has created it, the next index sets pgvector up,
    and vectors the first one stores from then on reach the HNSW index too."""
    role, name = f"gm_{uuid.uuid4().hex[:8]}", f"gm_owned_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(pgvector_admin, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN NOSUPERUSER')
        admin.execute(f'CREATE DATABASE "{name}" OWNER "{role}"')
    as_admin = _with_database(pgvector_admin, name)
    parts = urllib.parse.urlsplit(as_admin)
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"{role}@"))
    try:
        db = PostgresDatabase(url)
        try:
            early = PostgresIndex(db)
            assert early.vector_engine == "client-scan"
            assert "CREATE EXTENSION vector" in (early.vector_engine_note or "")
            item = add_item(db, "/r/a.txt")
            put_chunks(db, item, ["one", "two"])
            with db.transaction() as txn:
                early.store_vectors(txn, MODEL, ["hash-one"], np.array([[1.0, 0.0]]))
            with psycopg.connect(as_admin, autocommit=True) as admin:
                admin.execute("CREATE EXTENSION vector")
            late = PostgresIndex(db)
            assert late.vector_engine == "pgvector"
            with db.transaction() as txn:
                early.store_vectors(txn, MODEL, ["hash-two"], np.array([[0.0, 1.0]]))
            stored = db.conn.execute(
                "SELECT text_hash FROM embedding_vectors ORDER BY 1").fetchall()
            assert stored == [("hash-one",), ("hash-two",)]
            ids = chunk_rows_ids(db, item)
            assert [c for c, _ in late.vector(np.array([0.0, 1.0]), MODEL, None, 2)] == [
                ids[1], ids[0]]
        finally:
            db.close()
    finally:
        with psycopg.connect(pgvector_admin, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE "{role}"')


def test_vectors_cached_before_pgvector_are_indexed_on_open(pgvector_url: str) -> None:
    """Vectors already in the cache (written without pgvector) are copied into the
    vector table and indexed when an index is next opened."""
    db = PostgresDatabase(pgvector_url)
    try:
        vectors = random_unit_vectors(50, 16, seed=11)
        item = add_item(db, "/r/a.txt")
        with db.transaction() as txn:
            PostgresIndex.replace_chunks(txn, item, "docs", [
                StoredChunk(i, f"t{i}", f"hash-{i}", None, None) for i in range(50)])
            txn.executemany("INSERT INTO embeddings (model, text_hash, vector) VALUES (?, ?, ?)",
                            [(MODEL, f"hash-{i}", v.tobytes()) for i, v in enumerate(vectors)])
        index = PostgresIndex(db)
        assert db.conn.execute("SELECT count(*) FROM embedding_vectors").fetchone()[0] == 50
        ids = chunk_rows_ids(db, item)
        q = vectors[17]
        assert index.vector(q, MODEL, None, 1)[0][0] == ids[17]
    finally:
        db.close()


def test_a_read_only_index_waits_for_a_writer_to_set_pgvector_up(pgvector_url: str) -> None:
    """A searcher (read-only) opened before any writer scans; after one, uses HNSW."""
    writer = PostgresDatabase(pgvector_url)
    reader = PostgresDatabase(pgvector_url, readonly=True)
    try:
        before = PostgresIndex(reader)
        assert before.vector_engine == "client-scan"
        assert "not set up in this database yet" in (before.vector_engine_note or "")
        PostgresIndex(writer)
        assert PostgresIndex(reader).vector_engine == "pgvector"
    finally:
        reader.close()
        writer.close()


def test_vector_search_check_tells_doctor_how_vectors_are_searched(
        system_url: str, pgvector_url: str) -> None:
    """Without pgvector: a warning naming the client scan; with it: ok, before and after
    the first writer sets it up."""
    db = PostgresDatabase(system_url)
    try:
        assert vector_search_check(db) == ("warning", NO_PGVECTOR)
    finally:
        db.close()
    db = PostgresDatabase(pgvector_url)
    try:
        level, detail = vector_search_check(db)
        assert level == "ok" and "the next ingest creates the extension" in detail
        PostgresIndex(db)
        level, detail = vector_search_check(db)
        assert level == "ok" and detail.startswith("pgvector 0.") and "HNSW" in detail
    finally:
        db.close()


def test_make_index_picks_sqlite_for_the_sqlite_file(tmp_path: Path) -> None:
    """The SQLite file keeps the SQLite index."""
    from gristmill.catalog import SqliteDatabase
    from gristmill.index import SqliteIndex

    db = SqliteDatabase(tmp_path / "gristmill.db")
    try:
        assert isinstance(make_index(db), SqliteIndex)
    finally:
        db.close()


# -- end to end --------------------------------------------------------------------------


FILES = {
    "heron.txt": HERON + "\n\nHerons nest in colonies called heronries, high in trees "
                 "near lakes and estuaries.",
    "mill.txt": MILL + "\n\nA miller dressed the stones with a mill bill to keep their "
                "grooves sharp.",
    "granary.txt": GRANARY,
    "volcano.txt": ("A volcano is a rupture in the crust of a planet through which lava, "
                    "ash and gases escape from a magma chamber below the surface. Eruptions "
                    "can bury towns under pyroclastic flows."),
}


@pytest.mark.slow
def test_ingest_and_hybrid_search_on_postgresql(url: str, tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """A folder of text files ingested with the MiniLM embedder into PostgreSQL: each
    search mode finds the right file, vectors are indexed by the engine the server
    allows, and a read-only searcher answers the same."""
    from gristmill.knowledge_base import KnowledgeBase

    src = tmp_path / "src"
    src.mkdir()
    for name, text in FILES.items():
        (src / name).write_text(text, encoding="utf-8")
    engine = request.node.callspec.params["url"]
    with KnowledgeBase.open(tmp_path / "home", database_url=url, embedder="minilm",
                            workers=2) as kb:
        assert isinstance(kb.index, PostgresIndex)
        assert kb.index.vector_engine == engine
        report = kb.ingest([src])
        assert report.items["indexed"] == len(FILES) and report.failed == 0
        assert kb.status()["vectors"] == kb.status()["chunks"] == len(FILES)

        def first(query: str, mode: str) -> str:
            return Path(kb.search(query, k=3, mode=mode)[0].source).name  # type: ignore[arg-type]

        assert first("where do herons nest", "hybrid") == "heron.txt"
        assert first("millstones", "keyword") == "mill.txt"
        # No word in common with the file: only the vectors can find it.
        assert first("a mountain that erupts with molten rock", "vector") == "volcano.txt"
        assert first("storing harvested wheat safe from rodents", "hybrid") == "granary.txt"
        if engine == "pgvector":
            stored = kb.db.conn.execute("SELECT count(*) FROM embedding_vectors").fetchone()
            assert stored is not None and stored[0] == len(FILES)
        searcher = kb.searcher()
        try:
            hits = searcher.search("a mountain that erupts with molten rock", k=2)
            assert Path(hits[0].source).name == "volcano.txt"
        finally:
            searcher.close()
