"""The write-behind batcher: few transactions, bad rows isolated, busy stores retried."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

import gristmill.batching.policy as policy
from gristmill.batching import Batcher
from gristmill.errors import StoreBusy


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class FakeStore:
    """A write callable that records each committed batch and rejects poisoned ops."""

    def __init__(self, poisoned: set[str] | None = None, busy_times: int = 0) -> None:
        self.poisoned = poisoned or set()
        self.busy_times = busy_times
        self.calls = 0
        self.batches: list[list[str]] = []

    def __call__(self, ops: Sequence[str]) -> None:
        self.calls += 1
        if self.busy_times:
            self.busy_times -= 1
            raise StoreBusy("database is locked")
        bad = self.poisoned.intersection(ops)
        if bad:
            raise ValueError(f"bad row {sorted(bad)[0]}")
        self.batches.append(list(ops))

    @property
    def written(self) -> list[str]:
        return [op for batch in self.batches for op in batch]


class DeadLetters(list[tuple[str, Exception]]):
    """Collects what the batcher hands to on_dead."""

    def __call__(self, op: str, exc: Exception) -> None:
        self.append((op, exc))


@pytest.fixture(autouse=True)
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the busy-retry backoff instant so tests stay fast."""
    monkeypatch.setattr(policy, "_BUSY_BASE_DELAY", 0.0)


def make(store: FakeStore, dead: DeadLetters | None = None, **kwargs: Any) -> Batcher[str]:
    return Batcher(store, on_dead=dead if dead is not None else DeadLetters(), **kwargs)


def test_nothing_is_written_before_the_buffer_fills() -> None:
    """Adding fewer ops than max_rows writes nothing yet (writes are batched)."""
    store = FakeStore()
    batcher = make(store, max_rows=3, clock=FakeClock())
    batcher.add("a")
    batcher.add("b")
    assert store.calls == 0
    assert len(batcher) == 2


def test_full_buffer_is_written_in_one_call() -> None:
    """Reaching max_rows writes the whole buffer in a single write (one transaction)."""
    store = FakeStore()
    batcher = make(store, max_rows=3, clock=FakeClock())
    for op in "abcd":
        batcher.add(op)
    assert store.batches == [["a", "b", "c"]]
    assert len(batcher) == 1


def test_size_is_measured_in_weighed_rows() -> None:
    """One op that weighs as many rows as max_rows (an item with its chunks) flushes at once."""
    store = FakeStore()
    batcher = make(store, max_rows=10, weigh=len, clock=FakeClock())
    batcher.add("abc")
    assert store.calls == 0
    batcher.add("x" * 7)
    assert store.batches == [["abc", "x" * 7]]
    assert batcher.stats.rows == 10


def test_flush_if_due_waits_for_max_delay() -> None:
    """A partly full buffer is written once its oldest op has waited max_delay seconds."""
    clock = FakeClock()
    store = FakeStore()
    batcher = make(store, max_rows=100, max_delay=1.0, clock=clock)
    batcher.add("a")
    clock.now += 0.5
    batcher.add("b")
    batcher.flush_if_due()
    assert store.calls == 0
    clock.now += 0.5
    batcher.flush_if_due()
    assert store.batches == [["a", "b"]]


def test_delay_counts_from_the_oldest_op_after_a_flush() -> None:
    """After a flush the timer restarts with the next op, not with the previous batch."""
    clock = FakeClock()
    store = FakeStore()
    batcher = make(store, max_rows=100, max_delay=1.0, clock=clock)
    batcher.add("a")
    clock.now += 5
    batcher.flush_if_due()
    batcher.add("b")
    batcher.flush_if_due()
    assert store.batches == [["a"]]
    clock.now += 1.0
    batcher.flush_if_due()
    assert store.batches == [["a"], ["b"]]


def test_flush_if_due_on_empty_buffer_writes_nothing() -> None:
    """An idle batcher never issues empty writes."""
    clock = FakeClock()
    store = FakeStore()
    batcher = make(store, clock=clock)
    clock.now += 60
    batcher.flush_if_due()
    batcher.flush()
    assert store.calls == 0
    assert batcher.stats.flushes == 0


def test_flush_writes_everything_buffered() -> None:
    """flush() (e.g. on shutdown) writes every buffered op and empties the buffer."""
    store = FakeStore()
    batcher = make(store, max_rows=100, clock=FakeClock())
    for op in "abcde":
        batcher.add(op)
    batcher.flush()
    assert store.batches == [list("abcde")]
    assert len(batcher) == 0


def test_bad_op_is_bisected_out_and_the_rest_written() -> None:
    """One op that makes the write fail goes to on_dead; every other op is committed."""
    store = FakeStore(poisoned={"f"})
    dead = DeadLetters()
    batcher = make(store, dead, max_rows=100, clock=FakeClock())
    ops = list("abcdefgh")
    for op in ops:
        batcher.add(op)
    batcher.flush()
    assert store.written == [op for op in ops if op != "f"]
    assert [op for op, _ in dead] == ["f"]
    assert isinstance(dead[0][1], ValueError)
    assert "bad row f" in str(dead[0][1])
    assert batcher.stats.dead == 1


def test_several_bad_ops_are_each_dead_lettered() -> None:
    """Each poisoned op is isolated on its own; good ops keep their order."""
    store = FakeStore(poisoned={"a", "e", "g"})
    dead = DeadLetters()
    batcher = make(store, dead, max_rows=100, clock=FakeClock())
    for op in "abcdefg":
        batcher.add(op)
    batcher.flush()
    assert store.written == ["b", "c", "d", "f"]
    assert sorted(op for op, _ in dead) == ["a", "e", "g"]
    assert batcher.stats.dead == 3


def test_bisection_costs_logarithmic_writes() -> None:
    """Isolating one bad op among 64 takes about 2 log2(64) writes, not 64."""
    store = FakeStore(poisoned={"op37"})
    batcher = make(store, max_rows=1000, clock=FakeClock())
    for i in range(64):
        batcher.add(f"op{i}")
    batcher.flush()
    assert len(store.written) == 63
    assert store.calls <= 2 * 6 + 1


def test_busy_store_is_retried_until_it_succeeds() -> None:
    """A locked database is retried (with backoff) and the batch then commits once."""
    store = FakeStore(busy_times=3)
    dead = DeadLetters()
    batcher = make(store, dead, max_rows=100, clock=FakeClock())
    batcher.add("a")
    batcher.add("b")
    batcher.flush()
    assert store.batches == [["a", "b"]]
    assert store.calls == 4
    assert dead == []


def test_store_that_stays_busy_raises_store_busy() -> None:
    """If the database stays locked, StoreBusy reaches the caller; no op is dead-lettered."""
    store = FakeStore(busy_times=1_000)
    dead = DeadLetters()
    batcher = make(store, dead, max_rows=100, clock=FakeClock())
    batcher.add("a")
    batcher.add("b")
    with pytest.raises(StoreBusy):
        batcher.flush()
    assert store.calls == policy._BUSY_RETRIES
    assert store.batches == []
    assert dead == []


def test_busy_from_a_full_buffer_propagates_from_add() -> None:
    """add() that triggers a flush surfaces StoreBusy too, rather than dropping data silently."""
    store = FakeStore(busy_times=1_000)
    batcher = make(store, max_rows=1, clock=FakeClock())
    with pytest.raises(StoreBusy):
        batcher.add("a")


def test_stats_count_flushes_ops_rows_and_latency() -> None:
    """Stats add up flushes, ops, weighed rows, dead ops and how long ops waited."""
    clock = FakeClock()
    store = FakeStore(poisoned={"bad"})
    batcher = make(store, max_rows=1000, weigh=len, clock=clock)
    batcher.add("aa")
    clock.now += 2.0
    batcher.add("bad")
    batcher.flush()
    batcher.add("cccc")
    batcher.flush()
    stats = batcher.stats
    assert (stats.flushes, stats.ops, stats.rows, stats.dead) == (2, 3, 9, 1)
    assert stats.latencies == [2.0, 0.0]
    assert stats.flush_seconds == 0.0  # the fake clock does not move during a write


def test_latency_window_is_bounded() -> None:
    """The latency history kept for percentiles never grows past 1000 entries."""
    store = FakeStore()
    batcher = make(store, max_rows=1, clock=FakeClock())
    for i in range(1_200):
        batcher.add(str(i))
    assert store.calls == 1_200
    assert len(batcher.stats.latencies) == 1_000
