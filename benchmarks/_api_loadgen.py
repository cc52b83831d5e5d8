"""The load generator of ``bench_api_load.py``, run as a process of its own so that its
CPU is not the server's (and can be measured apart): ``python _api_loadgen.py CONFIG
OUT``. It talks to ``gristmill serve`` over HTTP only (httpx, asyncio), so it measures
any version of the server.

CONFIG (JSON) holds ``url``, ``token``, ``queries`` (a list of ``{"q": ...}``), ``k``,
``search_mode`` and ``steps``, run in order; each step's result goes to OUT (JSON):

- ``{"kind": "serial", "count": N}``: N searches one at a time (the latency with no
  queueing at all: the service time).
- ``{"kind": "searches", "seconds": S, "searchers": N, "rate": R}``: searches for S
  seconds with no job running. ``rate > 0``: open loop, Poisson arrivals at R/s served
  by at most N requests in flight; latency counts from the *scheduled* send time, so a
  server that falls behind shows up as latency (no coordinated omission). ``rate = 0``:
  N clients in closed loop.
- ``{"kind": "job", "source": PATH, "collection": C, "sse_clients": M, "searchers": N,
  "rate": R}``: POST the job, poll it once a second until it ends (in every phase, so
  the phases differ only by the load), and meanwhile M clients follow its
  ``/events`` stream (reconnecting with ``Last-Event-ID`` when a stream breaks) and the
  searchers run as above. ``sse_clients = searchers = 0`` is the job alone.

Every step may also give ``offset`` (where in the query list it starts), ``label`` and
``pause_before`` (seconds to wait first).

Each search is recorded as ``[scheduled epoch, latency s, service s, status, query
index, hits]``; status is the HTTP status, or a negative code for a transport error
(-1) or a request never sent before the step ended (-2).
"""

from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from pathlib import Path
from typing import Any

import httpx

FINAL_STATES = {"succeeded", "failed", "cancelled"}
SSE_FINAL_GRACE_S = 15.0  # after the job ends, how long streams get to deliver the end


class Clock:
    """Monotonic time, convertible to epoch seconds (the server's job timestamps)."""

    def __init__(self) -> None:
        self.offset = time.time() - time.monotonic()

    def now(self) -> float:
        return time.monotonic()

    def epoch(self, t: float) -> float:
        return t + self.offset


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


class Searcher:
    """Sends searches and records them."""

    def __init__(self, client: httpx.AsyncClient, cfg: dict[str, Any], clock: Clock,
                 start_index: int = 0) -> None:
        self.client = client
        self.queries = cfg["queries"]
        self.k = cfg["k"]
        self.mode = cfg["search_mode"]
        self.clock = clock
        self.start_index = self.next_index = start_index
        self.records: list[list[Any]] = []

    def take(self) -> int:
        i = self.next_index
        self.next_index += 1
        return i

    async def one(self, scheduled: float, i: int) -> None:
        query = self.queries[i % len(self.queries)]["q"]
        sent = self.clock.now()
        hits = -1
        try:
            response = await self.client.get(
                "/api/v1/search", params={"q": query, "k": self.k, "mode": self.mode})
            status = response.status_code
            if status == 200:
                hits = len(response.json())
            else:
                await response.aread()
        except httpx.HTTPError:
            status = -1
        done = self.clock.now()
        self.records.append([round(self.clock.epoch(scheduled), 4), round(done - scheduled, 5),
                             round(done - sent, 5), status, i, hits])

    async def closed_loop(self, clients: int, stop: asyncio.Event,
                          count: int | None = None) -> None:
        async def client_loop() -> None:
            while not stop.is_set():
                if count is not None and self.next_index - self.start_index >= count:
                    return
                await self.one(self.clock.now(), self.take())

        await asyncio.gather(*(client_loop() for _ in range(clients)))

    async def open_loop(self, rate: float, in_flight: int, stop: asyncio.Event,
                        seed: int) -> None:
        rng = random.Random(seed)
        queue: asyncio.Queue[tuple[float, int] | None] = asyncio.Queue()

        async def dispatch() -> None:
            t = self.clock.now()
            while not stop.is_set():
                t += rng.expovariate(rate)
                delay = t - self.clock.now()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        break
                    except TimeoutError:
                        pass
                queue.put_nowait((t, self.take()))
            for _ in range(in_flight):
                queue.put_nowait(None)

        async def worker() -> None:
            while (item := await queue.get()) is not None:
                scheduled, i = item
                if stop.is_set() and self.clock.now() - scheduled > 5.0:
                    # A backlog left when the step ended: counted, not sent.
                    self.records.append([round(self.clock.epoch(scheduled), 4), None, None,
                                         -2, i, -1])
                    continue
                await self.one(scheduled, i)

        await asyncio.gather(dispatch(), *(worker() for _ in range(in_flight)))


async def _search_step(searcher: Searcher, step: dict[str, Any], stop: asyncio.Event,
                       seed: int) -> None:
    if step["rate"] > 0:
        await searcher.open_loop(step["rate"], step["searchers"], stop, seed)
    elif step["searchers"] > 0:
        await searcher.closed_loop(step["searchers"], stop)


async def _sse_client(client: httpx.AsyncClient, job_id: int, clock: Clock,
                      stop: asyncio.Event) -> dict[str, Any]:
    """Follow one job's event stream to its final ``state`` event."""
    st: dict[str, Any] = {"connected": False, "connect_s": None, "events": 0, "kinds": {},
                          "reconnects": 0, "errors": [], "final_state": None,
                          "final_epoch": None, "max_gap_s": 0.0}
    started = clock.now()
    last_id: str | None = None
    last_event_at: float | None = None
    while True:
        headers = {"Last-Event-ID": last_id} if last_id else {}
        try:
            async with client.stream("GET", f"/api/v1/jobs/{job_id}/events",
                                     headers=headers) as response:
                if response.status_code != 200:
                    await response.aread()
                    st["errors"].append(f"HTTP {response.status_code}")
                else:
                    if not st["connected"]:
                        st["connected"] = True
                        st["connect_s"] = round(clock.now() - started, 4)
                    fields: dict[str, str] = {}
                    async for line in response.aiter_lines():
                        if line.startswith(":"):
                            continue  # a comment: sse-starlette's ping
                        if line:
                            name, _, value = line.partition(":")
                            fields[name] = value.removeprefix(" ")
                            continue
                        if "data" in fields:
                            now = clock.now()
                            if last_event_at is not None:
                                gap = round(now - last_event_at, 3)
                                st["max_gap_s"] = max(st["max_gap_s"], gap)
                            last_event_at = now
                            st["events"] += 1
                            kind = fields.get("event", "message")
                            st["kinds"][kind] = st["kinds"].get(kind, 0) + 1
                            last_id = fields.get("id", last_id)
                            data = json.loads(fields["data"])
                            if kind == "state" and data.get("state") in FINAL_STATES:
                                st["final_state"] = data["state"]
                                st["final_epoch"] = clock.epoch(now)
                                return st
                        fields = {}
                    st["errors"].append("stream ended before the job did")
        except httpx.HTTPError as exc:
            st["errors"].append(type(exc).__name__)
        if stop.is_set():
            return st
        st["reconnects"] += 1
        await asyncio.sleep(0.5)


async def _job_step(cfg: dict[str, Any], step: dict[str, Any], clock: Clock,
                    headers: dict[str, str], searcher: Searcher) -> dict[str, Any]:
    out: dict[str, Any] = {}
    n_sse = step["sse_clients"]
    sse_limits = httpx.Limits(max_connections=n_sse + 4, max_keepalive_connections=n_sse + 4)
    async with httpx.AsyncClient(base_url=cfg["url"], headers=headers, timeout=30) as control, \
            httpx.AsyncClient(base_url=cfg["url"], headers=headers, limits=sse_limits,
                              timeout=httpx.Timeout(30, read=60)) as sse:
        posted = clock.now()
        response = await control.post(
            "/api/v1/jobs", json={"source": step["source"], "collection": step["collection"]})
        if response.status_code != 202:
            raise SystemExit(f"POST /api/v1/jobs: {response.status_code} {response.text}")
        job_id = int(response.json()["id"])
        out["job_id"] = job_id
        out["posted_epoch"] = clock.epoch(posted)

        stop_search = asyncio.Event()
        stop_sse = asyncio.Event()
        sse_tasks = [asyncio.create_task(_sse_client(sse, job_id, clock, stop_sse))
                     for _ in range(n_sse)]
        search_task = asyncio.create_task(_search_step(searcher, step, stop_search, seed=2))
        polls = 0
        poll_errors = 0
        while True:
            await asyncio.sleep(1.0)
            try:
                r = await control.get(f"/api/v1/jobs/{job_id}")
                polls += 1
                job = r.json() if r.status_code == 200 else None
            except httpx.HTTPError:
                poll_errors += 1
                job = None
            if job is not None and job["state"] in FINAL_STATES:
                break
            if clock.now() - posted > step.get("timeout_s", 1800):
                raise SystemExit(f"job {job_id} did not end within {step.get('timeout_s')} s")
        out["seen_final_epoch"] = clock.epoch(clock.now())
        out["job"] = job
        out["polls"] = polls
        out["poll_errors"] = poll_errors
        stop_search.set()
        await search_task
        out["search_end_epoch"] = clock.epoch(clock.now())
        if sse_tasks:
            _, pending = await asyncio.wait(sse_tasks, timeout=SSE_FINAL_GRACE_S)
            stop_sse.set()
            for task in pending:
                task.cancel()
            out["sse"] = [t.result() if t.done() and not t.cancelled() else
                          {"connected": None, "events": 0, "kinds": {}, "reconnects": 0,
                           "errors": ["no final event within the grace period"],
                           "final_state": None, "final_epoch": None, "max_gap_s": None}
                          for t in sse_tasks]
        else:
            out["sse"] = []
    return out


async def run(cfg: dict[str, Any]) -> dict[str, Any]:
    clock = Clock()
    headers = {"Authorization": f"Bearer {cfg['token']}"} if cfg.get("token") else {}
    results: list[dict[str, Any]] = []
    for n, step in enumerate(cfg["steps"]):
        cpu0 = _cpu_s()
        t0 = clock.now()
        in_flight = max(1, step.get("searchers", 1))
        limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
        async with httpx.AsyncClient(base_url=cfg["url"], headers=headers, limits=limits,
                                     timeout=30) as client:
            searcher = Searcher(client, cfg, clock, start_index=step.get("offset", 0))
            res: dict[str, Any] = {"kind": step["kind"], "label": step.get("label")}
            if step.get("pause_before"):
                await asyncio.sleep(step["pause_before"])
            if step["kind"] == "serial":
                stop = asyncio.Event()
                await searcher.closed_loop(1, stop, count=step["count"])
            elif step["kind"] == "searches":
                stop = asyncio.Event()
                task = asyncio.create_task(_search_step(searcher, step, stop, seed=1 + n))
                await asyncio.sleep(step["seconds"])
                stop.set()
                await task
            elif step["kind"] == "job":
                res.update(await _job_step(cfg, step, clock, headers, searcher))
            else:
                raise SystemExit(f"unknown step kind {step['kind']!r}")
        t1 = clock.now()
        res.update(start_epoch=clock.epoch(t0), end_epoch=clock.epoch(t1),
                   seconds=round(t1 - t0, 3), loadgen_cpu_s=round(_cpu_s() - cpu0, 3),
                   searches=searcher.records)
        results.append(res)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return {"steps": results, "loadgen_cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "loadgen_max_rss_mib": round(ru.ru_maxrss / 1024, 1)}


def main() -> None:
    cfg = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    result = asyncio.run(run(cfg))
    Path(sys.argv[2]).write_text(json.dumps(result) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
