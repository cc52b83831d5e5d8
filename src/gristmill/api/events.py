"""A job's Server-Sent Events: its state, progress and per-item problems, live.

The job's driver runs in another process, so the server polls the catalog. One poller
per job serves every client following it (a :class:`JobFeeds` entry lives while the
job has watchers), so a hundred open dashboards cost the database what one does.

Event types: ``state`` (first, and whenever the state changes), ``progress`` (a counter
or the run's ``phases`` changed), ``failure`` (an item failed or was skipped:
``Problem.to_dict()``) and ``heartbeat`` (nothing else for :data:`HEARTBEAT_SECONDS`);
all but ``failure`` carry the job. Event ids are ``<n>:<cursor>``: ``n`` counts the
stream's events, ``cursor`` is the last problem sent. A client that reconnects with
``Last-Event-ID`` gets numbering from ``n + 1``, the current state first, and only the
problems it has not seen; a new client gets the job's latest 2,000 problems
(``GET /api/v1/errors`` has them all, grouped).
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import anyio
from sse_starlette import ServerSentEvent

from gristmill.catalog.jobs import FINAL_STATES, Problem
from gristmill.errors import StoreBusy

__all__ = ["HEARTBEAT_SECONDS", "POLL_SECONDS", "JobFeeds", "parse_event_id"]

POLL_SECONDS = 0.5  # as often as a driver looks at its own row
HEARTBEAT_SECONDS = 5.0  # at most this long without an event, so proxies keep the stream
# What changing makes a `progress` event; `phases` (extraction and embedding, each with
# its rate and ETA) changes while vectors are computed and the counters stand still.
_COUNTERS = ("items", "pages", "chunks", "bytes", "runs", "phases")
_PAGE = 500  # problems read per query
_KEPT = 2000  # problems a feed keeps for late or slow clients; older ones are re-read

Cursor = tuple[float, int]
ReadJob = Callable[[int], dict[str, Any]]
ReadProblems = Callable[[int, Cursor, int], list[Problem]]


# What `events` writes: a count, then a timestamp as repr() gives it and an item id.
# Strictly that: `nan`, `inf` or a negative number would compare with no real cursor, so
# a finished job's stream would never see that it had sent everything and never end;
# an id beyond 64 bits cannot be a database parameter.
_EVENT_ID = re.compile(r"(\d{1,18})(?::(\d{1,20}(?:\.\d{1,20})?(?:e[+-]?\d{1,3})?)/(\d{1,18}))?")


def parse_event_id(value: str | None) -> tuple[int, Cursor]:
    """The event count and problem cursor in a ``Last-Event-ID`` (``(0, (0, 0))`` for
    none or garbage: the client then starts from the beginning)."""
    found = _EVENT_ID.fullmatch((value or "").strip())
    if found is None:
        return 0, (0.0, 0)
    count, at, item = found.groups()
    if at is None:
        return int(count), (0.0, 0)
    when = float(at)
    if not math.isfinite(when):  # 1e999: digits, yet infinite
        return 0, (0.0, 0)
    return int(count), (when, int(item))


@dataclass
class _Feed:
    """What the poller of one job last read, and who is waiting for the next read."""

    job: dict[str, Any] | None = None
    problems: deque[Problem] = field(default_factory=lambda: deque(maxlen=_KEPT))
    cursor: Cursor = (0.0, 0)  # the newest problem read
    floor: Cursor = (0.0, 0)  # problems at or before this were dropped from `problems`
    reads: int = 0
    watchers: int = 0
    error: BaseException | None = None
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)


class JobFeeds:
    """The event streams of all jobs being watched, one catalog poller per job."""

    def __init__(self, read_job: ReadJob, read_problems: ReadProblems) -> None:
        self._read_job = read_job
        self._read_problems = read_problems
        self._feeds: dict[int, _Feed] = {}

    @property
    def watched(self) -> int:
        """Jobs with at least one client following them."""
        return len(self._feeds)

    async def events(self, job_id: int, last_event_id: str | None = None
                     ) -> AsyncIterator[ServerSentEvent]:
        """The job's events from ``last_event_id`` on, until the job has ended."""
        count, mine = parse_event_id(last_event_id)
        fresh = count == 0  # a new client starts with the problems the feed keeps
        feed = self._feeds.get(job_id)
        if feed is None:
            feed = self._feeds[job_id] = _Feed()
            asyncio.get_running_loop().create_task(self._poll(job_id, feed))
        feed.watchers += 1
        previous: dict[str, Any] | None = None
        last_sent = 0.0
        seen_reads = 0

        def event(kind: str, data: dict[str, Any]) -> ServerSentEvent:
            nonlocal count, last_sent
            count += 1
            last_sent = time.monotonic()
            return ServerSentEvent(data=json.dumps(data), event=kind,
                                   id=f"{count}:{mine[0]!r}/{mine[1]}")

        try:
            while True:
                async with feed.changed:
                    if feed.reads == seen_reads:
                        wait = max(0.0, HEARTBEAT_SECONDS - (time.monotonic() - last_sent))
                        with anyio.move_on_after(wait):
                            await feed.changed.wait()
                if feed.error is not None:
                    raise feed.error
                seen_reads = feed.reads
                job = feed.job
                if job is None:
                    continue  # woken before the first read
                if fresh:
                    mine, fresh = max(mine, feed.floor), False
                # Problems first: those recorded before the job ended precede its end.
                while mine < feed.floor:  # fell behind what the feed keeps: read them
                    older = await anyio.to_thread.run_sync(
                        self._read_problems, job_id, mine, _PAGE)
                    for problem in older:
                        mine = problem.cursor
                        yield event("failure", problem.to_dict())
                    if not older:
                        break
                for problem in list(feed.problems):
                    if problem.cursor > mine:
                        mine = problem.cursor
                        yield event("failure", problem.to_dict())
                if previous is None or job["state"] != previous["state"]:
                    yield event("state", job)
                elif any(job[key] != previous[key] for key in _COUNTERS):
                    yield event("progress", job)
                elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
                    yield event("heartbeat", job)
                previous = job
                if job["state"] in FINAL_STATES and mine >= feed.cursor:
                    return
        finally:
            feed.watchers -= 1

    async def _poll(self, job_id: int, feed: _Feed) -> None:
        try:
            while feed.watchers > 0 or feed.reads == 0:
                try:
                    job = await anyio.to_thread.run_sync(self._read_job, job_id)
                    # After the job: a problem committed before it ended is always seen.
                    while True:
                        new = await anyio.to_thread.run_sync(
                            self._read_problems, job_id, feed.cursor, _PAGE)
                        for problem in new:
                            if len(feed.problems) == feed.problems.maxlen:
                                feed.floor = feed.problems[0].cursor
                            feed.problems.append(problem)
                            feed.cursor = problem.cursor
                        if len(new) < _PAGE:
                            break
                except StoreBusy:
                    # The database is away for a while (a restart): the streams stay open
                    # on what they last heard, with heartbeats, and the next poll retries.
                    await anyio.sleep(POLL_SECONDS)
                    if feed.watchers > 0:
                        continue
                    break
                async with feed.changed:
                    feed.job = job
                    feed.reads += 1
                    feed.changed.notify_all()
                await anyio.sleep(POLL_SECONDS)
        except Exception as exc:  # e.g. the job was deleted: its watchers must hear it
            async with feed.changed:
                feed.error = exc
                feed.reads += 1
                feed.changed.notify_all()
        finally:
            if self._feeds.get(job_id) is feed:
                del self._feeds[job_id]
