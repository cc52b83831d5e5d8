"""A job's Server-Sent Events: snapshots of its row, sent when something changed.

The job's driver runs in another process, so the stream polls the job row (a cheap
read) rather than listening to the driver. Event ids are a sequence per stream; a client
that reconnects with ``Last-Event-ID: N`` gets ids from N+1 on, and always the current
snapshot first, so nothing it needs depends on events it missed.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from sse_starlette import ServerSentEvent

from gristmill.catalog.jobs import FINAL_STATES

__all__ = ["POLL_SECONDS", "job_events"]

POLL_SECONDS = 0.5  # as often as a driver looks at its own row
HEARTBEAT_SECONDS = 5.0  # at most this long without an event, so proxies keep the stream
_COUNTERS = ("items", "pages", "chunks", "bytes", "runs")


async def job_events(read: Callable[[], dict[str, Any]], last_event_id: int = 0
                     ) -> AsyncIterator[ServerSentEvent]:
    """Events for the job ``read()`` returns (``Job.to_dict()``), until it ends.

    ``state`` when the state changed (and first), ``progress`` when a counter changed,
    ``heartbeat`` after :data:`HEARTBEAT_SECONDS` of neither.
    """
    seq = last_event_id
    previous: dict[str, Any] | None = None
    last_sent = 0.0
    while True:
        job = await anyio.to_thread.run_sync(read)
        kind = None
        if previous is None or job["state"] != previous["state"]:
            kind = "state"
        elif any(job[key] != previous[key] for key in _COUNTERS):
            kind = "progress"
        elif time.monotonic() - last_sent >= HEARTBEAT_SECONDS:
            kind = "heartbeat"
        if kind is not None:
            seq += 1
            last_sent = time.monotonic()
            yield ServerSentEvent(data=json.dumps(job), event=kind, id=str(seq))
        previous = job
        if job["state"] in FINAL_STATES:
            return
        await anyio.sleep(POLL_SECONDS)
