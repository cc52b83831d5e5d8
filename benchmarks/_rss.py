"""Peak resident memory of a process tree, sampled in a background thread.

Benchmarks here run work in a multiprocessing pool, so the parent's own RSS says little:
what a user pays is the parent plus every worker. We sum the RSS of the parent and all
its descendants every `interval` seconds and keep the maximum. Summing RSS counts pages
shared between processes (libraries, copy-on-write after fork) more than once, so it is
an upper bound on the tree's real footprint; it is also what `ps`/`top` users would add up.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType

import psutil


class PeakRSS:
    """Context manager that samples the summed RSS of process `pid` and its descendants.

    After the block, `peak_tree_bytes` is the largest sum seen and
    `peak_process_bytes` the largest single process seen (any sample).
    """

    def __init__(self, pid: int | None = None, interval: float = 0.05, *,
                 include_root: bool = True) -> None:
        """``include_root=False`` counts the descendants only (a benchmark measuring
        the programs it launches, not itself)."""
        self.pid = os.getpid() if pid is None else pid
        self.include_root = include_root
        self.interval = interval
        self.peak_tree_bytes = 0
        self.peak_process_bytes = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> int:
        """Take one sample now, update the peaks, and return the tree's summed RSS."""
        try:
            root = psutil.Process(self.pid)
            procs = [root] if self.include_root else []
            procs += root.children(recursive=True)
        except psutil.NoSuchProcess:
            return 0
        total = 0
        for proc in procs:
            try:
                rss = proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                # Workers come and go between listing and reading; skip the gone ones.
                continue
            total += rss
            self.peak_process_bytes = max(self.peak_process_bytes, rss)
        self.peak_tree_bytes = max(self.peak_tree_bytes, total)
        self.samples += 1
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        self.sample()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.sample()

    def as_dict(self) -> dict[str, float | int]:
        """Peaks in MiB (for people) and bytes (for tools), plus the sample count."""
        return {
            "peak_rss_tree_mib": round(self.peak_tree_bytes / 2**20, 1),
            "peak_rss_process_mib": round(self.peak_process_bytes / 2**20, 1),
            "peak_rss_tree_bytes": self.peak_tree_bytes,
            "peak_rss_process_bytes": self.peak_process_bytes,
            "rss_samples": self.samples,
            "rss_interval_s": self.interval,
        }
