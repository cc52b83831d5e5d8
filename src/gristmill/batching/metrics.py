"""Prometheus: a collector that reads BatchWriter figures at each scrape."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client.registry import Collector, CollectorRegistry

    from gristmill.batching.writer import BatchWriter


def register_metrics(registry: CollectorRegistry, *writers: BatchWriter) -> Collector:
    """Expose ``writers`` in ``registry`` (read at each scrape); returns the collector.

    Families, each labelled ``writer`` (its ``name``): ``gristmill_writer_queue_depth``
    (also ``table``), ``gristmill_writer_flushes_total``, ``gristmill_writer_rows_total``,
    ``gristmill_writer_dead_letters_total``, ``gristmill_writer_failed_rows_total``,
    ``gristmill_writer_rows_per_second``, and with a ``quantile`` (0.5, 0.99):
    ``gristmill_writer_flush_rows``, ``gristmill_writer_flush_seconds``,
    ``gristmill_writer_commit_latency_seconds``.
    """
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    from prometheus_client.registry import Collector

    class _WriterCollector(Collector):
        def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
            snaps = [w.stats() for w in writers]
            depth = GaugeMetricFamily("gristmill_writer_queue_depth",
                                      "Rows queued and not yet written, per table.",
                                      labels=["writer", "table"])
            for snap in snaps:
                for table, rows in snap["queue_depth"].items():
                    depth.add_metric([snap["name"], table], rows)
            yield depth
            for key, metric, text in (
                    ("flushes", "gristmill_writer_flushes", "Batches flushed."),
                    ("rows", "gristmill_writer_rows", "Rows durably committed."),
                    ("dead", "gristmill_writer_dead_letters", "Rows dead-lettered."),
                    ("failed", "gristmill_writer_failed_rows",
                     "Rows not written: the database stayed unavailable.")):
                counter = CounterMetricFamily(metric, text, labels=["writer"])
                for snap in snaps:
                    counter.add_metric([snap["name"]], snap[key])
                yield counter
            rate = GaugeMetricFamily("gristmill_writer_rows_per_second",
                                     "Rows committed per second, last 10 s.", labels=["writer"])
            for snap in snaps:
                rate.add_metric([snap["name"]], snap["rows_per_second"])
            yield rate
            for prefix, metric, text in (
                    ("flush_rows", "gristmill_writer_flush_rows", "Rows per flush."),
                    ("flush", "gristmill_writer_flush_seconds", "Time of one flush."),
                    ("latency", "gristmill_writer_commit_latency_seconds",
                     "A row's wait from enqueue to durable commit.")):
                family = GaugeMetricFamily(metric, text, labels=["writer", "quantile"])
                for snap in snaps:
                    family.add_metric([snap["name"], "0.5"], snap[f"{prefix}_p50"])
                    family.add_metric([snap["name"], "0.99"], snap[f"{prefix}_p99"])
                yield family

    collector = _WriterCollector()
    registry.register(collector)
    return collector
