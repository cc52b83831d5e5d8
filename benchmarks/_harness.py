"""Shared plumbing for the benchmark scripts: choosing files, running a per-file function
over a process pool with a per-file time limit, measuring wall time and peak RSS, and
writing results.

Kept free of third-party imports except psutil so it runs under any
interpreter: the project's venv for floors, a peer's own venv for peers.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import multiprocessing
import os
import platform
import random
import resource
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import psutil
from _rss import PeakRSS

Record = dict[str, Any]
FileFn = Callable[[str], Record]


# --------------------------------------------------------------------------- selection


def add_selection_args(parser: argparse.ArgumentParser, default_pattern: str) -> None:
    """Add the file-selection options every benchmark script shares."""
    parser.add_argument(
        "paths", nargs="*", type=Path, help="files, or folders searched recursively"
    )
    parser.add_argument(
        "--files-from",
        type=Path,
        help="file listing one path per line (relative paths: relative to the list's folder)",
    )
    parser.add_argument(
        "--pattern",
        default=default_pattern,
        help=f"file-name glob for folder walks, case-insensitive (default {default_pattern!r})",
    )
    parser.add_argument(
        "--sample", type=int, help="take N files after a seeded shuffle of the sorted selection"
    )
    parser.add_argument("--seed", type=int, default=0, help="shuffle seed for --sample")
    parser.add_argument("--limit", type=int, help="keep only the first N files")


def _walk(root: Path, pattern: str) -> Iterator[Path]:
    pat = pattern.lower()
    for dirpath, dirnames, filenames in os.walk(root):
        # Hidden folders and files are bookkeeping (e.g. the fetch script's markers).
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and fnmatch.fnmatch(name.lower(), pat):
                yield Path(dirpath, name)


def _read_list(list_file: Path) -> list[Path]:
    base = list_file.resolve().parent
    out: list[Path] = []
    for line in list_file.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            out.append(base / line)
    return out


def select_files(args: argparse.Namespace) -> list[Path]:
    """Resolve the selection options to an ordered list of files.

    Folder walks are sorted by path; `--sample` sorts the whole selection, shuffles it
    with `--seed` and keeps the first N, so the same corpus and seed always give the
    same files (wherever the corpus lives, as long as it is under one folder).
    """
    files: list[Path] = []
    if args.files_from is not None:
        files.extend(_read_list(args.files_from))
    for p in args.paths:
        if p.is_dir():
            # All share the folder's prefix, so this orders by the path under the folder:
            # the same order wherever the corpus lives.
            files.extend(sorted(_walk(p, args.pattern)))
        else:
            files.append(p)
    if not files:
        raise SystemExit("no files selected: give paths or --files-from")
    if args.sample is not None:
        files = sorted(files)
        random.Random(args.seed).shuffle(files)
        files = files[: args.sample]
    if args.limit is not None:
        files = files[: args.limit]
    return files


# --------------------------------------------------------------------------- running


class FileTimeout(Exception):
    """Raised inside a worker when one file takes longer than the per-file limit."""


def _on_alarm(signum: int, frame: FrameType | None) -> None:
    raise FileTimeout


def _run_one(job: tuple[FileFn, str, int]) -> Record:
    fn, path, timeout = job
    start = time.perf_counter()
    rec: Record = {"path": path, "ok": True, "error": None}
    # SIGALRM works because pool workers run tasks on their main thread; it interrupts
    # pure-Python code (pdfminer) at once and C code when it returns to Python.
    old = signal.signal(signal.SIGALRM, _on_alarm)
    signal.alarm(timeout)
    try:
        rec.update(fn(path))
    except FileTimeout:
        rec.update(ok=False, error=f"Timeout: over {timeout} s")
    except Exception as exc:  # the point is to count failures, not to stop on them
        rec.update(ok=False, error=f"{type(exc).__name__}: {exc}"[:500])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)
    rec["seconds"] = round(time.perf_counter() - start, 4)
    return rec


def add_run_args(parser: argparse.ArgumentParser) -> None:
    """Add the pool, output and reporting options every benchmark script shares."""
    parser.add_argument("-p", "--processes", type=int, default=2, help="worker processes")
    parser.add_argument(
        "--timeout", type=int, default=900, help="per-file limit in seconds (default 900)"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("--out", type=Path, help="write summary and per-file records as JSON")
    parser.add_argument(
        "--progress", type=int, default=25, help="log progress to stderr every N files (0: off)"
    )


@dataclass
class RunResult:
    """What one pool run measured."""

    records: list[Record]  # one per file, in input order
    seconds: float  # wall clock, pool start-up included
    rss: PeakRSS
    cpu: dict[str, float]  # see _cpu_report

    def measures(self) -> dict[str, Any]:
        """RSS and CPU figures, flat, for a summary."""
        return {**self.rss.as_dict(), **self.cpu}


def _busy_seconds(t: Any) -> float:
    # Everything but idle and iowait: time any process (ours or not) had a CPU, or the
    # hypervisor took it (steal). guest times are already inside user/nice on Linux.
    skip = ("idle", "iowait", "guest", "guest_nice")
    return float(sum(v for k, v in t._asdict().items() if k not in skip))


def _cpu_report(before: Any, after: Any, ru0: Any, ru1: Any, wall: float) -> dict[str, float]:
    """Our tree's CPU seconds against the whole machine's over the run.

    The machine may be shared (a test suite running beside the benchmark); then
    `other_cpu_s` is large and the throughput figures are low. Timings are only
    comparable between runs whose `other_cpu_share` is near 0.
    """
    ours = sum(
        (b.ru_utime - a.ru_utime) + (b.ru_stime - a.ru_stime) for a, b in zip(ru0, ru1, strict=True)
    )
    busy = _busy_seconds(after) - _busy_seconds(before)
    other = max(busy - ours, 0.0)
    capacity = wall * (os.cpu_count() or 1)
    return {
        "tree_cpu_s": round(ours, 2),
        "other_cpu_s": round(other, 2),
        "other_cpu_share": round(other / capacity, 3) if capacity else 0.0,
        "loadavg_1m_end": round(os.getloadavg()[0], 2),
    }


def run_pool(
    fn: FileFn,
    files: Sequence[Path],
    processes: int,
    timeout: int,
    initializer: Callable[[], object] | None = None,
    progress: int = 0,
) -> RunResult:
    """Run `fn(path)` for every file over a pool of `processes` workers.

    The clock starts before the pool so worker start-up (importing a heavy peer
    library) counts: a user pays it too.
    """
    jobs = [(fn, str(f), timeout) for f in files]
    records: list[Record] = []
    cpu0 = psutil.cpu_times()
    ru0 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    start = time.perf_counter()
    # The pool forks its workers before the sampler thread exists (forking a threaded
    # process is fragile); the sampler still sees the workers' start-up imports grow.
    with multiprocessing.Pool(processes, initializer=initializer) as pool, PeakRSS() as rss:
        # chunksize 1: file costs vary by orders of magnitude, so hand them out singly.
        for rec in pool.imap_unordered(_run_one, jobs, chunksize=1):
            records.append(rec)
            if progress and len(records) % progress == 0:
                elapsed = time.perf_counter() - start
                failed = sum(not r["ok"] for r in records)
                print(
                    f"[{elapsed:7.1f}s] {len(records)}/{len(jobs)} files, {failed} failed",
                    file=sys.stderr,
                    flush=True,
                )
        pool.close()
        # join() reaps the workers, so RUSAGE_CHILDREN below includes their CPU time.
        pool.join()
    seconds = time.perf_counter() - start
    ru1 = (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    cpu = _cpu_report(cpu0, psutil.cpu_times(), ru0, ru1, seconds)
    order = {str(f): i for i, f in enumerate(files)}
    records.sort(key=lambda r: order[r["path"]])
    return RunResult(records, seconds, rss, cpu)


# --------------------------------------------------------------------------- reporting


def environment() -> dict[str, Any]:
    """Where the numbers were taken, so results from different machines are not mixed."""
    return {
        "python": platform.python_version(),
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def emit(summary: dict[str, Any], records: list[Record], args: argparse.Namespace) -> None:
    """Print the summary (JSON or one line per field) and write the full result file."""
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps({"summary": summary, "files": records}, indent=1) + "\n",
            encoding="utf-8",
        )
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        for key, value in summary.items():
            if not isinstance(value, dict | list):
                print(f"{key:>24}: {value}")
