"""Prometheus metrics, read from the catalog at each scrape.

The work happens in job processes, so the server keeps no counters of its own: what a
scrape reports is what the catalog says now (items by status, chunks, vectors, jobs by
state, each running job's progress and rate) plus this server's own memory. One scrape
costs a few indexed counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psutil
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

__all__ = ["catalog_registry"]


class _CatalogCollector(Collector):
    def __init__(self, read: Callable[[], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = self._read()
        items = GaugeMetricFamily("gristmill_items", "Items in the catalog by status.",
                                  labels=["status"])
        for status, count in now["items"].items():
            items.add_metric([status], count)
        yield items
        yield GaugeMetricFamily("gristmill_chunks", "Chunks in the index.",
                                value=now["chunks"])
        yield GaugeMetricFamily("gristmill_vectors", "Stored embedding vectors.",
                                value=now["vectors"])
        cache = now["embedding_cache"]
        yield GaugeMetricFamily("gristmill_embedding_cache_hits",
                                "Chunks whose vector was already stored, over every run.",
                                value=cache["hits"])
        yield GaugeMetricFamily("gristmill_embedding_cache_misses",
                                "Chunk texts embedded, over every run.", value=cache["misses"])
        yield GaugeMetricFamily("gristmill_embedding_cache_hit_rate",
                                "Hits over lookups (0 before the first).",
                                value=cache["hit_rate"])
        jobs = GaugeMetricFamily("gristmill_jobs", "Jobs by state (latest 1,000).",
                                 labels=["state"])
        for state, count in now["jobs"].items():
            jobs.add_metric([state], count)
        yield jobs
        done = GaugeMetricFamily("gristmill_job_items_done",
                                 "Items a running job has finished.", labels=["job"])
        rate = GaugeMetricFamily("gristmill_job_items_per_second",
                                 "A running job's throughput over its life.", labels=["job"])
        waiting = GaugeMetricFamily("gristmill_job_items_waiting",
                                    "A running job's items not yet finished (its queue).",
                                    labels=["job"])
        for job in now["running"]:
            label = [str(job["id"])]
            done.add_metric(label, job["done"])
            rate.add_metric(label, job["rate"])
            waiting.add_metric(label, sum(job["items"].values()) - job["done"])
        yield done
        yield rate
        yield waiting
        yield from _batcher_metrics(now["running"])
        yield GaugeMetricFamily("gristmill_server_rss_bytes",
                                "Resident memory of the API server process.",
                                value=psutil.Process().memory_info().rss)


def _batcher_metrics(running: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
    """Each running job's write-behind batcher, as its driver last recorded it (every
    few seconds): flushes, rows, dead letters, flush time and enqueue-to-commit latency."""
    totals = {
        "flushes": GaugeMetricFamily("gristmill_batch_flushes",
                                     "Transactions the job's batcher committed.",
                                     labels=["job"]),
        "rows": GaugeMetricFamily("gristmill_batch_rows",
                                  "Rows the job's batcher wrote.", labels=["job"]),
        "dead": GaugeMetricFamily("gristmill_batch_dead_letters",
                                  "Operations a failed batch isolated and dropped.",
                                  labels=["job"]),
    }
    flush = GaugeMetricFamily("gristmill_batch_flush_seconds",
                              "Time one flush (one transaction) took, last 1,000 flushes.",
                              labels=["job", "quantile"])
    latency = GaugeMetricFamily(
        "gristmill_batch_commit_latency_seconds",
        "Wait of a flush's oldest operation from enqueue to durable commit, last 1,000.",
        labels=["job", "quantile"])
    for job in running:
        stats = job.get("batcher") or {}
        if not stats:
            continue  # its first record is a few seconds away
        label = str(job["id"])
        for key, family in totals.items():
            family.add_metric([label], stats[key])
        for quantile in ("50", "99"):
            q = str(int(quantile) / 100)
            flush.add_metric([label, q], stats[f"flush_p{quantile}"])
            latency.add_metric([label, q], stats[f"latency_p{quantile}"])
    yield from totals.values()
    yield flush
    yield latency


def catalog_registry(read: Callable[[], dict[str, Any]]) -> CollectorRegistry:
    """A registry whose one collector calls ``read`` at every scrape; ``read`` returns
    ``items`` and ``jobs`` (counts by status/state), ``chunks``, ``vectors`` and
    ``running`` (the running jobs' ``to_dict()`` plus ``batcher``, their
    :meth:`~gristmill.batching.BatcherStats.summary`)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_CatalogCollector(read))
    return registry
