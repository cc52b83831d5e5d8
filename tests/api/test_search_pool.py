"""The server's search threads: a bounded few, at a lower CPU priority, right answers."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from gristmill.api.search_pool import SearchPool
from gristmill.knowledge_base import KnowledgeBase
from process_tools import env_for, gristmill


def _nice_by_thread() -> dict[int, int]:
    """Each thread of this process and its nice value, as the kernel sees them."""
    out = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # the thread ended meanwhile
            continue
        out[int(task.name)] = int(fields[16])  # field 19 of stat; 3 are before ")"
    return out


@pytest.fixture
def kb(tmp_path: Path) -> KnowledgeBase:
    folder = tmp_path / "docs"
    folder.mkdir()
    for n in range(20):
        (folder / f"note{n}.txt").write_text(
            f"note {n}: the waterwheel turns the millstone" if n == 7 else
            f"note {n}: grain prices and the weather in spring")
    # Ingested by the CLI in a process of its own, so no worker pool outlives the fixture
    # in the test process (the OCR tests count this process's children).
    home = tmp_path / "home"
    done = gristmill("ingest", str(folder), "--workers", "1", env=env_for(home))
    assert done.returncode == 0, done.stderr
    kb = KnowledgeBase.open(home, embedder="none")
    yield kb
    kb.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux's")
def test_searches_run_on_a_bounded_set_of_lower_priority_threads(kb: KnowledgeBase) -> None:
    """Twelve searches at once run on exactly two threads, both niced by the setting,
    and each gets its own right answer; the rest of the process keeps its priority."""
    # On PostgreSQL the first read-only connection starts its pool's threads (niced like
    # the search thread that opens it): open one first, so only search threads are new.
    warm = kb.searcher()
    before = _nice_by_thread()
    base = os.getpriority(os.PRIO_PROCESS, 0)
    pool = SearchPool(kb, threads=2, nice=7)

    async def many() -> list[list[str]]:
        queries = ["waterwheel millstone" if n % 2 else "grain weather" for n in range(12)]
        results = await asyncio.gather(*(
            pool.search(q, collection=None, k=3, mode="keyword") for q in queries))
        return [[Path(hit.source).name for hit in hits] for hits in results]

    try:
        answers = asyncio.run(many())
        after = _nice_by_thread()
    finally:
        pool.close()
        warm.close()
    assert answers[1] == ["note7.txt"]
    assert all(len(answer) == 3 and "note7.txt" not in answer for answer in answers[::2])
    new_threads = {tid: nice for tid, nice in after.items() if tid not in before}
    niced = [tid for tid, nice in new_threads.items() if nice == min(base + 7, 19)]
    assert len(niced) == 2
    assert os.getpriority(os.PRIO_PROCESS, 0) == base
    assert all(after[tid] == nice for tid, nice in before.items() if tid in after)


def test_nice_zero_leaves_priority_alone(kb: KnowledgeBase) -> None:
    """With ``search_nice = 0`` the search threads run at the server's priority."""
    before = set(_nice_by_thread())
    base = os.getpriority(os.PRIO_PROCESS, 0)
    pool = SearchPool(kb, threads=1, nice=0)
    try:
        hits = asyncio.run(pool.search("millstone", collection=None, k=5, mode="keyword"))
        after = _nice_by_thread()
    finally:
        pool.close()
    assert [Path(hit.source).name for hit in hits] == ["note7.txt"]
    assert all(nice == base for tid, nice in after.items() if tid not in before)
