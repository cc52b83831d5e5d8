"""Ingest with a store of originals (issue 17): each top-level original kept once by
sha256, the same bytes from elsewhere written nothing, remote sources too, the store
down or missing, and runs killed -9 mid-upload."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedFS
from store_helpers import file_sha256, folder_objects, puts, sha256_of

from backends import ON_POSTGRES, query, url_for
from docs import make_docx, make_pdf
from gristmill.knowledge_base import KnowledgeBase
from gristmill.store import object_key
from process_tools import env_for, gristmill, start


def _kb(home: Path, **settings: object) -> KnowledgeBase:
    """The knowledge base at ``home``: a catalog of its own on either backend (two homes
    of one test are two knowledge bases, as on two machines)."""
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    if ON_POSTGRES:
        settings.setdefault("database_url", url_for(home / "gristmill.db"))
    return KnowledgeBase.open(home, **settings)


def _corpus(folder: Path) -> dict[str, str]:
    """Files of every kind a store treats apart; returns the sha256 of each original
    that must be kept, by name: text, PDF, DOCX, a nested file and a zip (kept whole:
    its member is not an original). An unsupported file is not kept."""
    (folder / "notes").mkdir(parents=True)
    (folder / "readme.txt").write_text("The granary ledger lists every sack of barley.\n")
    make_pdf(folder / "report.pdf", ["Quarterly milling report: wheat flour output rose."])
    make_docx(folder / "minutes.docx", ["Minutes of the miller guild meeting."])
    (folder / "notes" / "deep.txt").write_text("A nested note about the water wheel.\n")
    with zipfile.ZipFile(folder / "bundle.zip", "w") as archive:
        archive.writestr("inside.txt", "A member about the millpond sluice.\n")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 4)
    return {name: file_sha256(folder / name) for name in
            ("readme.txt", "report.pdf", "minutes.docx", "notes/deep.txt", "bundle.zip")}


def _s3_objects(server: SeaweedFS, bucket: str, prefix: str) -> dict[str, Any]:
    """Objects under ``prefix`` by key: their LastModified."""
    pages = server.client().get_paginator("list_objects_v2").paginate(
        Bucket=bucket, Prefix=prefix)
    return {entry["Key"]: entry["LastModified"] for page in pages
            for entry in page.get("Contents", ())}


def test_each_top_level_original_is_kept_once_and_the_same_bytes_again_write_nothing(
        tmp_path: Path) -> None:
    """A folder store holds exactly the kept originals, each at ab/cd/<sha256> with its
    bytes (no zip member, no unsupported file); the same files from another folder, in
    this knowledge base or a new one, write nothing."""
    store = tmp_path / "store"
    store.mkdir()
    kept = _corpus(tmp_path / "src")
    with _kb(tmp_path / "home", store=str(store)) as kb:
        report = kb.ingest([tmp_path / "src"])
        assert report.failed == 0
        assert report.progress["originals_stored"] == 5
        objects = folder_objects(store)
        assert sorted(objects) == sorted(kept.values())
        for name, sha in kept.items():
            assert (store / object_key(sha)).read_bytes() == \
                (tmp_path / "src" / name).read_bytes()
        member = query(tmp_path / "home", "SELECT sha256 FROM items WHERE parent_id IS "
                       "NOT NULL")
        assert member and all(sha not in objects for (sha,) in member)
        stamps = {sha: path.stat().st_mtime_ns for sha, path in objects.items()}
        # The same bytes in another folder: items copied from their twins, no worker.
        shutil.copytree(tmp_path / "src", tmp_path / "copy")
        again = kb.ingest([tmp_path / "copy"])
        assert again.progress["originals_stored"] == 0
    # Another knowledge base, same store: each worker finds its original there.
    with _kb(tmp_path / "home2", store=str(store)) as other:
        fresh = other.ingest([tmp_path / "copy"])
        assert fresh.progress["originals_stored"] == 0
        assert fresh.progress["originals_already_stored"] == 5
    assert {sha: path.stat().st_mtime_ns for sha, path in folder_objects(store).items()} \
        == stamps
    assert list((store / ".incoming").iterdir()) == []


def test_without_a_store_nothing_is_kept_or_reported(tmp_path: Path) -> None:
    """The setting unset: no originals figures in the report (and no store to write)."""
    _corpus(tmp_path / "src")
    with _kb(tmp_path / "home") as kb:
        report = kb.ingest([tmp_path / "src"])
    assert "originals_stored" not in report.progress


def test_a_missing_store_folder_pauses_the_job_with_what_to_fix(tmp_path: Path) -> None:
    """The store folder absent (a NAS not mounted): nothing is created in its place, no
    item fails, and the job pauses with a reason naming the folder."""
    _corpus(tmp_path / "src")
    missing = tmp_path / "nas" / "originals"
    with _kb(tmp_path / "home", store=str(missing)) as kb:
        report = kb.ingest([tmp_path / "src"])
        assert report.state == "paused"
        assert report.reason is not None and str(missing) in report.reason
        assert "does not exist" in report.reason
        assert report.failed == 0
        assert not missing.exists()
        missing.mkdir(parents=True)
        resumed = kb.ingest([tmp_path / "src"])
        assert resumed.failed == 0
    assert len(folder_objects(missing)) == 5


def test_an_s3_store_keeps_originals_and_the_same_bytes_from_another_folder_put_nothing(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Every original lands in s3://bucket/objects/ab/cd/<sha256> with identical bytes;
    a new knowledge base ingesting the same bytes from another folder sends no PUT."""
    kept = _corpus(tmp_path / "src")
    store = f"s3://{bucket}/objects/"
    with _kb(tmp_path / "home", store=store) as kb:
        report = kb.ingest([tmp_path / "src"])
        assert (report.failed, report.progress["originals_stored"]) == (0, 5)
    objects = _s3_objects(seaweed, bucket, "objects/")
    assert sorted(objects) == sorted(f"objects/{object_key(sha)}" for sha in kept.values())
    client = seaweed.client()
    for name, sha in kept.items():
        body = client.get_object(Bucket=bucket, Key=f"objects/{object_key(sha)}")["Body"]
        assert body.read() == (tmp_path / "src" / name).read_bytes()
    written = puts(seaweed, bucket)
    shutil.copytree(tmp_path / "src", tmp_path / "copy")
    with _kb(tmp_path / "home2", store=store) as other:
        again = other.ingest([tmp_path / "copy"])
        assert again.progress["originals_already_stored"] == 5
    assert puts(seaweed, bucket) == written
    assert _s3_objects(seaweed, bucket, "objects/") == objects


def test_an_s3_source_with_a_store_keeps_its_originals(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Objects ingested from s3://bucket/docs/ are kept from their spool copies, under
    their sha256, in the store."""
    kept = _corpus(tmp_path / "src")
    client = seaweed.client()
    for name in kept:
        client.put_object(Bucket=bucket, Key=f"docs/{name}",
                          Body=(tmp_path / "src" / name).read_bytes())
    store = tmp_path / "store"
    store.mkdir()
    with _kb(tmp_path / "home", store=str(store)) as kb:
        report = kb.ingest([f"s3://{bucket}/docs/"])
        assert (report.failed, report.progress["originals_stored"]) == (0, 5)
    assert sorted(folder_objects(store)) == sorted(kept.values())
    for name, sha in kept.items():
        assert (store / object_key(sha)).read_bytes() == (tmp_path / "src" / name).read_bytes()


@pytest.mark.slow
def test_a_store_stopped_mid_run_gives_transient_failures_the_next_run_stores(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With SeaweedFS stopped the items whose original cannot be kept are transient
    failures (retried, then failed with the reason), not indexed without their
    original; the next run, with the store back, keeps and indexes every one."""
    folder = tmp_path / "src"
    folder.mkdir()
    for i in range(40):
        (folder / f"{i:03d}.txt").write_text(f"sack number {i} of rye\n")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # fail fast while the store is down
    store = f"s3://{bucket}/objects/"
    seaweed.stop()
    try:
        with _kb(tmp_path / "home", store=store, max_attempts=1) as kb:
            first = kb.ingest([folder])
            assert first.failed == 40
            reasons = {reason for _, _, reason in kb.catalog.problems()}
            assert reasons and all("cannot reach the S3 store" in reason
                                   for reason in reasons), reasons
            seaweed.start()
            second = kb.ingest([folder])
            assert (second.failed, second.items["indexed"]) == (0, 40)
            assert second.progress["originals_stored"] == 40
    finally:
        if seaweed.process is None:
            seaweed.start()
    assert len(_s3_objects(seaweed, bucket, "objects/")) == 40


def _large_text(path: Path, size: int) -> str:
    """A text file of ``size`` bytes; returns its sha256."""
    line = b"the granary ledger counts one more sack of barley today\n"
    with path.open("wb") as out:
        out.write((line * (size // len(line) + 1))[:size])
    return file_sha256(path)


def _kill_when(process: Any, ready: Any, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the upload never started"
        time.sleep(0.005)
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate()  # waits, and closes its pipes


@pytest.mark.slow
def test_an_ingest_killed_mid_copy_to_a_folder_store_leaves_no_wrong_object(
        tmp_path: Path) -> None:
    """kill -9 while a large original is copied into the store: no object holds bytes
    other than its name's; the next run stores exactly the originals, and the killed
    copy's temporary file is gone."""
    source = tmp_path / "src"
    source.mkdir()
    small = sha256_of(b"a small note about oats\n")
    (source / "small.txt").write_bytes(b"a small note about oats\n")
    big = _large_text(source / "big.txt", 300 << 20)
    store = tmp_path / "store"
    store.mkdir()
    env = env_for(tmp_path / "home", workers="1", store=str(store), max_text_chars="5000")
    run = start("ingest", str(source), env=env)
    _kill_when(run, lambda: any(p.stat().st_size > 0 for p in
                                (store / ".incoming").glob("*.part")))
    for sha, path in folder_objects(store).items():
        assert file_sha256(path) == sha
    assert big not in folder_objects(store)
    done = gristmill("ingest", str(source), "--json", env=env)
    assert done.returncode == 0, done.stderr
    # (big.txt is over max_text_chars, so its item fails: a failed original is kept.)
    assert json.loads(done.stdout)["progress"]["originals_stored"] >= 1
    assert sorted(folder_objects(store)) == sorted([small, big])
    assert file_sha256(store / object_key(big)) == big
    assert list((store / ".incoming").iterdir()) == []


@pytest.mark.slow
def test_an_ingest_killed_mid_upload_to_an_s3_store_leaves_no_wrong_object(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """kill -9 mid multipart upload: the object does not exist (only an incomplete
    upload, invisible); the next run uploads it whole."""
    source = tmp_path / "src"
    source.mkdir()
    big = _large_text(source / "big.txt", 200 << 20)
    env = env_for(tmp_path / "home", workers="1", store=f"s3://{bucket}/objects/",
                  max_text_chars="5000")
    client = seaweed.client()

    def uploading() -> bool:
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        return any(client.list_parts(Bucket=bucket, Key=u["Key"], UploadId=u["UploadId"])
                   .get("Parts") for u in uploads)

    run = start("ingest", str(source), env=env)
    _kill_when(run, uploading)
    assert _s3_objects(seaweed, bucket, "objects/") == {}
    done = gristmill("ingest", str(source), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert list(_s3_objects(seaweed, bucket, "objects/")) == [f"objects/{object_key(big)}"]
    body = client.get_object(Bucket=bucket, Key=f"objects/{object_key(big)}")["Body"]
    digest = __import__("hashlib").sha256()
    for block in body.iter_chunks(1 << 20):
        digest.update(block)
    assert digest.hexdigest() == big
