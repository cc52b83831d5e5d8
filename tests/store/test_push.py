"""``gristmill store push`` (issue 17): a store set after the items were ingested is
filled with exactly the originals an ingest would have kept, each once, verified against
the recorded sha256; a second push writes nothing; changed and deleted sources are
reported; a push killed -9 is completed, correctly, by the next."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import zipfile
from pathlib import Path

import pytest
from seaweed import SeaweedFS
from store_helpers import file_sha256, folder_objects, puts

from backends import ON_POSTGRES, url_for
from docs import make_pdf
from gristmill.catalog.originals import NOT_KEPT
from gristmill.knowledge_base import KnowledgeBase
from gristmill.ops import store_push
from gristmill.ops.store_push import PushReport, push_originals
from gristmill.runtime import worker
from gristmill.store import object_key
from process_tools import env_for, gristmill, start


def _kb(home: Path, **settings: object) -> KnowledgeBase:
    """The knowledge base at ``home``, a catalog of its own on either backend."""
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    if ON_POSTGRES:
        settings.setdefault("database_url", url_for(home / "gristmill.db"))
    return KnowledgeBase.open(home, **settings)


def _push(home: Path, store: str | Path, *, dry_run: bool = False,
          collection: str | None = None) -> PushReport:
    """Push the originals of the knowledge base at ``home`` into ``store``."""
    with _kb(home, store=str(store)) as kb:
        return push_originals(kb.db, kb.settings, dry_run=dry_run, collection=collection)


def _corpus(folder: Path) -> dict[str, str]:
    """Files of every kind a store treats apart, and the sha256 of each original that
    is kept, by name: text, a PDF, an empty file (skipped for no text: kept), a zip
    (kept whole, not its member) and a copy of the text under another name (the same
    object). An unsupported file is not kept."""
    (folder / "notes").mkdir(parents=True)
    (folder / "readme.txt").write_text("The granary ledger lists every sack of barley.\n")
    make_pdf(folder / "report.pdf", ["Quarterly milling report: wheat flour output rose."])
    (folder / "notes" / "empty.txt").write_bytes(b"")
    with zipfile.ZipFile(folder / "bundle.zip", "w") as archive:
        archive.writestr("inside.txt", "A member about the millpond sluice.\n")
    shutil.copy(folder / "readme.txt", folder / "notes" / "readme-copy.txt")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 4)
    return {name: file_sha256(folder / name) for name in
            ("readme.txt", "report.pdf", "notes/empty.txt", "bundle.zip")}


def _stamps(store: Path) -> dict[str, tuple[int, int]]:
    """Each object's inode and mtime: a rewritten object changes both."""
    return {sha: (path.stat().st_ino, path.stat().st_mtime_ns)
            for sha, path in folder_objects(store).items()}


def _settled_puts(server: SeaweedFS, bucket: str) -> int:
    """The PUTs ``server`` counted for ``bucket``, once the count stops moving: it
    counts a request after answering it, so a count read at once may miss the last."""
    count = puts(server, bucket)
    while True:
        time.sleep(0.3)
        again = puts(server, bucket)
        if again == count:
            return count
        count = again


def test_the_catalog_keeps_what_a_worker_keeps() -> None:
    """The skipped items a push leaves out are those a worker does not keep."""
    assert NOT_KEPT == worker._NOT_KEPT


def test_a_store_set_after_ingest_gets_every_original_once_and_a_second_push_writes_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ingested without a store, then pushed: the folder store holds exactly what an
    ingest with the store keeps, each object with its file's bytes; a dry run before
    counts them and writes nothing; a second push finds them all and writes nothing.
    (The catalog is read two rows a page: pages hold nothing twice, miss nothing.)"""
    monkeypatch.setattr(store_push, "_PAGE", 2)
    source = tmp_path / "src"
    kept = _corpus(source)
    with _kb(tmp_path / "home") as kb:
        assert kb.ingest([source]).failed == 0
    store = tmp_path / "store"
    store.mkdir()

    dry = _push(tmp_path / "home", store, dry_run=True)
    assert (dry.originals, dry.pushed, dry.already_stored) == (4, 4, 0)
    assert dry.bytes == sum((source / name).stat().st_size for name in kept)
    assert not dry.complete
    assert folder_objects(store) == {}
    elsewhere = _push(tmp_path / "home", store, dry_run=True, collection="elsewhere")
    assert (elsewhere.originals, elsewhere.complete) == (0, True)

    report = _push(tmp_path / "home", store)
    assert (report.originals, report.pushed, report.already_stored) == (4, 4, 0)
    assert report.complete and report.problems == []
    assert report.bytes == dry.bytes
    assert sorted(folder_objects(store)) == sorted(set(kept.values()))
    for name, sha in kept.items():
        assert (store / object_key(sha)).read_bytes() == (source / name).read_bytes()

    # The same set an ingest with the store keeps, in a knowledge base of its own.
    reference = tmp_path / "reference"
    reference.mkdir()
    with _kb(tmp_path / "home2", store=str(reference)) as kb:
        assert kb.ingest([source]).failed == 0
    assert sorted(folder_objects(reference)) == sorted(folder_objects(store))

    stamps = _stamps(store)
    again = _push(tmp_path / "home", store)
    assert (again.pushed, again.already_stored, again.bytes) == (0, 4, 0)
    assert again.complete
    assert _stamps(store) == stamps
    assert list((store / ".incoming").iterdir()) == []


def test_changed_and_deleted_sources_are_reported_and_nothing_wrong_is_stored(
        tmp_path: Path) -> None:
    """Through the CLI: a file rewritten since ingest is reported `changed` and not
    stored (neither under its old sha256 nor its new one); a deleted one `missing`; a
    deleted file whose copy is elsewhere is pushed from the copy; exit status 1, and
    the rest is pushed."""
    source = tmp_path / "src"
    source.mkdir()
    texts = {name: f"{name}: a note about the millstones, number {i}.\n"
             for i, name in enumerate(["a.txt", "b.txt", "c.txt", "d.txt"])}
    for name, text in texts.items():
        (source / name).write_text(text)
    (source / "e-copy.txt").write_text(texts["d.txt"])
    env = env_for(tmp_path / "home")
    done = gristmill("ingest", str(source), env=env)
    assert done.returncode == 0, done.stderr
    old_b = file_sha256(source / "b.txt")
    (source / "b.txt").write_text("b.txt was rewritten since it was ingested.\n")
    (source / "c.txt").unlink()
    (source / "d.txt").unlink()  # its bytes are still in e-copy.txt
    store = tmp_path / "store"
    store.mkdir()
    env = env_for(tmp_path / "home", store=str(store))

    done = gristmill("store", "push", "--json", env=env)
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["originals"], report["pushed"], report["changed"],
            report["missing_source"], report["failed"]) == (4, 2, 1, 1, 0)
    assert report["complete"] is False
    problems = {p["source"]: (p["problem"], p["reason"]) for p in report["problems"]}
    assert problems[str(source / "b.txt")][0] == "changed"
    assert "run gristmill ingest" in problems[str(source / "b.txt")][1]
    assert problems[str(source / "c.txt")][0] == "missing"
    assert f"changed: {source / 'b.txt'}" in done.stderr
    objects = folder_objects(store)
    assert old_b not in objects
    assert file_sha256(source / "b.txt") not in objects
    assert sorted(objects) == sorted(file_sha256(source / name)
                                     for name in ("a.txt", "e-copy.txt"))
    for sha, path in objects.items():
        assert file_sha256(path) == sha

    # Once ingested again, the catalog knows the new bytes and the deletion: complete.
    assert gristmill("ingest", str(source), env=env_for(tmp_path / "home")).returncode == 0
    done = gristmill("store", "push", env=env)
    assert done.returncode == 0, done.stderr
    assert "pushed 1 " in done.stdout
    assert file_sha256(source / "b.txt") in folder_objects(store)


def test_push_without_a_store_says_what_to_set(tmp_path: Path) -> None:
    """No `store` setting: exit 2 with the setting to set; a store folder that is not
    there (a NAS not mounted): exit 2 naming it, and it is not created."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("oats\n")
    env = env_for(tmp_path / "home")
    assert gristmill("ingest", str(tmp_path / "src"), env=env).returncode == 0
    done = gristmill("store", "push", env=env)
    assert done.returncode == 2
    assert "set `store`" in done.stderr
    missing = tmp_path / "nas" / "originals"
    done = gristmill("store", "push", "--dry-run",
                     env=env_for(tmp_path / "home", store=str(missing)))
    assert done.returncode == 2
    assert "does not exist" in done.stderr and str(missing) in done.stderr
    assert not missing.exists()


def test_push_to_an_s3_store_sends_one_put_per_missing_original_and_none_again(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """SeaweedFS as the store: each missing original is one PUT (counted by the server),
    with the file's bytes; one already there (kept by an earlier ingest) is not sent; the
    second push sends no PUT at all."""
    source = tmp_path / "src"
    kept = _corpus(source)
    with _kb(tmp_path / "home") as kb:
        assert kb.ingest([source]).failed == 0
    client = seaweed.client()
    already = kept["readme.txt"]
    client.put_object(Bucket=bucket, Key=f"objects/{object_key(already)}",
                      Body=(source / "readme.txt").read_bytes())
    before = _settled_puts(seaweed, bucket)
    store = f"s3://{bucket}/objects/"

    report = _push(tmp_path / "home", store)
    assert (report.pushed, report.already_stored) == (3, 1)
    assert report.complete
    assert _settled_puts(seaweed, bucket) - before == 3
    for name, sha in kept.items():
        body = client.get_object(Bucket=bucket, Key=f"objects/{object_key(sha)}")["Body"]
        assert body.read() == (source / name).read_bytes()

    again = _push(tmp_path / "home", store)
    assert (again.pushed, again.already_stored) == (0, 4)
    assert _settled_puts(seaweed, bucket) - before == 3


def test_push_reads_s3_items_from_their_bucket_and_reports_a_deleted_object_missing(
        tmp_path: Path, seaweed: SeaweedFS, bucket: str) -> None:
    """Items ingested from s3://bucket/docs/ are downloaded (through the spool, left
    empty) and kept in a folder store with their bytes; an object deleted from the
    bucket since is `missing`, an object rewritten since is `changed`."""
    source = tmp_path / "src"
    kept = _corpus(source)
    client = seaweed.client()
    for name in [*kept, "notes/readme-copy.txt", "blob.bin"]:
        client.put_object(Bucket=bucket, Key=f"docs/{name}",
                          Body=(source / name).read_bytes())
    client.put_object(Bucket=bucket, Key="docs/gone.txt", Body=b"a note soon deleted\n")
    client.put_object(Bucket=bucket, Key="docs/later.txt", Body=b"a note soon rewritten\n")
    with _kb(tmp_path / "home") as kb:
        assert kb.ingest([f"s3://{bucket}/docs/"]).failed == 0
    client.delete_object(Bucket=bucket, Key="docs/gone.txt")
    client.put_object(Bucket=bucket, Key="docs/later.txt", Body=b"rewritten\n")
    store = tmp_path / "store"
    store.mkdir()

    report = _push(tmp_path / "home", store)
    assert (report.pushed, report.missing_source, report.changed) == (4, 1, 1)
    problems = {p.source: p.problem for p in report.problems}
    assert problems == {f"s3://{bucket}/docs/gone.txt": "missing",
                        f"s3://{bucket}/docs/later.txt": "changed"}
    assert sorted(folder_objects(store)) == sorted(set(kept.values()))
    for name, sha in kept.items():
        assert (store / object_key(sha)).read_bytes() == (source / name).read_bytes()
    assert list((tmp_path / "home" / "spool").iterdir()) == []


def _large_text(path: Path, size: int) -> str:
    """A text file of ``size`` bytes; returns its sha256."""
    line = b"the granary ledger counts one more sack of barley today\n"
    with path.open("wb") as out:
        out.write((line * (size // len(line) + 1))[:size])
    return file_sha256(path)


@pytest.mark.slow
def test_a_push_killed_mid_copy_is_completed_correctly_by_the_next(tmp_path: Path) -> None:
    """kill -9 while a large original is copied into the store, after small ones were
    stored: every object there holds its name's bytes; the next push stores the rest,
    rewrites none of those already there, and leaves no temporary file."""
    source = tmp_path / "src"
    source.mkdir()
    small = {}
    for i in range(150):
        path = source / f"{i:03d}.txt"
        path.write_text(f"sack number {i} of rye, weighed at the mill\n")
        small[path.name] = file_sha256(path)
    big = _large_text(source / "zz-big.txt", 250 << 20)
    env = env_for(tmp_path / "home", max_text_chars="5000")
    done = gristmill("ingest", str(source), env=env)  # zz-big.txt fails: still kept
    assert done.returncode == 0, done.stderr
    store = tmp_path / "store"
    store.mkdir()
    env = env_for(tmp_path / "home", store=str(store))

    run = start("store", "push", env=env)
    deadline = time.monotonic() + 120
    while not (folder_objects(store) and any(
            p.stat().st_size > 0 for p in (store / ".incoming").glob("*.part"))):
        assert run.poll() is None, run.communicate()
        assert time.monotonic() < deadline, "the large copy never started"
        time.sleep(0.002)
    os.killpg(run.pid, signal.SIGKILL)
    run.communicate()

    stored = folder_objects(store)
    assert stored and big not in stored
    for sha, path in stored.items():
        assert file_sha256(path) == sha
    stamps = _stamps(store)

    done = gristmill("store", "push", "--json", env=env)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already_stored"] == len(stamps)
    assert report["pushed"] == 151 - len(stamps)
    assert sorted(folder_objects(store)) == sorted({*small.values(), big})
    assert file_sha256(store / object_key(big)) == big
    assert {sha: stamp for sha, stamp in _stamps(store).items() if sha in stamps} == stamps
    assert list((store / ".incoming").iterdir()) == []
