"""`gristmill watch`: saves, editors' renames, deletes and folder moves followed live;
restarts, kill -9 and inotify overflows lose nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from backends import ON_POSTGRES, group_concat, query
from gate import Gate
from gristmill.catalog import DiscoveryCounts
from gristmill.knowledge_base import KnowledgeBase
from gristmill.watching import Watcher, WatchReport
from gristmill.watching.changes import Changes
from process_tools import env_for

# What gristmill.watching.events filters for users; pytest's own filters replace it.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Callback with id .* already exists:RuntimeWarning")

DEADLINE = 60.0  # seconds any expected state may take to appear (a loaded CI machine)


def _eventually(check: Callable[[], Any], what: str, timeout: float = DEADLINE) -> Any:
    """Poll ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _catalog(home: Path) -> dict[str, tuple[str, str]]:
    """``source -> (status, text of its chunks)`` for every item, read as another
    process would (read-only, committed data only)."""
    rows = query(home, f"SELECT i.source, i.status, coalesce({group_concat('c.text')}, '') "
                 f"FROM items i LEFT JOIN chunks c ON c.item_id = i.id GROUP BY i.id",
                 missing_ok=True)
    return {source: (status, text) for source, status, text in rows}


def _settled(home: Path, expected: dict[Path, str]) -> bool:
    """Whether exactly ``expected`` (path -> a word its text must hold) is indexed, and
    nothing is pending or processing."""
    catalog = _catalog(home)
    if any(status in ("pending", "processing") for status, _ in catalog.values()):
        return False
    texts = {source: text for source, (status, text) in catalog.items()
             if status == "indexed"}
    return set(texts) == {str(p) for p in expected} and all(
        word in texts[str(p)] for p, word in expected.items())


@contextmanager
def _watching(home: Path, sources: list[Path], **settings: Any
              ) -> Iterator[tuple[Watcher, dict[str, Any]]]:
    """Run a watch through the library in a thread, with its own knowledge-base handle;
    stop it on exit. The dict receives ``report`` (or ``error``) when it ends."""
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    settings.setdefault("watch_debounce", 0.2)
    kb = KnowledgeBase.open(home, **settings)
    watcher = Watcher(kb, sources)
    ended: dict[str, Any] = {}

    def run() -> None:
        try:
            ended["report"] = watcher.run()
        except BaseException as exc:
            ended["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        _eventually(lambda: watcher.ready.is_set() or ended, "the watch to catch up")
        assert "error" not in ended, ended.get("error")
        yield watcher, ended
    finally:
        watcher.stop()
        thread.join(timeout=60)
        kb.close()
    assert not thread.is_alive(), "the watch did not stop"
    if "error" in ended:
        raise ended["error"]


def _search(home: Path, query: str, mode: str = "keyword") -> list[str]:
    with KnowledgeBase.open(home, embedder="none" if mode == "keyword" else "minilm") as kb:
        return [hit.source for hit in kb.search(query, mode=mode, k=50)]  # type: ignore[arg-type]


# -- the coalescing of events (a fake clock) ------------------------------------------


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_of_events_on_one_path_becomes_one_change_once_quiet() -> None:
    """Marks coalesce per path and come due ``debounce`` after the path's last event."""
    clock = _Clock()
    changes = Changes(debounce=0.5, max_delay=10, capacity=100, clock=clock)
    for _ in range(50):
        changes.mark("/w/a.txt")
        clock.now += 0.1
    changes.mark("/w/b.txt")
    assert not changes.take(10)  # b is fresh; a's last event was 0.1 s ago
    clock.now += 0.45
    due = changes.take(10)
    assert due.files == ["/w/a.txt"] and not due.trees and not due.rescan
    clock.now += 0.1
    assert changes.take(10).files == ["/w/b.txt"]
    assert len(changes) == 0


def test_a_path_written_without_pause_is_still_settled_every_max_delay() -> None:
    """A file appended to forever comes due ``max_delay`` after its burst began."""
    clock = _Clock()
    changes = Changes(debounce=0.5, max_delay=3, capacity=100, clock=clock)
    taken = []
    for _ in range(100):  # an event every 0.2 s for 20 s
        changes.mark("/w/log.txt")
        clock.now += 0.2
        taken += changes.take(10).files
    assert 5 <= len(taken) <= 8  # about one every 3 s


def test_too_many_marked_paths_turn_into_one_rescan() -> None:
    """Past ``capacity`` distinct paths the marks are dropped and a rescan asked for:
    memory stays bounded however many files change."""
    clock = _Clock()
    changes = Changes(debounce=0.5, max_delay=10, capacity=100, clock=clock)
    for i in range(150):
        changes.mark(f"/w/{i}.txt")
    changes.mark("/w/sub", tree=True)
    clock.now += 1
    due = changes.take(1000)
    assert due.rescan and changes.overflows == 1
    assert len(due.files) == 49 and due.trees == ["/w/sub"]  # marked after the overflow
    assert not changes.take(1000)


# -- live changes, through the library ------------------------------------------------


def test_saves_bursts_and_editor_renames_index_the_last_version_once(tmp_path: Path) -> None:
    """New files are indexed; twenty quick saves of one file become one change whose
    last content alone is searchable; atomic temp-file-and-rename saves land on the
    target; editors' temporary files never become items."""
    src, home = tmp_path / "src", tmp_path / "home"
    notes = _write(src / "notes.txt", "zfirstdraft of the notes")
    with _watching(home, [src], watch_debounce=1.0) as (watcher, _):
        _eventually(lambda: _settled(home, {notes: "zfirstdraft"}), "the catch-up")
        plan = _write(src / "plan.md", "# Plan\n\nzplanword appears here")
        _eventually(lambda: _settled(home, {notes: "zfirstdraft", plan: "zplanword"}),
                    "a new file to be indexed")
        before = watcher.applied.changed
        for n in range(20):  # one editor, twenty saves in a few milliseconds
            _write(notes, f"zversion{n} of the notes")
        _eventually(lambda: _settled(home, {notes: "zversion19", plan: "zplanword"}),
                    "the last save to be indexed")
        assert watcher.applied.changed - before == 1, "the burst was not coalesced"
        assert _search(home, "zversion19") == [str(notes)]
        for n in range(19):
            assert _search(home, f"zversion{n}") == [], f"version {n} still searchable"
        assert _search(home, "zfirstdraft") == []

        # Atomic writers: a temporary name (ignored by pattern, or renamed away before
        # it was ever quiet), then a rename over the target.
        for temp in (src / ".plan.md.tmp", src / "sedX4fQ2a", src / "plan.md~"):
            _write(temp, f"# Plan\n\nzrenamed{temp.name[:3]} text")
            os.replace(temp, src / "plan.md")
        _write(src / ".#notes.txt", "an emacs lock")  # and ones that stay
        _write(src / "notes.txt.swp", "a vim swap file")
        _eventually(lambda: _settled(home, {notes: "zversion19", plan: "zrenamedpla"}),
                    "the renamed save to be indexed")
        assert _search(home, "zrenamedpla") == [str(src / "plan.md")]
        assert _search(home, "zrenamedsed") == []


def test_saves_landing_while_the_file_is_extracted_keep_the_last_one(tmp_path: Path) -> None:
    """A save that lands while the previous version is being extracted (the watch
    records it before the first result is written) wins: each file ends with its last
    text, never the one extracted first."""
    src, home, log = tmp_path / "src", tmp_path / "home", tmp_path / "watch.log"
    src.mkdir()
    files = [src / f"f{i}.txt" for i in range(6)]
    gate = Gate(tmp_path / "gate")
    proc = _start_watch(home, src, log, gate)
    try:
        _eventually(lambda: _caught_up(log), "the catch-up")
        for round_ in range(3):
            gate.close()
            for path in files:
                _write(path, f"zfirst{round_}{path.stem} text")
            # Both workers hold a first version, mid-extraction, at the gate.
            _eventually(lambda: sum(_catalog(home).get(str(p), ("",))[0] == "processing"
                                    for p in files) >= 2, "the first versions in flight")
            for path in files:  # while they are being extracted
                _write(path, f"zsecond{round_}{path.stem} text")
            _eventually(lambda: _recorded(home, files), "the second saves to be recorded")
            gate.open()
            _eventually(lambda round_=round_: _settled(
                home, {p: f"zsecond{round_}{p.stem}" for p in files}), "the last saves")
    finally:
        gate.open()
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def _recorded(home: Path, files: list[Path]) -> bool:
    """Whether the catalog holds each file's size and mtime as they are now."""
    rows = {source: (size, mtime) for source, size, mtime in
            query(home, "SELECT source, size, mtime_ns FROM items", missing_ok=True)}
    return all(rows.get(str(p)) == (p.stat().st_size, p.stat().st_mtime_ns) for p in files)


def test_a_deleted_file_loses_its_item_and_its_chunks(tmp_path: Path) -> None:
    """Deleting a file removes it from the catalog and from search, chunks and all."""
    src, home = tmp_path / "src", tmp_path / "home"
    keep = _write(src / "keep.txt", "zkeepword stays")
    gone = _write(src / "gone.txt", "zgoneword goes away")
    with _watching(home, [src]):
        _eventually(lambda: _settled(home, {keep: "zkeepword", gone: "zgoneword"}),
                    "the catch-up")
        assert _search(home, "zgoneword") == [str(gone)]
        gone.unlink()
        _eventually(lambda: _settled(home, {keep: "zkeepword"}), "the delete")
        assert _search(home, "zgoneword") == []
        assert query(home, "SELECT count(*) FROM chunks")[0][0] == 1
        if not ON_POSTGRES:  # FTS5 rows are deleted by trigger; tsvector is in the row
            assert query(home, "SELECT count(*) FROM chunks_fts WHERE chunks_fts "
                         "MATCH 'zgoneword'")[0][0] == 0


def test_moving_and_deleting_folders_is_honoured_for_everything_under_them(
        tmp_path: Path) -> None:
    """A folder moved inside the watch moves its items; one moved out of it, or
    deleted, takes its items along; one moved in brings its files."""
    src, home, outside = tmp_path / "src", tmp_path / "home", tmp_path / "outside"
    files = {_write(src / "a" / "deep" / f"f{i}.txt", f"zfile{i} text"): f"zfile{i}"
             for i in range(5)}
    top = _write(src / "top.txt", "ztopword")
    with _watching(home, [src]):
        _eventually(lambda: _settled(home, {**files, top: "ztopword"}), "the catch-up")
        os.rename(src / "a", src / "b")
        moved = {Path(str(p).replace(f"{src}/a/", f"{src}/b/")): w for p, w in files.items()}
        _eventually(lambda: _settled(home, {**moved, top: "ztopword"}), "the folder move")
        assert _search(home, "zfile3") == [str(src / "b" / "deep" / "f3.txt")]

        outside.mkdir()
        os.rename(src / "b" / "deep", outside / "deep")  # out of the watch: a delete
        _eventually(lambda: _settled(home, {top: "ztopword"}), "the move out")
        assert _search(home, "zfile3") == []

        os.rename(outside / "deep", src / "back")  # and in again
        back = {src / "back" / p.name: w for p, w in files.items()}
        _eventually(lambda: _settled(home, {**back, top: "ztopword"}), "the move in")

        subprocess.run(["rm", "-rf", str(src / "back")], check=True)
        _eventually(lambda: _settled(home, {top: "ztopword"}), "the folder delete")


def test_changes_made_while_no_watch_ran_are_caught_up_at_start(tmp_path: Path) -> None:
    """A watch starts with a walk of its folders: files created, changed or deleted
    while it was stopped are found; its job is listed, and ends succeeded."""
    src, home = tmp_path / "src", tmp_path / "home"
    a = _write(src / "a.txt", "zalpha one")
    b = _write(src / "b.txt", "zbravo one")
    with _watching(home, [src]) as (_, ended):
        _eventually(lambda: _settled(home, {a: "zalpha", b: "zbravo"}), "the first watch")
        with KnowledgeBase.open(home, embedder="none") as kb:
            jobs = kb.jobs.recent()
            assert [(j.state, j.spec.sources) for j in jobs] == [("running", (str(src),))]
    report: WatchReport = ended["report"]
    assert report.state == "succeeded"

    b.unlink()
    c = _write(src / "sub" / "c.txt", "zcharlie new")
    time.sleep(0.01)
    _write(a, "zalpha two")
    with _watching(home, [src]) as (watcher, _):
        _eventually(lambda: _settled(home, {a: "zalpha two", c: "zcharlie"}),
                    "the catch-up")
        counts = watcher.caught_up
        assert (counts.new, counts.changed, counts.removed) == (1, 1, 1)


def test_a_single_file_can_be_watched_through_editor_replacements(tmp_path: Path) -> None:
    """A watched file replaced the way vim does it (renamed to a backup, written anew)
    is re-indexed, and its moment of absence does not stop the watch; its neighbours
    are not indexed."""
    home, folder = tmp_path / "home", tmp_path / "docs"
    target = _write(folder / "todo.txt", "ztodoone")
    _write(folder / "other.txt", "zotherword")
    with _watching(home, [target]) as (watcher, ended):
        _eventually(lambda: _settled(home, {target: "ztodoone"}), "the catch-up")
        looked = threading.Event()  # set when the watch checks its roots, target absent
        check_roots = watcher._check_roots

        def spy() -> None:
            if not target.exists():
                looked.set()
            check_roots()

        watcher._check_roots = spy  # type: ignore[method-assign]
        for n in range(3):
            looked.clear()
            os.rename(target, folder / "todo.txt~")
            # The watch has dropped the item and looked at its roots while it was gone.
            _eventually(lambda: looked.is_set() and _settled(home, {}),
                        "the watch to see the file gone")
            _write(target, f"ztodo{n}x")
            (folder / "todo.txt~").unlink()
            _eventually(lambda n=n: _settled(home, {target: f"ztodo{n}x"}), "the replacement")
        assert not ended, ended


def test_a_watch_job_obeys_cancel(tmp_path: Path) -> None:
    """`gristmill jobs cancel` ends a watch: it returns, its job is cancelled."""
    src, home = tmp_path / "src", tmp_path / "home"
    _write(src / "a.txt", "zalpha")
    with _watching(home, [src]) as (_, ended):
        with KnowledgeBase.open(home, embedder="none") as kb:
            job_id = kb.jobs.recent()[0].id
            kb.jobs.cancel(job_id)
        _eventually(lambda: ended, "the watch to end")
        assert ended["report"].state == "cancelled"


def test_resaving_the_newest_file_gets_vectors_with_the_default_embedder(
        tmp_path: Path) -> None:
    """With MiniLM, a file saved again (its new chunks reuse the ids of the old ones)
    still ends indexed with vectors, and vector search finds its last text."""
    src, home = tmp_path / "src", tmp_path / "home"
    first = _write(src / "first.txt", "Herons wade in shallow water.")
    with _watching(home, [src], embedder="minilm"):
        _eventually(lambda: _settled(home, {first: "Herons"}), "the catch-up")
        _write(first, "Kingfishers dive for small fish from branches over rivers.")
        _eventually(lambda: _settled(home, {first: "Kingfishers"}), "the re-save")
        unembedded = query(home, "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 "
                           "FROM embeddings e WHERE e.text_hash = c.text_hash)")[0][0]
        assert unembedded == 0
        assert _search(home, "a bird catching fish", mode="vector")[:1] == [str(first)]


# -- the command, as a service ----------------------------------------------------------


def _start_watch(home: Path, src: Path, log: Path, gate: Gate | None = None,
                 **settings: str) -> subprocess.Popen[bytes]:
    env = env_for(home, watch_debounce="0.2", workers="2", **settings)
    if gate is not None:
        env = gate.env(env)
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "gristmill", "watch", str(src)],
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def _caught_up(log: Path, times: int = 1) -> bool:
    return log.exists() and log.read_text(errors="replace").count("Caught up") >= times


@pytest.mark.slow
def test_kill_9_then_restart_loses_no_save(tmp_path: Path) -> None:
    """SIGKILL of the watcher's whole process group in the middle of a stream of saves,
    files held mid-extraction, then more changes while it is down: the restarted watch
    ends with every file's last content indexed, deleted files gone, no lease left;
    SIGTERM then exits 0."""
    src, home, log = tmp_path / "src", tmp_path / "home", tmp_path / "watch.log"
    for i in range(20):
        _write(src / f"f{i:02d}.txt", f"zstart{i} text")
    gate = Gate(tmp_path / "gate")
    gate.open()
    proc = _start_watch(home, src, log, gate)
    try:
        _eventually(lambda: _caught_up(log), "the catch-up")
        expected = {src / f"f{i:02d}.txt": f"zstart{i}" for i in range(20)}
        _eventually(lambda: _settled(home, expected), "the first files")
        gate.close()
        for round_ in range(30):  # saves keep coming while the watcher is killed
            for i in range(0, 20, 3):
                _write(src / f"f{i:02d}.txt", f"zround{round_}x{i} text")
            _write(src / "new" / f"n{round_:02d}.txt", f"znew{round_} text")
            if round_ == 15:
                # Killed with saves claimed and held mid-extraction at the gate.
                _eventually(lambda: any(status == "processing"
                                        for status, _ in _catalog(home).values()),
                            "saves to be in flight")
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    for i in (1, 2):  # deleted while no watch runs
        (src / f"f{i:02d}.txt").unlink()
    expected = {src / f"f{i:02d}.txt": (f"zround29x{i}" if i % 3 == 0 else f"zstart{i}")
                for i in range(20) if i not in (1, 2)}
    expected |= {src / "new" / f"n{r:02d}.txt": f"znew{r}" for r in range(30)}

    gate.open()
    proc = _start_watch(home, src, log, gate)
    try:
        _eventually(lambda: _settled(home, expected), "the restart to catch up")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _settled(home, expected)
    with KnowledgeBase.open(home, embedder="none") as kb:
        states = [job.state for job in kb.jobs.recent()]
    assert states == ["succeeded", "interrupted"]


@pytest.mark.slow
def test_a_lost_inotify_queue_falls_back_to_a_rescan(tmp_path: Path) -> None:
    """When the kernel's inotify queue overflows (the watcher was frozen while 40,000
    events happened), the watch rescans its folders: a file deleted and one created
    after the overflow, whose events were dropped, are still handled."""
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 50_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too high to overflow cheaply")
    src, home, log = tmp_path / "src", tmp_path / "home", tmp_path / "watch.log"
    a, b = _write(src / "a.txt", "zalpha"), _write(src / "b.txt", "zbravo")
    doomed = _write(src / "doomed.txt", "zdoomed")
    proc = _start_watch(home, src, log)
    try:
        _eventually(lambda: _caught_up(log), "the catch-up")
        _eventually(lambda: _settled(home, {a: "zalpha", b: "zbravo", doomed: "zdoomed"}),
                    "the first files")
        os.killpg(proc.pid, signal.SIGSTOP)
        try:
            # Alternating files: no two consecutive events are alike, so the kernel
            # cannot merge them, and the queue overflows.
            for n in range(limit // 4 + 1000):
                for path in (a, b):
                    with open(path, "w") as fh:
                        fh.write(f"zalpha{n}" if path == a else f"zbravo{n}")
            doomed.unlink()  # these two events are dropped with the overflow
            late = _write(src / "late.txt", "zlate")
        finally:
            os.killpg(proc.pid, signal.SIGCONT)
        last = limit // 4 + 999
        _eventually(lambda: _settled(home, {a: f"zalpha{last}", b: f"zbravo{last}",
                                            late: "zlate"}), "the rescan")
        assert "events were lost" in log.read_text()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)


def test_the_cli_rejects_a_missing_folder_and_a_bad_debounce(tmp_path: Path) -> None:
    """`watch` of a folder that does not exist exits 1; a bad --debounce exits 2."""
    env = env_for(tmp_path / "home")
    run = [sys.executable, "-m", "gristmill", "watch"]
    missing = subprocess.run([*run, str(tmp_path / "nope")], env=env, capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 1 and "does not exist" in missing.stderr
    bad = subprocess.run([*run, str(tmp_path), "--debounce", "0"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "watch_debounce" in bad.stderr


def test_counts_are_reported_per_kind_of_change(tmp_path: Path) -> None:
    """``on_change`` hears the catch-up first, then each batch of settled events."""
    src, home = tmp_path / "src", tmp_path / "home"
    _write(src / "a.txt", "zalpha")
    heard: list[tuple[str, DiscoveryCounts]] = []
    with KnowledgeBase.open(home, embedder="none", workers=1, watch_debounce=0.2) as kb:
        watcher = Watcher(kb, [src], on_change=lambda kind, c: heard.append((kind, c)))
        thread = threading.Thread(target=watcher.run, daemon=True)
        thread.start()
        try:
            _eventually(watcher.ready.is_set, "the catch-up")
            _write(src / "b.txt", "zbravo")
            _eventually(lambda: any(kind == "changes" for kind, _ in heard), "a change")
        finally:
            watcher.stop()
            thread.join(timeout=60)
    assert heard[0][0] == "caught-up" and heard[0][1].new == 1
    assert sum(c.new for kind, c in heard if kind == "changes") == 1
