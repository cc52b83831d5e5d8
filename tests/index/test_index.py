"""The embedded index: safe keyword search, idempotent writes, exact vector search, fusion."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import gristmill.index.sqlite as index_module
from gristmill.catalog import SqliteDatabase
from gristmill.index import SqliteIndex, StoredChunk, fts_query, reciprocal_rank_fusion
from gristmill.index.base import Scope, glob_regex

MODEL = "test-model"

# The PostgreSQL index has tests of its own (test_postgres_index.py).
pytestmark = pytest.mark.sqlite_only("tests the SQLite index (FTS5) itself")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[SqliteDatabase]:
    database = SqliteDatabase(tmp_path / "gristmill.db")
    yield database
    database.close()


@pytest.fixture
def index(db: SqliteDatabase) -> SqliteIndex:
    return SqliteIndex(db)


def add_item(db: SqliteDatabase, source: str, collection: str = "docs") -> int:
    now = time.time()
    with db.transaction() as txn:
        cursor = txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at) "
            "VALUES (?, ?, '/r', 'extracted', ?, ?)", (collection, source, now, now))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def put_chunks(db: SqliteDatabase, item_id: int, texts: list[str],
               collection: str = "docs") -> None:
    index = SqliteIndex(db)
    with db.transaction() as txn:
        index.replace_chunks(txn, item_id, collection, [
            StoredChunk(seq, text, f"hash-{text}", seq + 1, None)
            for seq, text in enumerate(texts)])


def chunk_ids(db: SqliteDatabase, item_id: int) -> list[int]:
    return [i for (i,) in db.conn.execute(
        "SELECT id FROM chunks WHERE item_id = ? ORDER BY seq", (item_id,))]


def fts_matches(db: SqliteDatabase, word: str) -> int:
    return int(db.conn.execute(
        "SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?", (f'"{word}"',)
    ).fetchone()[0])


def assert_fts_matches_content(db: SqliteDatabase) -> None:
    # rank = 1 makes FTS5 compare its index with the external content table too.
    db.conn.execute("INSERT INTO chunks_fts (chunks_fts, rank) VALUES ('integrity-check', 1)")


# -- fts_query ---------------------------------------------------------------------


def test_fts_query_quotes_each_word_and_ors_them() -> None:
    """Every word of the user's query is searched for literally, any of them matching."""
    assert fts_query("grind the corn") == '"grind" OR "the" OR "corn"'


def test_fts_query_turns_operators_into_words() -> None:
    """FTS5 operators typed by a user (AND, NEAR, *, :, ^) are plain words, not syntax."""
    assert fts_query('heading:intro AND NEAR(a b) corn* ^x "q') == (
        '"heading" OR "intro" OR "AND" OR "NEAR" OR "a" OR "b" OR "corn" OR "x" OR "q"')


def test_fts_query_dedupes_and_bounds_tokens() -> None:
    """Repeated words are searched once, and a huge query is cut to 64 words."""
    assert fts_query("corn corn CORN") == '"corn" OR "CORN"'
    huge = fts_query(" ".join(f"w{i}" for i in range(500)))
    assert huge is not None and huge.count(" OR ") == 63


def test_fts_query_of_nothing_searchable_is_none() -> None:
    """An empty or punctuation-only query has no words and yields None (no search)."""
    assert fts_query("") is None
    assert fts_query("  !!! ... --- ()") is None


HOSTILE = [
    "", " ", '"', '""', "'", "a\"b", "AND", "OR", "NOT", "a AND", "OR b", "NEAR", "NEAR(a b, 2)",
    "*", "corn*", "text:corn", "heading : x", ":", "(((", ")", "(a OR b", "^corn", "-corn",
    "+", "{text heading}: corn", "'; DROP TABLE chunks; --", "\x00", "ünïcödé 東京 Ωμέγα",
    "emoji 🌽🌾", "!!!", "...", "%_", "\\", "a" * 5000, "x " * 1000,
]


@pytest.mark.parametrize("query", HOSTILE)
def test_hostile_queries_never_raise(index: SqliteIndex, db: SqliteDatabase, query: str) -> None:
    """Any string a user types into search returns results or nothing, never an error."""
    put_chunks(db, add_item(db, "/r/a.txt"), ["corn and wheat: the AND of NEAR grains"])
    results = index.keyword(query, None, 10)
    assert isinstance(results, list)


def test_operator_words_are_found_as_words(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Searching for 'AND' finds text containing the word 'and' instead of failing."""
    put_chunks(db, add_item(db, "/r/a.txt"), ["salt and pepper"])
    assert len(index.keyword("AND", None, 10)) == 1


def test_unicode_words_are_searchable(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Accented words match without their accents (remove_diacritics)."""
    put_chunks(db, add_item(db, "/r/a.txt"), ["the naïve café"])
    assert len(index.keyword("naive cafe", None, 10)) == 1


# -- writing -----------------------------------------------------------------------


def test_replace_chunks_is_idempotent(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Applying the same chunks twice (a resumed run) leaves one copy in chunks and FTS."""
    item = add_item(db, "/r/a.txt")
    texts = ["first millstone chunk", "second millstone chunk", "third millstone chunk"]
    put_chunks(db, item, texts)
    put_chunks(db, item, texts)
    assert db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 3
    assert db.conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 3
    assert fts_matches(db, "millstone") == 3
    assert len(index.keyword("millstone", None, 10)) == 3
    assert_fts_matches_content(db)


def test_replace_chunks_drops_old_chunks(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Re-extracting a changed file replaces its chunks; old text is no longer found."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, ["obsolete barley text", "more barley"])
    put_chunks(db, item, ["fresh rye text"])
    assert index.chunk_count() == 1
    assert index.keyword("barley", None, 10) == []
    assert fts_matches(db, "barley") == 0
    assert len(index.keyword("rye", None, 10)) == 1
    assert_fts_matches_content(db)


def test_replace_chunks_touches_only_its_item(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Replacing one item's chunks leaves every other item's chunks in place."""
    first, second = add_item(db, "/r/a.txt"), add_item(db, "/r/b.txt")
    put_chunks(db, first, ["alpha text"])
    put_chunks(db, second, ["beta text"])
    put_chunks(db, first, ["gamma text"])
    assert len(index.keyword("beta", None, 10)) == 1


def chunks_of(texts: list[str]) -> list[StoredChunk]:
    return [StoredChunk(seq, text, f"hash-{text}", None, None) for seq, text in enumerate(texts)]


def test_chunks_written_and_deleted_in_one_transaction_keep_the_index_whole(
        index: SqliteIndex, db: SqliteDatabase) -> None:
    """The FTS rows of a transaction's chunks are written once, at its commit; chunks it
    replaces or deletes before then (one item settled twice in a flush, a member dropped
    by its container's re-extraction, a twin's chunks copied over) leave the index
    consistent, with exactly the chunks that remain."""
    parent, first, second = (add_item(db, f"/r/{name}") for name in ("a.zip", "b.txt", "c.txt"))
    now = time.time()
    with db.transaction() as txn:
        member = txn.execute(
            "INSERT INTO items (collection, source, root, status, created_at, updated_at, "
            "parent_id) VALUES ('docs', '/r/a.zip!/m.txt', '/r', 'extracted', ?, ?, ?)",
            (now, now, parent)).lastrowid
        assert member is not None
        index.replace_chunks(txn, member, "docs", chunks_of(["walnut member"]))
        index.replace_chunks(txn, first, "docs", chunks_of(["almond draft", "almond notes"]))
        index.replace_chunks(txn, first, "docs", chunks_of(["hazelnut final"]))
        index.replace_chunks(txn, second, "docs", chunks_of(["pecan"]))
        index.copy_chunks(txn, first, second, "docs")
        txn.execute("DELETE FROM items WHERE parent_id = ?", (parent,))
    assert_fts_matches_content(db)
    assert [fts_matches(db, word) for word in ("walnut", "almond", "pecan", "hazelnut")] \
        == [0, 0, 0, 2]
    assert db.conn.execute("SELECT count(*) FROM temp.fts_unindexed").fetchone()[0] == 0


def test_a_rolled_back_transaction_leaves_no_text_waiting(
        index: SqliteIndex, db: SqliteDatabase) -> None:
    """Chunks of a rolled-back write never reach the FTS index, and the next commit
    indexes only its own."""
    item = add_item(db, "/r/a.txt")
    with pytest.raises(RuntimeError), db.transaction() as txn:
        index.replace_chunks(txn, item, "docs", chunks_of(["chestnut"]))
        raise RuntimeError("the batch failed")
    put_chunks(db, item, ["cashew"])
    assert (fts_matches(db, "chestnut"), fts_matches(db, "cashew")) == (0, 1)
    assert_fts_matches_content(db)


def test_copy_chunks_gives_a_twin_the_same_chunks(index: SqliteIndex, db: SqliteDatabase) -> None:
    """An identical file reuses the chunks of its twin instead of being re-extracted."""
    original, twin = add_item(db, "/r/a.txt"), add_item(db, "/r/copy.txt", "other")
    put_chunks(db, original, ["one", "two"])
    with db.transaction() as txn:
        assert index.copy_chunks(txn, original, twin, "other") == 2
    assert index.chunk_count("other") == 2
    assert len(index.keyword("two", "other", 10)) == 1
    assert_fts_matches_content(db)


def test_deleting_an_item_removes_its_text_from_the_fts_index(
        index: SqliteIndex, db: SqliteDatabase) -> None:
    """A file dropped from the catalog (ON DELETE CASCADE) is no longer found."""
    kept, dropped = add_item(db, "/r/a.txt"), add_item(db, "/r/b.txt")
    put_chunks(db, kept, ["wheat kept"])
    put_chunks(db, dropped, ["wheat dropped", "spelt dropped"])
    with db.transaction() as txn:
        txn.execute("DELETE FROM items WHERE id = ?", (dropped,))
    assert fts_matches(db, "wheat") == 1 and fts_matches(db, "spelt") == 0
    assert_fts_matches_content(db)


def test_a_schema_1_database_upgrades_without_double_indexing(tmp_path: Path) -> None:
    """A home made before migration 2 (FTS rows written by trigger) keeps its index
    consistent after the upgrade, for old rows and new ones."""
    import sqlite3

    from gristmill.catalog.migrations.sqlite import MIGRATIONS

    path = tmp_path / "gristmill.db"
    conn = sqlite3.connect(path, isolation_level=None)
    MIGRATIONS[0](conn)
    conn.execute("PRAGMA user_version = 1")
    now = time.time()
    conn.execute("INSERT INTO items (id, collection, source, root, status, created_at, "
                 "updated_at) VALUES (1, 'docs', '/r/old.txt', '/r', 'extracted', ?, ?)",
                 (now, now))
    conn.execute("INSERT INTO chunks (item_id, collection, seq, text, text_hash) "
                 "VALUES (1, 'docs', 0, 'ancient oats', 'h-old')")
    conn.close()
    db = SqliteDatabase(path)
    try:
        assert db.schema_version == len(MIGRATIONS) >= 2
        put_chunks(db, add_item(db, "/r/new.txt"), ["modern oats"])
        assert fts_matches(db, "oats") == 2
        assert db.conn.execute("SELECT count(*) FROM chunks_fts").fetchone()[0] == 2
        assert_fts_matches_content(db)
    finally:
        db.close()


def test_a_schema_6_database_keeps_its_keyword_index_through_the_code_columns(
        tmp_path: Path) -> None:
    """Migration 7 (code entities) makes the FTS table again with a `terms` column: text
    indexed before it is still found, and identifiers split into words find new code."""
    import sqlite3

    from gristmill.catalog.migrations.sqlite import MIGRATIONS

    path = tmp_path / "gristmill.db"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys = ON")
    for upgrade in MIGRATIONS[:6]:
        upgrade(conn)
    conn.execute("PRAGMA user_version = 6")
    now = time.time()
    conn.execute("INSERT INTO items (id, collection, source, root, status, created_at, "
                 "updated_at) VALUES (1, 'docs', '/r/old.txt', '/r', 'extracted', ?, ?)",
                 (now, now))
    conn.execute("INSERT INTO chunks (item_id, collection, seq, text, text_hash) "
                 "VALUES (1, 'docs', 0, 'ancient oats', 'h-old')")
    conn.execute("INSERT INTO chunks_fts (rowid, text, heading) "
                 "SELECT id, text, heading FROM chunks")
    conn.close()
    db = SqliteDatabase(path)
    try:
        assert db.schema_version == len(MIGRATIONS) >= 7
        index = SqliteIndex(db)
        item = add_item(db, "/r/Billing.java")
        with db.transaction() as txn:
            index.replace_chunks(txn, item, "docs", [StoredChunk(
                0, "void applyDiscount(Invoice invoice) {}", "h-new", None, None,
                language="java", kind="method", entity="Billing.applyDiscount(Invoice)",
                lines=(3, 3), terms="apply discount")])
        assert fts_matches(db, "oats") == 1
        [hit] = index.hits(index.keyword("apply discount", None, 10))
        assert (hit.entity, hit.kind, hit.language, hit.lines) == (
            "Billing.applyDiscount(Invoice)", "method", "java", (3, 3))
        assert hit.to_dict()["lines"] == [3, 3]
        assert_fts_matches_content(db)
    finally:
        db.close()


def test_code_filters_keep_to_a_language_a_kind_and_a_path_glob(
        index: SqliteIndex, db: SqliteDatabase) -> None:
    """--language, --kind and --path narrow keyword and vector rankings in SQL (exact:
    never a filter over an unfiltered top k); the glob matches the path relative to the
    ingested folder or the whole path, `*` crossing folders."""
    def code(item: int, language: str, kind: str, text: str) -> None:
        with db.transaction() as txn:
            index.replace_chunks(txn, item, "docs", [StoredChunk(
                0, text, f"h-{item}", None, None, language=language, kind=kind,
                entity=f"e{item}", lines=(1, 1))])
            SqliteIndex.store_vectors(txn, MODEL, [f"h-{item}"], np.array([[1.0, 0.0]]))
    java_method = add_item(db, "/r/src/main/billing/Invoice.java")
    java_class = add_item(db, "/r/src/test/billing/InvoiceTest.java")
    python_function = add_item(db, "/r/tools/invoice.py")
    code(java_method, "java", "method", "invoice total")
    code(java_class, "java", "class", "invoice test")
    code(python_function, "python", "function", "invoice script")
    put_chunks(db, add_item(db, "/r/notes.txt"), ["invoice notes"])

    def keyword(**scope: str) -> set[int]:
        return {db.conn.execute("SELECT item_id FROM chunks WHERE id = ?", (cid,)
                                ).fetchone()[0]
                for cid, _ in index.keyword("invoice", Scope(**scope), 10)}

    def vector(**scope: str) -> set[int]:
        return {db.conn.execute("SELECT item_id FROM chunks WHERE id = ?", (cid,)
                                ).fetchone()[0]
                for cid, _ in index.vector(np.array([1.0, 0.0]), MODEL, Scope(**scope), 10)}

    assert len(keyword()) == 4
    assert keyword(language="java") == vector(language="java") == {java_method, java_class}
    assert keyword(kind="method") == vector(kind="method") == {java_method}
    assert keyword(path="src/*/billing/*.java") == {java_method, java_class}
    assert keyword(path="*Test.java") == {java_class}
    assert keyword(path="/r/tools/*") == vector(path="/r/tools/*") == {python_function}
    assert keyword(path="src/main/[bc]illing/*") == {java_method}
    assert keyword(language="java", path="*.py") == set()


def test_glob_regex_reads_a_glob_as_sqlite_does() -> None:
    """PostgreSQL matches --path with this regular expression; it agrees with GLOB."""
    import re
    import sqlite3

    conn = sqlite3.connect(":memory:")
    paths = ["src/main/Invoice.java", "src/a.b/x.py", "README", "src/[x].txt", "a^b$c"]
    for glob in ["src/*.java", "*", "src/?.b/*", "src/[!m]*", "README", "*[x]*", "a^b$c",
                 "src/a.b/x?py"]:
        for path in paths:
            expected = bool(conn.execute("SELECT ? GLOB ?", (path, glob)).fetchone()[0])
            assert bool(re.search(glob_regex(glob), path)) is expected, (glob, path)


def test_store_vectors_first_writer_wins(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Storing a vector for a text that already has one keeps the first (cache semantics)."""
    with db.transaction() as txn:
        SqliteIndex.store_vectors(txn, MODEL, ["h"], np.array([[1.0, 0.0]]))
        SqliteIndex.store_vectors(txn, MODEL, ["h"], np.array([[0.0, 1.0]]))
    blob = db.conn.execute("SELECT vector FROM embeddings").fetchone()[0]
    assert np.frombuffer(blob, dtype=np.float32).tolist() == [1.0, 0.0]
    assert index.vector_counts() == {MODEL: 1}


def test_pending_chunks_lists_chunks_without_vectors(
        index: SqliteIndex, db: SqliteDatabase) -> None:
    """The embed backlog is chunks of extracted items whose text has no vector yet."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, ["has vector", "needs vector"])
    with db.transaction() as txn:
        SqliteIndex.store_vectors(txn, MODEL, ["hash-has vector"], np.ones((1, 2)))
    pending = index.pending_chunks(MODEL, 0, 10)
    assert [p.text for p in pending] == ["needs vector"]
    assert index.pending_chunks(MODEL, pending[0].chunk_id, 10) == []


# -- keyword -----------------------------------------------------------------------


def test_keyword_ranks_the_matching_chunk_first(index: SqliteIndex, db: SqliteDatabase) -> None:
    """The chunk about the query's subject comes first, with a positive score."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, [
        "the weather was fine and the harvest was early",
        "a waterwheel turns the millstone that grinds the grain",
        "grain prices fell in the spring",
    ])
    ids = chunk_ids(db, item)
    results = index.keyword("millstone grinds", None, 10)
    assert results[0][0] == ids[1]
    assert results[0][1] > 0
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)


def test_fts_query_every_word_ands_the_words() -> None:
    """The all-words form keeps the quoting and joins with FTS5's implicit AND."""
    assert fts_query('grind "the" corn', every_word=True) == '"grind" "the" "corn"'


def test_keyword_puts_chunks_with_every_word_first(index: SqliteIndex, db: SqliteDatabase) -> None:
    """A chunk holding every query word outranks chunks that repeat one of them, and
    those still fill the list when the all-words chunks are too few."""
    item = add_item(db, "/r/a.txt")
    put_chunks(db, item, [
        "millstone millstone millstone millstone millstone",
        "the waterwheel turns the millstone",
        "waterwheel waterwheel waterwheel waterwheel",
        "nothing about mills here",
    ])
    ids = chunk_ids(db, item)
    results = index.keyword("waterwheel millstone", None, 10)
    assert results[0][0] == ids[1]
    assert sorted(chunk_id for chunk_id, _ in results[1:]) == sorted([ids[0], ids[2]])
    scores = [score for _, score in results]
    assert scores == sorted(scores, reverse=True)
    # Enough all-words chunks: only those come back.
    assert [chunk_id for chunk_id, _ in index.keyword("waterwheel millstone", None, 1)] == [
        ids[1]]


def test_keyword_fallback_keeps_the_collection(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Chunks with only some of the words, filling the list, come from the asked
    collection too, and no chunk is listed twice."""
    mine = add_item(db, "/r/mine.txt", collection="mine")
    other = add_item(db, "/r/other.txt", collection="other")
    put_chunks(db, mine, ["oats and barley", "barley only"], collection="mine")
    put_chunks(db, other, ["oats and barley again", "oats only"], collection="other")
    results = index.keyword("oats barley", "mine", 10)
    assert sorted(chunk_id for chunk_id, _ in results) == sorted(chunk_ids(db, mine))
    assert results[0][0] == chunk_ids(db, mine)[0]


def test_keyword_respects_limit(index: SqliteIndex, db: SqliteDatabase) -> None:
    """At most `limit` results come back."""
    put_chunks(db, add_item(db, "/r/a.txt"), [f"corn number {i}" for i in range(20)])
    assert len(index.keyword("corn", None, 5)) == 5


def test_keyword_filters_by_collection(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Searching one collection never returns another collection's chunks."""
    mine = add_item(db, "/r/a.txt", "mine")
    theirs = add_item(db, "/r/a.txt", "theirs")
    put_chunks(db, mine, ["shared wording"], "mine")
    put_chunks(db, theirs, ["shared wording"], "theirs")
    assert [cid for cid, _ in index.keyword("shared", "mine", 10)] == chunk_ids(db, mine)
    assert len(index.keyword("shared", None, 10)) == 2


def test_hits_attach_source_and_keep_order(index: SqliteIndex, db: SqliteDatabase) -> None:
    """hits() returns results in the given order with source, text and page attached."""
    item = add_item(db, "/r/report.pdf")
    put_chunks(db, item, ["page one text", "page two text"])
    first, second = chunk_ids(db, item)
    hits = index.hits([(second, 2.0), (first, 1.0), (999_999, 0.5)])
    assert [(h.chunk_id, h.page, h.source, h.score) for h in hits] == [
        (second, 2, "/r/report.pdf", 2.0), (first, 1, "/r/report.pdf", 1.0)]
    assert {"source", "score", "text"} <= set(hits[0].to_dict())
    assert index.hits([]) == []


# -- vector ------------------------------------------------------------------------


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def index_vectors(db: SqliteDatabase, vectors: np.ndarray, collection: str = "docs",
                  model: str = MODEL) -> list[int]:
    item = add_item(db, f"/r/{collection}-{len(vectors)}.txt", collection)
    texts = [f"{collection} vector {i}" for i in range(len(vectors))]
    put_chunks(db, item, texts, collection)
    with db.transaction() as txn:
        SqliteIndex.store_vectors(txn, model, [f"hash-{t}" for t in texts], vectors)
    return chunk_ids(db, item)


def test_vector_returns_exact_cosine_order(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Handmade unit vectors come back nearest first with their cosine similarity."""
    angles = np.radians([0, 80, 10, 45, 170])
    vectors = np.stack([np.cos(angles), np.sin(angles), np.zeros(5)], axis=1)
    ids = index_vectors(db, vectors.astype(np.float32))
    results = index.vector(np.array([1.0, 0.0, 0.0]), MODEL, None, 3)
    assert [cid for cid, _ in results] == [ids[0], ids[2], ids[3]]
    assert [score for _, score in results] == pytest.approx(
        np.cos(np.radians([0, 10, 45])).tolist(), abs=1e-6)


def test_vector_scan_across_many_blocks_is_exact(
    index: SqliteIndex, db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With more rows than one scan block, the top k is still the exact top k."""
    monkeypatch.setattr(index_module, "_SCAN_BLOCK", 7)
    vectors = unit_vectors(100, 8, seed=1)
    ids = index_vectors(db, vectors)
    query = unit_vectors(1, 8, seed=2)[0]
    expected = np.argsort(-(vectors @ query))[:10]
    results = index.vector(query, MODEL, None, 10)
    assert [cid for cid, _ in results] == [ids[i] for i in expected]
    assert [s for _, s in results] == pytest.approx((vectors @ query)[expected].tolist(),
                                                    abs=1e-6)


def test_vector_limit_above_row_count_returns_all(
    index: SqliteIndex, db: SqliteDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asking for more results than there are vectors returns every one, best first."""
    monkeypatch.setattr(index_module, "_SCAN_BLOCK", 3)
    vectors = unit_vectors(8, 4, seed=3)
    index_vectors(db, vectors)
    results = index.vector(vectors[5], MODEL, None, 50)
    assert len(results) == 8
    assert results[0][1] == pytest.approx(1.0, abs=1e-6)
    scores = [s for _, s in results]
    assert scores == sorted(scores, reverse=True)


def test_vector_filters_by_collection_and_model(index: SqliteIndex, db: SqliteDatabase) -> None:
    """Vector search sees only the asked collection and only the asked model's vectors."""
    vectors = unit_vectors(5, 4, seed=4)
    mine = index_vectors(db, vectors, "mine")
    index_vectors(db, vectors, "theirs")
    index_vectors(db, unit_vectors(5, 4, seed=5), "mine-other-model", model="other")
    results = index.vector(vectors[0], MODEL, "mine", 10)
    assert {cid for cid, _ in results} == set(mine)
    assert len(index.vector(vectors[0], MODEL, None, 100)) == 10


def test_vector_search_of_empty_index_is_empty(index: SqliteIndex) -> None:
    """Searching before anything is embedded returns nothing rather than failing."""
    assert index.vector(np.ones(4, dtype=np.float32), MODEL, None, 5) == []


# -- fusion ------------------------------------------------------------------------


def test_rrf_sums_reciprocal_ranks() -> None:
    """Each list adds 1/(60 + rank) per chunk; chunks in both lists rise to the top."""
    keyword = [(1, 9.0), (2, 5.0)]
    vector = [(2, 0.9), (3, 0.8)]
    fused = reciprocal_rank_fusion([keyword, vector], 10)
    assert [cid for cid, _ in fused] == [2, 1, 3]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
    assert fused[1][1] == pytest.approx(1 / 61)
    assert fused[2][1] == pytest.approx(1 / 62)


def test_rrf_ignores_raw_scores() -> None:
    """Only ranks matter, so BM25 and cosine scores on different scales fuse fairly."""
    small = reciprocal_rank_fusion([[(1, 0.001), (2, 0.0001)]], 10)
    large = reciprocal_rank_fusion([[(1, 1e9), (2, 5.0)]], 10)
    assert small == large


def test_rrf_breaks_ties_by_chunk_id_and_applies_limit() -> None:
    """Equal fused scores order by chunk id, and at most `limit` come back."""
    fused = reciprocal_rank_fusion([[(5, 1.0)], [(3, 1.0)], [(4, 1.0)]], 2)
    assert [cid for cid, _ in fused] == [3, 4]
    assert reciprocal_rank_fusion([], 5) == []
