"""Ingest from S3, against a real SeaweedFS on loopback (not a mock): the same knowledge
base as from a folder, nothing downloaded twice, changes and deletions, outages, and
downloads cut off mid-body (by a real TCP proxy) resumed, never mixing two versions."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedFS
from tcp_proxy import CuttingProxy, Request

from backends import query
from corpus import build
from crashes import crash_by_progress
from docs import make_docx, make_pdf
from gate import Gate
from gristmill.errors import SourceError, TransientError
from gristmill.knowledge_base import KnowledgeBase
from gristmill.sources.s3 import S3Source, item_error
from process_tools import env_for, gristmill


def _kb(home: Path, **settings: object) -> KnowledgeBase:
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    return KnowledgeBase.open(home, **settings)


def _corpus(folder: Path) -> Path:
    """A text file, a PDF, a DOCX, a file in a subfolder and one in a hidden folder."""
    (folder / "notes").mkdir(parents=True)
    (folder / ".cache").mkdir()
    (folder / "readme.txt").write_text("The granary ledger lists every sack of barley.\n")
    make_pdf(folder / "report.pdf", ["Quarterly milling report: wheat flour output rose.",
                                     "Second page about the millstone maintenance."])
    make_docx(folder / "minutes.docx", ["Minutes of the miller guild meeting.",
                                         "The guild agreed on a new barley price."],
              headings={0: "Guild"})
    (folder / "notes" / "deep.txt").write_text("A nested note about the water wheel.\n")
    (folder / ".cache" / "hidden.txt").write_text("barley in a hidden folder\n")
    return folder


def _upload(client: Any, bucket: str, folder: Path, prefix: str) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = prefix + path.relative_to(folder).as_posix()
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())


def _items(home: Path, collection: str, root: str) -> dict[str, tuple[Any, ...]]:
    """Each top-level item by its name below ``root``: status, sha256, chunks, size."""
    rows = query(home, "SELECT source, status, sha256, chunk_count, size FROM items "
                 "WHERE collection = ? AND parent_id IS NULL", (collection,))
    return {source.removeprefix(root): tuple(rest) for source, *rest in rows}


def _chunks(home: Path, collection: str, root: str) -> list[tuple[str, str]]:
    rows = query(home, "SELECT i.source, c.text FROM chunks c JOIN items i "
                 "ON i.id = c.item_id WHERE i.collection = ?", (collection,))
    return sorted((source.removeprefix(root), text) for source, text in rows)


def test_an_s3_prefix_gives_the_same_knowledge_base_as_the_same_files_in_a_folder(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Items, chunks and search results from s3://bucket/prefix/ are those of the same
    files ingested from a folder, named by their s3:// URL."""
    folder = _corpus(tmp_path / "src")
    client = seaweed.client()
    _upload(client, bucket, folder, "docs/")
    client.put_object(Bucket=bucket, Key="docs2/elsewhere.txt", Body=b"barley outside")
    client.put_object(Bucket=bucket, Key="docs/folder-marker/", Body=b"")
    root = f"s3://{bucket}/docs/"
    home = tmp_path / "home"
    with _kb(home) as kb:
        from_folder = kb.ingest([folder], collection="disk")
        from_s3 = kb.ingest([f"s3://{bucket}/docs"], collection="s3")  # no slash: a prefix
        assert from_s3.failed == 0
        assert from_s3.discovered.new == from_folder.discovered.new == 4
        disk = _items(home, "disk", str(folder) + "/")
        remote = _items(home, "s3", root)
        assert remote == disk
        assert sorted(remote) == ["minutes.docx", "notes/deep.txt", "readme.txt", "report.pdf"]
        assert all(status == "indexed" and sha256 for status, sha256, *_ in remote.values())
        assert _chunks(home, "s3", root) == _chunks(home, "disk", str(folder) + "/")
        for question in ("barley", "millstone maintenance", "water wheel"):
            hits = kb.search(question, collection="s3")
            expected = kb.search(question, collection="disk")
            assert hits, question
            assert [(h.source.removeprefix(root), h.text) for h in hits] == \
                [(h.source.removeprefix(str(folder) + "/"), h.text) for h in expected]
            assert all(h.source.startswith(root) for h in hits)


def test_a_rerun_with_no_change_downloads_nothing(tmp_path: Path, seaweed: SeaweedFS,
                                                  bucket: str) -> None:
    """A second run lists the prefix and compares ETags: no object is requested (the
    server counts its GETs and the bytes it sent)."""
    _upload(seaweed.client(), bucket, _corpus(tmp_path / "src"), "docs/")
    root = f"s3://{bucket}/docs/"
    with _kb(tmp_path / "home") as kb:
        first = kb.ingest([root])
        assert first.items["indexed"] == 4
        gets, sent = seaweed.served(bucket)
        assert gets >= 4  # the first run did download each object
        dry = kb.ingest([root], dry_run=True)
        assert (dry.discovered.unchanged, dry.discovered.changed) == (4, 0)
        again = kb.ingest([root])
        assert again.discovered.unchanged == 4
        assert again.discovered.new == again.discovered.changed == 0
        assert seaweed.served(bucket) == (gets, sent)


def test_a_changed_object_is_read_again_and_a_deleted_one_loses_its_chunks(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Only the changed object is downloaded again; the deleted one's item and chunks go."""
    client = seaweed.client()
    _upload(client, bucket, _corpus(tmp_path / "src"), "docs/")
    root = f"s3://{bucket}/docs/"
    home = tmp_path / "home"
    with _kb(home) as kb:
        kb.ingest([root])
        client.put_object(Bucket=bucket, Key="docs/readme.txt",
                          Body=b"The ledger now counts oat sacks instead.\n")
        client.delete_object(Bucket=bucket, Key="docs/notes/deep.txt")
        gets, _ = seaweed.served(bucket)
        report = kb.ingest([root])
        assert (report.discovered.changed, report.discovered.removed,
                report.discovered.unchanged) == (1, 1, 2)
        assert seaweed.served(bucket)[0] == gets + 1  # the changed object alone
        assert [h.source for h in kb.search("oat sacks")] == [f"{root}readme.txt"]
        assert kb.search("granary") == []
        assert kb.search("water wheel") == []
        assert sorted(_items(home, "default", root)) == ["minutes.docx", "readme.txt",
                                                         "report.pdf"]


def test_an_object_over_max_file_mb_is_skipped_without_being_requested(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """The listing's size decides: the object is skipped with the reason, never fetched."""
    client = seaweed.client()
    client.put_object(Bucket=bucket, Key="big.txt", Body=b"grain " * (400 * 1024))
    with _kb(tmp_path / "home", max_file_mb=1) as kb:
        kb.ingest([f"s3://{bucket}/"])
        [(status, error)] = query(tmp_path / "home", "SELECT status, error FROM items")
    assert status == "skipped"
    assert "max_file_mb" in error
    assert seaweed.served(bucket)[0] == 0


def test_a_missing_bucket_is_a_clear_source_error(tmp_path: Path, seaweed: SeaweedFS,
                                                  bucket: str) -> None:
    """Listing a bucket that does not exist names it and what to check."""
    with _kb(tmp_path / "home") as kb, pytest.raises(SourceError, match="no bucket"):
        kb.ingest([f"s3://{bucket}-missing/docs/"])


def test_the_cli_ingests_an_s3_url_and_search_shows_it(tmp_path: Path, seaweed: SeaweedFS,
                                                       bucket: str) -> None:
    """`gristmill ingest s3://bucket/prefix/` with the endpoint from AWS_ENDPOINT_URL_S3;
    `search --json` gives the object's URL as its source."""
    _upload(seaweed.client(), bucket, _corpus(tmp_path / "src"), "docs/")
    home = str(tmp_path / "home")
    cli = [sys.executable, "-m", "gristmill"]
    env = dict(os.environ)
    done = subprocess.run([*cli, "ingest", f"s3://{bucket}/docs/", "--home", home,
                           "--embedder", "none", "--json"],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["items"]["indexed"] == 4
    found = subprocess.run([*cli, "search", "millstone", "--home", home, "--embedder",
                            "none", "--json"], env=env, capture_output=True, text=True,
                           timeout=120)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)[0]["source"] == f"s3://{bucket}/docs/report.pdf"


@pytest.mark.slow
def test_a_server_stopped_mid_run_gives_transient_failures_that_the_next_run_redoes(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Objects that cannot be fetched while the store is down fail as transient, with the
    reason; the next run, with the store back, fetches and indexes them."""
    client = seaweed.client()
    for i in range(80):
        client.put_object(Bucket=bucket, Key=f"many/{i:03d}.txt",
                          Body=f"sack number {i} of rye\n".encode())
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail fast while the store is down
    home = tmp_path / "home"
    root = f"s3://{bucket}/many/"

    def stop_when_listed() -> None:
        # Once every object is in the catalog the listing (one page) is over: the store
        # goes away while the workers fetch.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = query(home, "SELECT count(*) FROM items", missing_ok=True)
            if rows and rows[0][0] == 80:
                break
            time.sleep(0.005)
        seaweed.stop()

    stopper = threading.Thread(target=stop_when_listed)
    try:
        with _kb(home, workers=1, max_attempts=1) as kb:
            stopper.start()
            first = kb.ingest([root])
            stopper.join()
            assert first.failed > 0
            reasons = {reason for _, _, reason in kb.catalog.problems()}
            assert all("cannot reach the S3 store" in reason for reason in reasons), reasons
            seaweed.start()
            seaweed.wait_readable(bucket, "many/000.txt")
            second = kb.ingest([root])
            assert second.discovered.unchanged == 80
            assert second.items["indexed"] == 80
            assert second.failed == 0
    finally:
        stopper.join()
        if seaweed.process is None:
            seaweed.start()


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_ends_as_an_uninterrupted_run(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Runs killed -9 mid-download or mid-extraction, then run again, leave the same
    items and chunks as one uninterrupted run, and no spool file behind."""
    corpus = tmp_path / "corpus"
    build(corpus, 40, pdf_pages=2)
    _upload(seaweed.client(), bucket, corpus, "c/")
    root = f"s3://{bucket}/c/"
    ref_env = env_for(tmp_path / "ref", workers="2")
    done = gristmill("ingest", root, env=ref_env)
    assert done.returncode == 0, done.stderr
    crash_env = env_for(tmp_path / "crash", workers="2", flush_seconds="0.3")
    kills = crash_by_progress(["ingest", root], crash_env, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=3, step=8, seed=4)
    assert kills == 3

    def state(home: Path) -> tuple[object, ...]:
        return (sorted(query(home, "SELECT source, status, sha256, chunk_count FROM items")),
                sorted(query(home, "SELECT i.source, c.seq, c.text FROM chunks c "
                                   "JOIN items i ON i.id = c.item_id")))

    assert state(tmp_path / "crash") == state(tmp_path / "ref")
    assert len(state(tmp_path / "ref")[0]) == 40
    assert list((tmp_path / "crash" / "spool").iterdir()) == []


def _gets_of(proxy: CuttingProxy, bucket: str, key: str) -> list[Request]:
    return [r for r in proxy.requests
            if r.method == "GET" and r.path.split("?")[0] == f"/{bucket}/{key}"]


def _first_get(bucket: str, key: str) -> Callable[[Request], bool]:
    return lambda r: r.method == "GET" and r.path.split("?")[0] == f"/{bucket}/{key}" \
        and "range" not in r.headers


_CUT_AT = 5 * 2**19  # response bytes passed on before the cut: two 1 MiB blocks and more


def test_a_download_cut_off_resumes_with_a_ranged_get(tmp_path: Path, seaweed: SeaweedFS,
                                                      bucket: str) -> None:
    """A connection dropped mid-download (by a real TCP proxy between boto3 and the
    store) is resumed with a ranged GET of the rest, pinned to the ETag: the copy is
    whole, its sha256 right, and the first bytes were not fetched twice."""
    data = os.urandom(6 * 2**20)
    etag = seaweed.client().put_object(Bucket=bucket, Key="big.bin", Body=data)["ETag"]
    with CuttingProxy(("127.0.0.1", seaweed.ports["s3.port"])) as proxy:
        cut = proxy.cut(_first_get(bucket, "big.bin"), after=_CUT_AT)
        source = S3Source(f"s3://{bucket}/", seaweed.client(proxy.endpoint))
        with source.local_copy(f"s3://{bucket}/big.bin", tmp_path / "spool", 2**30) as copy:
            assert copy.size == len(data)
            assert copy.sha256 == hashlib.sha256(data).hexdigest()
            assert copy.path.read_bytes() == data
    assert cut.is_set()
    first, resumed = _gets_of(proxy, bucket, "big.bin")
    assert "if-match" not in first.headers
    start = int(resumed.headers["range"].removeprefix("bytes=").removesuffix("-"))
    assert 2**20 <= start < _CUT_AT  # what had come was kept
    assert resumed.headers["if-match"] == etag
    assert list((tmp_path / "spool").iterdir()) == []


@pytest.mark.parametrize("store", ["honours If-Match", "ignores If-Match"])
def test_an_object_replaced_before_the_resume_fails_as_transient_never_mixed(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str, store: str) -> None:
    """An object replaced (same size, other bytes) between the cut and the resume: the
    ranged GET pinned to the first ETag is refused (or, from a store that ignores
    If-Match, answered with another ETag and not used), the item fails as transient (it
    is retried) and no copy of mixed bytes is left; the next try reads the new version."""
    old, new = os.urandom(6 * 2**20), os.urandom(6 * 2**20)
    writer = seaweed.client()
    writer.put_object(Bucket=bucket, Key="big.bin", Body=old)
    url = f"s3://{bucket}/big.bin"
    spool = tmp_path / "spool"
    drop = "If-Match" if store == "ignores If-Match" else None
    with CuttingProxy(("127.0.0.1", seaweed.ports["s3.port"]), drop_header=drop) as proxy:
        cut = proxy.cut(_first_get(bucket, "big.bin"), after=_CUT_AT, before_cut=lambda:
                        writer.put_object(Bucket=bucket, Key="big.bin", Body=new))
        source = S3Source(f"s3://{bucket}/", seaweed.client(proxy.endpoint))
        with pytest.raises(Exception) as raised, source.local_copy(url, spool, 2**30):
            pytest.fail("a copy was handed out")
        assert cut.is_set()
        error = item_error(raised.value, url)
        assert isinstance(error, TransientError), error
        assert "changed while it was downloaded" in error.reason
        assert list(spool.iterdir()) == []
        assert len(_gets_of(proxy, bucket, "big.bin")) == 2  # the first, the refused resume

        with source.local_copy(url, spool, 2**30) as copy:  # the retry
            assert copy.sha256 == hashlib.sha256(new).hexdigest()


def test_a_url_outside_the_source_roots_reaches_no_server(tmp_path: Path, seaweed: SeaweedFS,
                                                          bucket: str) -> None:
    """KnowledgeBase.ingest refuses an s3://bucket/key outside source_roots before it asks
    the store anything (naming an object root takes a HEAD request): no request reaches
    the server, whose answer would tell what lies outside the roots. One inside is read."""
    seaweed.client().put_object(Bucket=bucket, Key="docs/a.txt", Body=b"barley\n")
    seaweed.client().put_object(Bucket=bucket, Key="secret/key.txt", Body=b"rye\n")
    with CuttingProxy(("127.0.0.1", seaweed.ports["s3.port"])) as proxy, \
            _kb(tmp_path / "home", s3_endpoint_url=proxy.endpoint,
                source_roots=[f"s3://{bucket}/docs/"]) as kb:
        for url in (f"s3://{bucket}/secret/key.txt", f"s3://{bucket}/docs",
                    f"s3://{bucket}-other/docs/a.txt"):
            for dry_run in (True, False):
                with pytest.raises(SourceError, match="not under a URL prefix"):
                    kb.ingest([url], dry_run=dry_run)
        assert proxy.requests == []
        report = kb.ingest([f"s3://{bucket}/docs/a.txt"])
        assert report.items["indexed"] == 1
        assert proxy.requests  # the check let it through to the store
