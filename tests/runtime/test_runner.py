"""The runner on its own: a real catalog and index (the suite's backend) and a fake
executor whose attempts the test finishes, fails, times out or kills, one by one.

The runner drives in a thread of its own, with its own database connection; the test
looks at the catalog through another, as a second process would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import pytest
from pebble import ProcessExpired

from backends import open_catalog
from gristmill.catalog import Catalog, CatalogDatabase, FileFacts, lease_owner_token
from gristmill.catalog.jobs import JobSpec, JobStore
from gristmill.chunking import Chunk
from gristmill.config import Settings
from gristmill.index import StoredChunk, make_index
from gristmill.runtime.options import RunOptions
from gristmill.runtime.progress import Progress
from gristmill.runtime.runner import Runner
from gristmill.runtime.worker import RECYCLE_EXIT_CODE, WorkResult

COLLECTION = "docs"
ROOT = "/data"  # never opened: the fake executor reads no file
PATIENCE = 60.0  # seconds any one expected event may take on a loaded machine


# -- the fake executor ---------------------------------------------------------------------


@dataclass
class Attempt:
    """One item handed to the fake executor: the test decides how it ends."""

    source: str
    future: Future[WorkResult]
    executor: FakeExecutor
    submitted_at: float = field(default_factory=time.time)

    def extract(self, *texts: str) -> None:
        """The worker extracted ``texts`` as the item's chunks."""
        chunks = [Chunk(seq, text, f"hash-{self.source}-{seq}", 1, None)
                  for seq, text in enumerate(texts)]
        self.future.set_result(WorkResult("extracted", chunks=chunks, pages=1,
                                          extractor="fake", extractor_version=1))

    def fail(self, reason: str, kind: str) -> None:
        """The extractor refused the item for good."""
        self.future.set_result(WorkResult("failed", error=reason, error_type=kind,
                                          extractor="fake", extractor_version=1))

    def retry(self, reason: str) -> None:
        """The extractor hit a temporary error: worth another try later."""
        self.future.set_result(WorkResult("retry", error=reason, error_type="transient"))

    def die(self, exitcode: int) -> None:
        """The worker process died (pebble fails its future with ProcessExpired)."""
        self.future.set_exception(ProcessExpired("Abnormal termination", code=exitcode))

    def stall(self) -> None:
        """The worker made no progress for item_timeout: the executor killed it."""
        self.executor.stalled.add(self.future)
        self.die(-9)

    def overrun(self) -> None:
        """The attempt ran past pebble's hard timeout."""
        self.future.set_exception(FutureTimeout())


class FakeExecutor:
    """Stands in for LocalExecutor: each ``submit`` hands the test an :class:`Attempt`
    and records how many attempts were outstanding at once."""

    def __init__(self) -> None:
        self.attempts: Queue[Attempt] = Queue()
        self.submitted: list[str] = []
        self.stalled: set[Future[WorkResult]] = set()
        self.shutdowns: list[bool] = []  # the ``kill`` of each shutdown
        self.outstanding = 0
        self.most_outstanding = 0
        self._lock = threading.Lock()

    def submit(self, source: str, members: tuple[str, ...] = (),
               expected: tuple[int, int] | None = None) -> Future[WorkResult]:
        future: Future[WorkResult] = Future()
        with self._lock:
            self.outstanding += 1
            self.most_outstanding = max(self.most_outstanding, self.outstanding)
            self.submitted.append(source)
        future.add_done_callback(self._done)
        self.attempts.put(Attempt(source, future, self))
        return future

    def _done(self, _future: Future[WorkResult]) -> None:
        with self._lock:
            self.outstanding -= 1

    def overdue(self) -> int:
        return 0  # the test kills stalled workers itself (Attempt.stall)

    def timed_out(self, future: Future[WorkResult]) -> bool:
        return future in self.stalled

    def shutdown(self, *, kill: bool = False) -> None:
        self.shutdowns.append(kill)

    def next(self) -> Attempt:
        """The next attempt the runner submits (waiting for it)."""
        try:
            return self.attempts.get(timeout=PATIENCE)
        except Empty:
            raise AssertionError(f"no attempt submitted within {PATIENCE:.0f} s") from None


# -- a catalog with items, a job, and a runner driving it ----------------------------------


class WatchedJobs(JobStore):
    """The real job store, noting when the runner has read a state."""

    def __init__(self, db: CatalogDatabase) -> None:
        super().__init__(db)
        self.seen: dict[str, threading.Event] = {}

    def state(self, job_id: int, run_id: int | None = None) -> str:
        state = super().state(job_id, run_id)
        self.seen.setdefault(state, threading.Event()).set()  # a str Enum: its text finds it
        return state

    def saw(self, state: str) -> threading.Event:
        return self.seen.setdefault(state, threading.Event())


class PoisonedIndex:
    """The real index, except that writing the chunks of ``poisoned`` fails after the
    rows were written (in the caller's transaction)."""

    def __init__(self, index: Any, poisoned: int) -> None:
        self._index = index
        self._poisoned = poisoned

    def __getattr__(self, name: str) -> Any:
        return getattr(self._index, name)

    def replace_chunks(self, txn: Any, item_id: int, collection: str,
                       chunks: Sequence[StoredChunk]) -> None:
        self._index.replace_chunks(txn, item_id, collection, chunks)
        if item_id == self._poisoned:
            raise ValueError("the index refuses this item's rows")


class Bench:
    """Items discovered in a catalog, a running job, and a view from a second connection."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "home" / "gristmill.db"
        self.home = tmp_path / "home"
        self.db = open_catalog(self.path)  # the runner's connection
        self.view = open_catalog(self.path)  # the test's, as another process
        self.catalog = Catalog(self.db)
        self.jobs = WatchedJobs(self.db)
        self.owner = lease_owner_token()
        self.job_id = self.jobs.create(JobSpec(COLLECTION, (ROOT,)), self.owner)
        self.run_id = self.jobs.start_run(self.job_id, self.owner)
        self.executor = FakeExecutor()
        self._threads: list[tuple[Runner, threading.Thread]] = []

    def discover(self, *names: str) -> None:
        batch = [FileFacts(f"{ROOT}/{name}", size=10, mtime_ns=1) for name in names]
        self.catalog.record_discovered(COLLECTION, ROOT, batch, self.run_id,
                                       lambda source: "sha-" + source)

    def runner(self, index: Any = None, **settings: Any) -> Runner:
        options = {"flush_seconds": 0.05, **settings}
        return Runner(Settings.load(home=self.home, embedder="none", **options),
                      self.catalog, index or make_index(self.db), None,
                      RunOptions(self.owner, COLLECTION, (ROOT,), self.job_id, self.run_id),
                      jobs=self.jobs, executor=lambda: self.executor)

    def start(self, runner: Runner) -> Callable[[], Progress]:
        """Run ``runner`` in a thread; returns a call that waits for its progress."""
        outcome: dict[str, Any] = {}

        def drive() -> None:
            try:
                outcome["progress"] = runner.run()
            except BaseException as exc:
                outcome["error"] = exc

        thread = threading.Thread(target=drive, name="runner", daemon=True)
        self._threads.append((runner, thread))
        thread.start()

        def finished() -> Progress:
            thread.join(PATIENCE)
            assert not thread.is_alive(), f"the run did not end within {PATIENCE:.0f} s"
            if "error" in outcome:
                raise outcome["error"]
            return outcome["progress"]  # type: ignore[no-any-return]

        return finished

    def item(self, name: str) -> dict[str, Any]:
        columns = ("id", "status", "error", "error_type", "attempts", "crashes",
                   "not_before", "lease_owner", "chunk_count")
        row = self.view.conn.execute(
            f"SELECT {', '.join(columns)} FROM items WHERE source = ?",
            (f"{ROOT}/{name}",)).fetchone()
        assert row is not None, name
        return dict(zip(columns, row, strict=True))

    def chunks(self, name: str) -> list[str]:
        rows = self.view.conn.execute(
            "SELECT c.text FROM chunks c JOIN items i ON i.id = c.item_id "
            "WHERE i.source = ? ORDER BY c.seq", (f"{ROOT}/{name}",)).fetchall()
        return [row[0] for row in rows]

    def until(self, name: str, status: str) -> dict[str, Any]:
        """The item once it has ``status`` (waiting for the runner to write it)."""
        deadline = time.monotonic() + PATIENCE
        while (found := self.item(name))["status"] != status:
            assert time.monotonic() < deadline, f"{name} still {found['status']}"
            time.sleep(0.02)
        return found

    def close(self) -> None:
        for runner, thread in self._threads:
            runner.stop()
            thread.join(PATIENCE)
        self.view.close()
        self.db.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    made = Bench(tmp_path)
    yield made
    made.close()


def name_of(attempt: Attempt) -> str:
    return attempt.source.rsplit("/", 1)[1]


# -- settling results ---------------------------------------------------------------------


def test_an_extracted_item_gets_its_chunks_and_its_status_together(bench: Bench) -> None:
    """An extracted item ends indexed (keyword-only) with its chunks and count, in order."""
    bench.discover("a.txt")
    finished = bench.start(bench.runner())
    bench.executor.next().extract("first passage", "second passage")
    progress = finished()
    assert bench.item("a.txt")["status"] == "indexed"
    assert bench.item("a.txt")["chunk_count"] == 2
    assert bench.chunks("a.txt") == ["first passage", "second passage"]
    assert (progress.done, progress.chunks, progress.failed) == (1, 2, 0)


def test_an_item_whose_chunks_cannot_be_written_keeps_neither_chunks_nor_status(
        bench: Bench) -> None:
    """Chunks and status commit in one transaction: when an item's chunk rows fail,
    its status change is rolled back with them, and its batch-mates still commit."""
    bench.discover("a.txt", "b.txt", "c.txt")
    poisoned = bench.item("b.txt")["id"]
    # One batch for the three results: written when the run runs out of work.
    runner = bench.runner(PoisonedIndex(make_index(bench.db), poisoned), flush_seconds=60)
    finished = bench.start(runner)
    for _ in range(3):
        attempt = bench.executor.next()
        attempt.extract(f"text of {name_of(attempt)}")
    finished()
    for good in ("a.txt", "c.txt"):
        assert bench.item(good)["status"] == "indexed"
        assert bench.chunks(good) == [f"text of {good}"]
    # Neither the chunks written before the failure nor a status made it; the item is
    # given back (its lease released) for a later run.
    assert bench.chunks("b.txt") == []
    assert bench.item("b.txt")["status"] == "pending"
    assert bench.item("b.txt")["lease_owner"] is None


def test_a_failure_records_its_reason(bench: Bench) -> None:
    """An extractor's refusal and a worker error each leave the item failed with why."""
    bench.discover("locked.pdf", "odd.bin")
    finished = bench.start(bench.runner())
    for _ in range(2):
        attempt = bench.executor.next()
        if name_of(attempt) == "locked.pdf":
            attempt.fail("encrypted PDF: needs a password", "encrypted")
        else:
            attempt.future.set_exception(RuntimeError("result could not be unpickled"))
    progress = finished()
    locked = bench.item("locked.pdf")
    assert (locked["status"], locked["error"], locked["error_type"]) == (
        "failed", "encrypted PDF: needs a password", "encrypted")
    odd = bench.item("odd.bin")
    assert (odd["status"], odd["error_type"]) == ("failed", "worker")
    assert odd["error"] == "worker error: RuntimeError: result could not be unpickled"
    assert progress.failed == 2


# -- crashes, timeouts, retries ---------------------------------------------------------


def test_a_worker_death_counts_a_crash_and_quarantines_at_max_crashes(bench: Bench) -> None:
    """A worker killed under an item puts it back once, counted; the max_crashes-th
    death quarantines it as failed, naming the signal."""
    bench.discover("bomb.pdf")
    finished = bench.start(bench.runner(max_crashes=2))
    bench.executor.next().die(-9)
    again = bench.executor.next()  # the same item, claimed again
    assert name_of(again) == "bomb.pdf"
    assert bench.item("bomb.pdf")["crashes"] == 1
    again.die(-9)
    finished()
    bomb = bench.item("bomb.pdf")
    assert (bomb["status"], bomb["error_type"], bomb["crashes"]) == ("failed", "crash", 2)
    assert bomb["error"] == "quarantined: worker killed by SIGKILL (2 times)"
    assert bench.executor.submitted == [f"{ROOT}/bomb.pdf"] * 2


@pytest.mark.parametrize(("how", "reason"), [
    ("stall", "timed out: no progress for 300 s (item_timeout)"),
    ("overrun", "timed out after 3600 s"),
])
def test_a_timed_out_attempt_counts_as_a_crash(bench: Bench, how: str, reason: str) -> None:
    """An attempt killed for making no progress, or past the hard timeout, is a crash."""
    bench.discover("slow.pdf")
    finished = bench.start(bench.runner(max_crashes=1, item_timeout=300))
    getattr(bench.executor.next(), how)()
    finished()
    slow = bench.item("slow.pdf")
    assert (slow["status"], slow["crashes"]) == ("failed", 1)
    assert slow["error"] == f"quarantined: {reason} (1 times)"


def test_a_worker_retired_over_its_memory_limit_is_not_a_crash(bench: Bench) -> None:
    """A worker that exits to be recycled (RSS limit) hands its item back uncounted."""
    bench.discover("big.pdf")
    finished = bench.start(bench.runner(max_crashes=1))
    bench.executor.next().die(RECYCLE_EXIT_CODE)
    bench.executor.next().extract("the text")
    finished()
    big = bench.item("big.pdf")
    assert (big["status"], big["crashes"], big["attempts"]) == ("indexed", 0, 0)


def test_a_temporary_error_is_retried_after_a_backoff_up_to_max_attempts(
        bench: Bench) -> None:
    """A retryable result puts the item back with a delay it is not claimed before; the
    max_attempts-th gives up and records the last reason."""
    bench.discover("remote.pdf")
    runner = bench.runner(max_attempts=2)
    finished = bench.start(runner)
    first = bench.executor.next()
    retried_at = time.time()
    first.retry("server busy")
    waiting = bench.until("remote.pdf", "pending")
    seen_at = time.time()
    assert waiting["attempts"] == 1 and waiting["error"] == "server busy"
    # The first delay is 2 s, give or take half (jitter), from when the result settled.
    assert retried_at + 1.0 <= waiting["not_before"] <= seen_at + 3.0
    second = bench.executor.next()
    assert second.submitted_at >= waiting["not_before"]
    second.retry("server busy")
    progress = finished()
    remote = bench.item("remote.pdf")
    assert (remote["status"], remote["error_type"], remote["attempts"]) == (
        "failed", "transient", 2)
    assert remote["error"] == "gave up after 2 attempts: server busy"
    assert progress.retried == 1


# -- the window, leases, pause and cancel --------------------------------------------------


def test_never_more_than_window_items_are_in_flight(bench: Bench) -> None:
    """With ten items and a window of three, three attempts are out at once, never more,
    and every item is done."""
    names = [f"{n}.txt" for n in range(10)]
    bench.discover(*names)
    finished = bench.start(bench.runner(window=3))
    held = [bench.executor.next() for _ in range(3)]  # the window, full
    assert bench.executor.outstanding == 3
    done = 0
    while held:
        held.pop(0).extract("text")
        done += 1
        if done + len(held) < len(names):
            held.append(bench.executor.next())
    finished()
    assert bench.executor.most_outstanding == 3
    assert sorted(bench.executor.submitted) == sorted(f"{ROOT}/{n}" for n in names)
    assert all(bench.item(name)["status"] == "indexed" for name in names)


def test_stopping_commits_finished_results_and_releases_the_other_leases(
        bench: Bench) -> None:
    """stop() keeps what finished, kills the workers and gives the in-flight items back
    to pending with no lease, for the next run to take at once."""
    bench.discover("a.txt", "b.txt", "c.txt")
    runner = bench.runner(window=3)
    finished = bench.start(runner)
    attempts = {name_of(attempt): attempt for attempt in
                (bench.executor.next() for _ in range(3))}
    assert all(bench.item(name)["lease_owner"] == bench.owner for name in attempts)
    attempts["a.txt"].extract("text")
    bench.until("a.txt", "indexed")
    runner.stop()
    finished()
    assert runner.outcome == "stopped"
    assert bench.executor.shutdowns == [True]
    for name in ("b.txt", "c.txt"):
        item = bench.item(name)
        assert (item["status"], item["lease_owner"], item["attempts"], item["crashes"]) == (
            "pending", None, 0, 0)


def test_a_pause_finishes_what_is_in_flight_and_claims_nothing_more(bench: Bench) -> None:
    """Paused through the job store, the run lets its in-flight items finish, claims no
    other, and ends `paused` with the rest still pending."""
    names = [f"{n}.txt" for n in range(6)]
    bench.discover(*names)
    runner = bench.runner(window=2)
    finished = bench.start(runner)
    in_flight = [bench.executor.next() for _ in range(2)]
    JobStore(bench.view).pause(bench.job_id)
    assert bench.jobs.saw("paused").wait(PATIENCE), "the runner never read the pause"
    # One finishes while the other is still out: the window has room, left unused.
    in_flight[0].extract("text")
    bench.until(name_of(in_flight[0]), "indexed")
    in_flight[1].extract("text")
    finished()
    assert runner.outcome == "paused"
    assert len(bench.executor.submitted) == 2
    statuses = {name: bench.item(name)["status"] for name in names}
    assert sorted(statuses.values()) == ["indexed"] * 2 + ["pending"] * 4
    assert all(bench.item(name)["lease_owner"] is None for name in names)


def test_a_cancel_stops_at_once_and_gives_the_in_flight_items_back(bench: Bench) -> None:
    """Cancelled through the job store, the run kills its workers without waiting for
    their items, whose leases it releases, and ends `cancelled`."""
    bench.discover("a.txt", "b.txt", "c.txt")
    runner = bench.runner(window=2)
    finished = bench.start(runner)
    in_flight = [bench.executor.next() for _ in range(2)]
    JobStore(bench.view).cancel(bench.job_id)
    finished()  # with both attempts still out
    assert runner.outcome == "cancelled"
    assert bench.executor.shutdowns == [True]
    assert not any(attempt.future.done() for attempt in in_flight)
    for name in ("a.txt", "b.txt", "c.txt"):
        item = bench.item(name)
        assert (item["status"], item["lease_owner"]) == ("pending", None)
