"""`gristmill ingest gdrive://...` against the suite's fake Drive server (there is no
Drive emulator): items named by URL, Docs exported, nothing downloaded twice, and the
changes feed applied on later runs (modified re-read, trashed and deleted removed)."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gdrive_fake import DOCX, FakeDrive

from backends import query
from docs import make_docx
from gristmill.errors import SourceError
from gristmill.knowledge_base import KnowledgeBase
from process_tools import env_for, gristmill, gristmill_json, start


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    with FakeDrive() as fake:
        yield fake


def _credentials(tmp_path: Path) -> Path:
    path = tmp_path / "google-user.json"
    path.write_text(json.dumps({"type": "authorized_user", "client_id": "c",
                                "client_secret": "s", "refresh_token": "refresh-1"}))
    return path


def _settings(tmp_path: Path, drive: FakeDrive) -> dict[str, Any]:
    """The settings that point gristmill's Drive client at the fake."""
    return {"gdrive_credentials_file": _credentials(tmp_path),
            "gdrive_api_endpoint": drive.endpoint, "gdrive_token_uri": drive.token_uri,
            "gdrive_retry_backoff": 0.01}


def _kb(tmp_path: Path, drive: FakeDrive, **extra: Any) -> KnowledgeBase:
    return KnowledgeBase.open(tmp_path / "home", embedder="none", workers=2,
                              **_settings(tmp_path, drive), **extra)


def _downloads(drive: FakeDrive) -> list[str]:
    """The files whose bytes were fetched (downloads and exports), in order."""
    return [seen.path.split("/")[4] for seen in drive.seen
            if seen.params.get("alt") == "media" or seen.path.endswith("/export")]


def _items(tmp_path: Path) -> dict[str, str]:
    rows = query(tmp_path / "home", "SELECT source, status FROM items "
                 "WHERE parent_id IS NULL")
    return {str(source): str(status) for source, status in rows}


def _team_folder(tmp_path: Path, drive: FakeDrive) -> dict[str, str]:
    """A folder with a text file, a subfolder's file and a Google Doc; a file beside it."""
    folder = drive.folder("Team")
    sub = drive.folder("Mill notes", folder)
    make_docx(tmp_path / "plan.docx", ["The miller plans a new granary for the rye harvest."])
    return {
        "folder": folder,
        "ledger": drive.file("ledger.txt", b"The ledger lists every sack of barley.\n",
                             folder),
        "wheel": drive.file("wheel.txt", b"A note about the water wheel.\n", sub),
        "plan": drive.google_file("Plan", {DOCX: (tmp_path / "plan.docx").read_bytes()},
                                  folder),
        "outside": drive.file("outside.txt", b"barley outside the folder\n"),
    }


def test_ingest_names_items_by_url_and_indexes_exported_docs(tmp_path: Path,
                                                             drive: FakeDrive) -> None:
    """Every file under the folder becomes an item named gdrive://<id>/<path>, a Google
    Doc is exported as DOCX and searchable, and nothing outside the folder is read."""
    ids = _team_folder(tmp_path, drive)
    with _kb(tmp_path, drive) as kb:
        report = kb.ingest([f"gdrive://{ids['folder']}/"])
        assert report.failed == 0
        assert _items(tmp_path) == {
            f"gdrive://{ids['ledger']}/ledger.txt": "indexed",
            f"gdrive://{ids['wheel']}/Mill%20notes/wheel.txt": "indexed",
            f"gdrive://{ids['plan']}/Plan.docx": "indexed",
        }
        hits = kb.search("granary rye")
        assert hits and hits[0].source == f"gdrive://{ids['plan']}/Plan.docx"
        assert [h.source for h in kb.search("barley")] == \
            [f"gdrive://{ids['ledger']}/ledger.txt"]
    assert sorted(_downloads(drive)) == sorted([ids["ledger"], ids["wheel"], ids["plan"]])


@pytest.mark.parametrize("page_size", [1000, 1])
def test_later_runs_read_only_what_the_changes_feed_reports(tmp_path: Path, drive: FakeDrive,
                                                           page_size: int) -> None:
    """A re-run with nothing changed downloads nothing and lists nothing (the changes
    feed, from the token the first run saved); an edited file is re-read, a renamed one
    renamed, a trashed and a deleted one lose their items and chunks (also when the
    listing and the feed come a file a page)."""
    ids = _team_folder(tmp_path, drive)
    extra = drive.file("extra.txt", b"An extra note on millstones.\n", ids["folder"])
    root = f"gdrive://{ids['folder']}"
    with _kb(tmp_path, drive, gdrive_page_size=page_size) as kb:
        kb.ingest([root])
        fetched = len(_downloads(drive))
        listings = len(drive.calls("files"))

        again = kb.ingest([root])
        assert again.discovered.new == again.discovered.changed == 0
        assert len(_downloads(drive)) == fetched  # nothing downloaded again
        assert len(drive.calls("files")) == listings  # nor the tree listed again
        assert drive.calls("changes")  # the feed was read instead

        drive.update(ids["ledger"], b"The ledger now counts oats, not the old grain.\n")
        drive.update(ids["wheel"], name="waterwheel.txt")
        drive.trash(ids["plan"])
        drive.delete(extra)
        drive.file("barn.txt", b"A new barn for the oats.\n", ids["folder"])
        changed = kb.ingest([root])
        assert changed.failed == 0
        items = _items(tmp_path)
        assert set(items) == {f"gdrive://{ids['ledger']}/ledger.txt",
                              f"gdrive://{ids['wheel']}/Mill%20notes/waterwheel.txt",
                              next(s for s in items if s.endswith("/barn.txt"))}
        assert set(items.values()) == {"indexed"}
        assert [h.source for h in kb.search("oats grain")][:1] == \
            [f"gdrive://{ids['ledger']}/ledger.txt"]
        assert not kb.search("barley") and not kb.search("granary")
        assert not kb.search("millstones")
    # The edit, the renamed file (its item is new) and the new file: nothing else.
    assert len(_downloads(drive)) == fetched + 3


def test_a_folder_moved_out_of_the_root_is_noticed(tmp_path: Path, drive: FakeDrive) -> None:
    """A subfolder moved out of the root takes its files' items with it: the feed does
    not name the files it held, so the run lists the tree again."""
    ids = _team_folder(tmp_path, drive)
    sub = drive.files[ids["wheel"]]["parents"][0]
    root = f"gdrive://{ids['folder']}"
    with _kb(tmp_path, drive) as kb:
        kb.ingest([root])
        drive.update(sub, parent=drive.root)
        kb.ingest([root])
        assert f"gdrive://{ids['wheel']}/Mill%20notes/wheel.txt" not in _items(tmp_path)
        assert not kb.search("water wheel")
        assert len(_items(tmp_path)) == 2


def test_the_cli_ingests_a_drive_folder(tmp_path: Path, drive: FakeDrive) -> None:
    """`gristmill ingest gdrive://<folderId>` with the Drive settings from the
    environment; search results name the gdrive:// item."""
    ids = _team_folder(tmp_path, drive)
    env = env_for(tmp_path / "home", **{name: str(value) for name, value
                                        in _settings(tmp_path, drive).items()})
    done = gristmill("ingest", f"gdrive://{ids['folder']}", env=env)
    assert done.returncode == 0, done.stderr
    found = gristmill("search", "granary", "--json", env=env)
    assert found.returncode == 0, found.stderr
    assert [hit["source"] for hit in json.loads(found.stdout)] == \
        [f"gdrive://{ids['plan']}/Plan.docx"]


def test_patterns_see_drive_paths_and_keep_what_they_leave_out(tmp_path: Path,
                                                               drive: FakeDrive) -> None:
    """Include/exclude patterns match the path under the root as Drive names it; items a
    new pattern leaves out are kept, as for a folder, not taken for deleted."""
    ids = _team_folder(tmp_path, drive)
    root = f"gdrive://{ids['folder']}"
    with _kb(tmp_path, drive) as kb:
        kb.ingest([root])
        report = kb.ingest([root], exclude=["Mill notes/*"])
        assert report.discovered.removed == 0
        assert f"gdrive://{ids['wheel']}/Mill%20notes/wheel.txt" in _items(tmp_path)
        drive.trash(ids["wheel"])
        kb.ingest([root], include=["Mill notes/*"])
        assert f"gdrive://{ids['wheel']}/Mill%20notes/wheel.txt" not in _items(tmp_path)
        assert len(_items(tmp_path)) == 2


def _saved_token(tmp_path: Path, root: str) -> str:
    return _head(tmp_path / "home", root)


def _head(home: Path, root: str) -> str:
    """The changes feed's page token the knowledge base at ``home`` saved for ``root``."""
    rows = query(home, "SELECT head FROM source_heads WHERE root = ?", (root,))
    return str(rows[0][0])


def test_the_page_token_advances_a_committed_page_at_a_time(tmp_path: Path,
                                                            drive: FakeDrive) -> None:
    """A run whose changes feed fails midway keeps the pages it committed (their token
    is saved) and the next run goes on from there, missing nothing."""
    ids = _team_folder(tmp_path, drive)
    root = f"gdrive://{ids['folder']}"
    with _kb(tmp_path, drive, gdrive_page_size=1, gdrive_max_retries=0) as kb:
        kb.ingest([root])
        first = _saved_token(tmp_path, root)
        drive.update(ids["ledger"], b"The ledger now counts oats.\n")
        drive.update(ids["wheel"], b"The wheel turns the rye millstone.\n")
        feed_calls: list[str] = []

        def second_feed_page(seen: Any) -> bool:
            if seen.path.endswith("/changes"):
                feed_calls.append(seen.params.get("pageToken", ""))
            return len(feed_calls) == 2

        drive.fail(500, when=second_feed_page)
        with pytest.raises(SourceError):
            kb.ingest([root])
        assert first != _saved_token(tmp_path, root) == feed_calls[1]

        report = kb.ingest([root])
        assert report.failed == 0
        # The failed read, then this run's: it went on from the saved token.
        assert len(drive.calls("changes", pageToken=feed_calls[1])) == 2
        assert [h.source for h in kb.search("oats")] == [f"gdrive://{ids['ledger']}/ledger.txt"]
        assert [h.source for h in kb.search("rye millstone")][:1] == \
            [f"gdrive://{ids['wheel']}/Mill%20notes/wheel.txt"]


def _feed_requests(drive: FakeDrive) -> int:
    return len(drive.calls("changes"))


def _killed_mid_feed(args: list[str], env: dict[str, str], home: Path, root: str,
                     drive: FakeDrive, *, pages: int, seed: int) -> str:
    """Run ``gristmill ARGS`` and kill it -9 (its whole process group) while it waits for
    the changes feed's page after its first ``pages`` pages, whose tokens it saved; the
    token it had saved."""
    before = _feed_requests(drive)
    release = drive.hold(lambda seen: seen.path.endswith("/changes")
                         and _feed_requests(drive) == before + pages + 1)
    proc = start(*args, env=env)
    try:
        deadline = time.monotonic() + 120
        while _feed_requests(drive) < before + pages + 1:
            if proc.poll() is not None:
                out, err = proc.communicate()
                raise AssertionError(f"the run ended before it was killed (exit "
                                     f"{proc.returncode})\n{out}\n{err}")
            assert time.monotonic() < deadline, "the run never asked for the held page"
            time.sleep(0.02)
        held = drive.calls("changes")[before + pages].params["pageToken"]
        # The page before the held one was committed, then its token saved, then the
        # held one asked for: the token is there before the request is.
        assert _head(home, root) == held
        # Let the workers get on with the changes already committed, then kill: where the
        # kill lands among their downloads, extractions and commits varies, and must not
        # matter.
        time.sleep(random.Random(seed).uniform(0.0, 0.5))
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers
        proc.communicate()
    finally:
        release.set()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    return held


@pytest.mark.slow
def test_kill_9_mid_changes_feed_then_resume_ends_as_an_uninterrupted_run(
        tmp_path: Path, drive: FakeDrive) -> None:
    """`gristmill ingest gdrive://` killed -9 twice while it reads the changes feed a page
    at a time, after it saved some pages' tokens and before the feed's end, then run
    again, leaves the same items, chunks and search results as an uninterrupted run,
    nothing twice, and the feed's last token saved."""
    ids = _team_folder(tmp_path, drive)
    sacks = [drive.file(f"sack-{i}.txt", f"Sack {i} holds {grain} from the lower field.\n"
                        .encode(), ids["folder"])
             for i, grain in enumerate(["barley", "rye", "oats", "spelt", "millet", "emmer"])]
    root = f"gdrive://{ids['folder']}"
    settings = {name: str(value) for name, value in _settings(tmp_path, drive).items()}
    settings.update(gdrive_page_size="1", workers="2", flush_seconds="0.3")
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    envs = {home: env_for(home, **settings) for home in (ref, crash)}
    for env in envs.values():  # both list the tree and save the same start token
        done = gristmill("ingest", root, env=env)
        assert done.returncode == 0, done.stderr
    first = _head(crash, root)
    assert first == _head(ref, root)

    # Eleven changes, a page each: edits, a rename, a trash, a deletion, new files.
    for i, sack in enumerate(sacks[:4]):
        drive.update(sack, f"Sack {i} now holds wheat for the winter bread.\n".encode())
    drive.update(ids["wheel"], name="waterwheel.txt")
    drive.trash(ids["plan"])
    drive.delete(sacks[4])
    for name in ("barn.txt", "loft.txt", "kiln.txt"):
        drive.file(name, f"The {name[:-4]} keeps the malt dry.\n".encode(), ids["folder"])
    drive.update(ids["ledger"], b"The ledger counts the malt in the kiln.\n")

    done = gristmill("ingest", root, env=envs[ref])
    assert done.returncode == 0, done.stderr

    read = len(drive.calls("changes"))
    held = [_killed_mid_feed(["ingest", root], envs[crash], crash, root, drive,
                             pages=2, seed=seed) for seed in range(2)]
    # Each killed run went on from where the last one stopped, and got further.
    assert first != held[0] != held[1]
    tokens = [seen.params["pageToken"] for seen in drive.calls("changes")[read:]]
    assert tokens.count(held[0]) == 2  # held, then gone on from
    done = gristmill("ingest", root, env=envs[crash])
    assert done.returncode == 0, done.stderr

    def state(home: Path) -> tuple[object, ...]:
        return (sorted(query(home, "SELECT source, status, sha256, chunk_count FROM items")),
                sorted(query(home, "SELECT i.source, c.seq, c.text FROM chunks c "
                                   "JOIN items i ON i.id = c.item_id")))

    assert state(crash) == state(ref)
    items, chunks = state(ref)
    assert len(items) == 10 and {row[1] for row in items} == {"indexed"}
    assert len(chunks) == len({(source, seq) for source, seq, _ in chunks})  # none twice
    for words in ("wheat winter bread", "malt kiln", "water wheel", "emmer"):
        # Ids differ (what a killed run had written was written again), and so may the
        # order of equal scores; the hits do not.
        found = [sorted((hit["source"], hit["text"]) for hit in
                        gristmill_json("search", words, env=envs[home]))
                 for home in (ref, crash)]
        assert found[0] == found[1] != [], words
    for words in ("granary", "millet", "barley"):  # trashed, deleted, edited away
        assert gristmill_json("search", words, env=envs[crash]) == [], words
    assert _head(crash, root) == _head(ref, root) == drive.start_page_token
