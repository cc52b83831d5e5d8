"""HTTP API under load: search latency and job throughput while 100 clients follow a job's
event stream and others search, against the same job alone.

    python benchmarks/bench_api_load.py --work /tmp/gristmill-bench/api-load
    python benchmarks/bench_api_load.py --quick          # one short round, to try it out

What it does (everything but the index build talks to ``gristmill serve`` over HTTP):

1. **Index** (built once, cached in ``WORK/index``): real text from ``/usr/share/doc``
   (changelogs, NEWS, READMEs, manuals, HTML API docs; ``.gz`` decompressed; binary,
   PostScript, PDF, logs, JSON, symbol files and exact duplicates left out; ``.html``,
   ``.md``, ``.rst`` kept as such, anything else saved as ``.txt``), files taken in a
   seeded shuffle until ``gristmill ingest --embedder none`` reaches ``--chunks``
   (checked with ``gristmill status --json``). Keyword only: 100k MiniLM embeddings
   would take about an hour on 2 cores, so search is ``mode=keyword`` (BM25, FTS5).
2. **Queries** (cached): 1-3 words drawn from the index's own chunks (a head word chosen
   rare, mid or common by document frequency, the next content words of the same
   chunk after it), each with its number of matching chunks.
3. **Job** (cached in ``WORK/jobs/``): a folder of real files of 1-64 KiB that the index
   does not hold: Python sources (the stdlib, this venv's site-packages, Debian's
   python3 packages) saved as ``.txt``, and the ``/usr/share/doc`` files the index did
   not take; ingested into collection ``job`` of the same knowledge base.
4. **Phases**, ``--repeat`` rounds of A then B, each on a fresh copy of the index's home
   and a fresh server: warm-up, then idle search (``--serial`` searches one at a time,
   then ``--idle-seconds`` of the search load below), then the job: (A) alone, (B) with
   ``--sse-clients`` clients following ``/jobs/ID/events`` and the searchers sending
   ``--search-rate`` searches/s (open loop, Poisson arrivals, at most ``--searchers``
   in flight; 0 = closed loop), then ``--serial`` searches again on the idle server,
   whose index now also holds the job's chunks. ``--breakdown`` adds (C) the job with
   the SSE clients only and (D) with the searches only, to tell their costs apart. The
   load runs in a separate process (``_api_loadgen.py``); the job's items/s come from
   its own counters (done / (finished_at - started_at)).

Results (JSON) go to ``WORK/results/``; a markdown table is printed. CPU seconds are
split between the server, the job's process tree, the load generator and everything
else on the machine (``other``): on 2 cores they all share the same CPUs.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import random
import re
import resource
import secrets
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from _harness import _busy_seconds, environment

HERE = Path(__file__).resolve().parent
LOADGEN = HERE / "_api_loadgen.py"
INDEX_COLLECTION = "kb"
JOB_COLLECTION = "job"
FINAL_STATES = {"succeeded", "failed", "cancelled"}

# --------------------------------------------------------------------------- corpus

_DOC_SKIP_EXT = {
    ".ps", ".pdf", ".dvi", ".eps", ".sym", ".log", ".json", ".svg", ".png", ".jpg",
    ".jpeg", ".gif", ".ico", ".xpm", ".bmp", ".css", ".js", ".map", ".tar", ".zip",
    ".tgz", ".bz2", ".xz", ".ttf", ".woff", ".woff2", ".bin", ".db", ".mo", ".gpg",
}
_DOC_SKIP_NAMES = {"all.html"}  # nodejs's one-page copy of its per-module API pages
_KEEP_EXT = {".txt", ".md", ".rst", ".html", ".htm"}
_TAG = re.compile(r"<[^>]*>")


def _as_text(data: bytes) -> str | None:
    """The text of ``data`` if it is UTF-8 text (not binary, few control characters)."""
    if b"\x00" in data[:65536]:
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    head = text[:200_000]
    control = sum(1 for c in head if ord(c) < 32 and c not in "\n\r\t\f")
    return text if control <= len(head) * 0.01 else None


def _doc_candidates(roots: list[Path]) -> list[tuple[Path, Path]]:
    """(file, name under the corpus folder) for every file that may hold text."""
    out = []
    for root in roots:
        tag = root.as_posix().strip("/").replace("/", "-")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                if path.is_symlink() or not path.is_file():
                    continue
                inner = name[:-3] if name.endswith(".gz") else name
                ext = Path(inner).suffix.lower()
                if ext in _DOC_SKIP_EXT or inner in _DOC_SKIP_NAMES:
                    continue
                rel = Path(tag, path.relative_to(root).parent, inner)
                if ext not in _KEEP_EXT:
                    rel = rel.with_name(rel.name + ".txt")
                out.append((path, rel))
    return out


def _read_text(path: Path) -> str | None:
    try:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
    except (OSError, EOFError, gzip.BadGzipFile):
        return None
    return _as_text(data)


def _gristmill_env(home: Path, args: argparse.Namespace, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GRISTMILL_")}
    env["GRISTMILL_HOME"] = str(home)
    env["GRISTMILL_EMBEDDER"] = "none"
    if args.gristmill_src:
        env["PYTHONPATH"] = os.pathsep.join(
            [str(Path(args.gristmill_src).resolve()), *filter(None, [env.get("PYTHONPATH")])])
    env.update({f"GRISTMILL_{k.upper()}": v for k, v in extra.items()})
    return env


def _gristmill(args: argparse.Namespace, home: Path, *argv: str
              ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "gristmill", *argv],
                          env=_gristmill_env(home, args), cwd=home.parent, text=True,
                          capture_output=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        raise SystemExit(f"gristmill {' '.join(argv)}: exit {done.returncode}\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return done


def _status(args: argparse.Namespace, home: Path) -> dict[str, Any]:
    return json.loads(_gristmill(args, home, "status", "--json").stdout)


def build_index(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The cached home holding ``--chunks`` chunks of real text; built if missing."""
    base = work / "index"
    meta_path = base / "meta.json"
    if meta_path.exists() and not args.rebuild:
        meta = json.loads(meta_path.read_text())
        if meta["chunks"] >= args.chunks and (base / "home" / "gristmill.db").exists():
            meta["reused"] = True
            return meta
    shutil.rmtree(base, ignore_errors=True)
    (base / "src").mkdir(parents=True)
    home = base / "home"
    roots = [Path(p) for p in args.index_source]
    t0 = time.perf_counter()
    candidates = _doc_candidates(roots)
    random.Random(0).shuffle(candidates)
    print(f"[index] {len(candidates)} candidate files under {', '.join(map(str, roots))}",
          file=sys.stderr, flush=True)
    seen: set[bytes] = set()
    todo = iter(candidates)
    chars_per_chunk = 700.0  # a first guess; recalibrated after each ingest
    written = written_bytes = written_chars = 0
    skipped = {"not text": 0, "duplicate": 0}
    prepare_s = ingest_s = 0.0
    chunks = 0
    ingests = []
    while chunks < args.chunks:
        want = (args.chunks - chunks) * chars_per_chunk * 1.05
        added = 0.0
        t_prep = time.perf_counter()
        for path, rel in todo:
            text = _read_text(path)
            if text is None:
                skipped["not text"] += 1
                continue
            digest = hashlib.sha256(text.encode()).digest()
            if digest in seen:
                skipped["duplicate"] += 1
                continue
            seen.add(digest)
            dest = base / "src" / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
            written += 1
            written_bytes += len(text.encode())
            visible = len(_TAG.sub(" ", text)) if rel.suffix in (".html", ".htm") else len(text)
            written_chars += visible
            added += visible
            if added >= want:
                break
        prepare_s += time.perf_counter() - t_prep
        if added == 0:
            raise SystemExit(f"the sources give only {chunks} chunks: add folders of text "
                             "with --index-source")
        t_ing = time.perf_counter()
        done = _gristmill(args, home, "ingest", str(base / "src"), "--collection",
                          INDEX_COLLECTION)
        ingests.append({"seconds": round(time.perf_counter() - t_ing, 2),
                        "summary": done.stdout.strip().splitlines()[-3:]})
        ingest_s += time.perf_counter() - t_ing
        chunks = _status(args, home)["chunks"]
        chars_per_chunk = written_chars / max(chunks, 1)
        print(f"[index] {written} files, {written_bytes / 1e6:.1f} MB -> {chunks} chunks "
              f"({ingests[-1]['seconds']} s)", file=sys.stderr, flush=True)
    status = _status(args, home)
    db = home / "gristmill.db"
    meta = {
        "sources": [str(r) for r in roots], "files": written, "text_bytes": written_bytes,
        "skipped_candidates": skipped, "chunks": status["chunks"], "items": status["items"],
        "db_bytes": sum(f.stat().st_size for f in home.glob("gristmill.db*")),
        "prepare_s": round(prepare_s, 1), "ingest_s": round(ingest_s, 1), "ingests": ingests,
        "build_s": round(time.perf_counter() - t0, 1), "built_at": time.strftime("%F %T"),
        "reused": False,
    }
    assert db.exists()
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


_STOP = set("""a about above after again against all also am an and any are as at be
because been before being below between both but by can could did do does doing down
during each few for from further had has have having he her here hers herself him himself
his how i if in into is it its itself just me more most my myself no nor not now of off
on once only or other our ours out over own same she should so some such than that the
their theirs them themselves then there these they this those through to too under until
up very was we were what when where which while who whom why will with would you your
yours yes use used using may must one two new see get set""".split())
_WORD = re.compile(r"[a-z]{3,20}")


def build_queries(work: Path, n: int) -> list[dict[str, Any]]:
    """``n`` queries of 1-3 words from the index's chunks, with their match counts."""
    path = work / "index" / "queries.json"
    if path.exists():
        queries = json.loads(path.read_text())
        if len(queries) >= n:
            return queries[:n]
    t0 = time.perf_counter()
    db = work / "index" / "home" / "gristmill.db"
    con = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    total = con.execute("SELECT count(*) FROM chunks").fetchone()[0]
    step = max(1, total // 30_000)
    texts = [t for (t,) in con.execute(
        "SELECT text FROM chunks WHERE id % ? = 0 AND collection = ?", (step, INDEX_COLLECTION))]
    df: Counter[str] = Counter()
    docs = []
    for text in texts:
        words = _WORD.findall(text.lower())
        docs.append(words)
        df.update(set(words))
    m = len(texts)

    def klass(word: str) -> str | None:
        d = df[word]
        if word in _STOP or d > 0.2 * m:
            return None
        if d <= 3:
            return "rare"
        return "mid" if d <= 0.01 * m else "common"

    rng = random.Random(0)
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    while len(out) < n:
        length = rng.choices([1, 2, 3], [0.4, 0.4, 0.2])[0]
        want = rng.choices(["rare", "mid", "common"], [0.3, 0.4, 0.3])[0]
        content = [w for w in rng.choice(docs) if klass(w) is not None]
        spots = [i for i, w in enumerate(content) if klass(w) == want]
        if not spots:
            continue
        i = rng.choice(spots)
        words = list(dict.fromkeys(content[i:i + length]))
        q = " ".join(words)
        if len(words) < length or q in seen:
            continue
        seen.add(q)
        match = " OR ".join(f'"{w}"' for w in words)
        matches = con.execute("SELECT count(*) FROM chunks_fts WHERE chunks_fts MATCH ?",
                              (match,)).fetchone()[0]
        out.append({"q": q, "head": want, "words": len(words), "matches": matches})
    con.close()
    path.write_text(json.dumps(out) + "\n")
    print(f"[queries] {n} queries in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return out


def _python_roots() -> list[Path]:
    paths = sysconfig.get_paths()
    found = [Path(paths["stdlib"]), Path(paths["purelib"]), Path("/usr/lib/python3/dist-packages")]
    found += sorted(Path("/usr/lib").glob("python3.[0-9]*"))
    out: list[Path] = []
    for p in found:
        if p.is_dir() and p.resolve() not in [q.resolve() for q in out]:
            out.append(p)
    return out


def _job_candidates(args: argparse.Namespace, work: Path) -> list[tuple[Path, Path]]:
    """(file, name in the job's folder): Python sources, and the documentation files of
    ``--index-source`` that the index did not take."""
    files: list[tuple[Path, Path]] = []
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    for root in _python_roots():
        tag = root.as_posix().strip("/").replace("/", "-")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
            if Path(dirpath) == stdlib:  # its site-packages is another root, or not ours
                dirnames[:] = [d for d in dirnames if d not in ("site-packages", "dist-packages")]
            for name in sorted(filenames):
                if name.endswith(".py"):
                    path = Path(dirpath, name)
                    files.append((path, Path(tag, path.relative_to(root)).with_suffix(".py.txt")))
    in_index = work / "index" / "src"
    for path, rel in _doc_candidates([Path(p) for p in args.index_source]):
        if not (in_index / rel).exists():
            files.append((path, Path("doc", rel)))
    return files


def _job_dir(args: argparse.Namespace, work: Path) -> Path:
    """One cached folder per job size, so a --quick run does not replace the full one."""
    return work / "jobs" / f"{args.job_files}-{args.job_min_bytes}-{args.job_max_bytes}"


def build_job(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """The job's folder (cached): up to ``--job-files`` real files of 1-64 KiB (by
    default) that the index does not hold: Python sources (the stdlib, this venv's
    site-packages, Debian's python3 packages) saved as ``.txt``, and the documentation
    files the index did not take."""
    base = _job_dir(args, work)
    meta_path = base / "meta.json"
    wanted = [args.job_files, args.job_min_bytes, args.job_max_bytes]
    if meta_path.exists() and not args.rebuild:
        meta = json.loads(meta_path.read_text())
        if meta["requested"] == wanted:
            return meta
    shutil.rmtree(base, ignore_errors=True)
    src = base / "src"
    src.mkdir(parents=True)
    # Identical texts would be copied from the index, not extracted: leave them out.
    seen = {hashlib.sha256(f.read_bytes()).digest()
            for f in (work / "index" / "src").rglob("*") if f.is_file()}
    files = _job_candidates(args, work)
    random.Random(0).shuffle(files)
    count = size = 0
    kinds: Counter[str] = Counter()
    for path, rel in files:
        if args.job_files and count >= args.job_files:
            break
        text = _read_text(path)
        if text is None:
            continue
        data = text.encode()
        if not args.job_min_bytes <= len(data) <= args.job_max_bytes:
            continue
        digest = hashlib.sha256(data).digest()
        if digest in seen:
            continue
        seen.add(digest)
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(data)
        count += 1
        size += len(data)
        kinds["docs" if rel.parts[0] == "doc" else "python"] += 1
    meta = {"requested": wanted, "files": count, "bytes": size, "kinds": dict(kinds),
            "sources": [str(r) for r in _python_roots()] + list(args.index_source)}
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")
    return meta


# --------------------------------------------------------------------------- measuring


class Sampler:
    """Samples, every ``interval`` s: the machine's busy CPU, the server's RSS and CPU,
    the RSS of the server's whole tree (the job process and its workers are its
    descendants), the load generator's RSS and CPU, and this process's CPU."""

    def __init__(self, server_pid: int, interval: float = 0.2) -> None:
        self.server = psutil.Process(server_pid)
        self.loadgen: psutil.Process | None = None
        self.interval = interval
        self.samples: list[dict[str, float]] = []
        self.seen_pids: set[int] = set()
        self.driver_cpu: dict[int, float] = {}  # job processes (the server's children)
        self.job_seen_at = 0.0  # the last sample that saw a live process under the server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def _sample(self) -> None:
        s: dict[str, float] = {"t": time.time(), "busy": _busy_seconds(psutil.cpu_times())}
        ru = resource.getrusage(resource.RUSAGE_SELF)
        s["self_cpu"] = ru.ru_utime + ru.ru_stime
        try:
            ct = self.server.cpu_times()
            s["server_cpu"] = ct.user + ct.system
            s["server_rss"] = self.server.memory_info().rss
            tree = s["server_rss"]
            for child in self.server.children(recursive=True):
                self.seen_pids.add(child.pid)
                try:
                    tree += child.memory_info().rss
                    if child.status() != psutil.STATUS_ZOMBIE:
                        self.job_seen_at = s["t"]
                    if child.ppid() == self.server.pid:
                        t = child.cpu_times()
                        self.driver_cpu[child.pid] = t.user + t.system
                except psutil.Error:
                    pass
            s["tree_rss"] = tree
        except psutil.Error:
            return
        if self.loadgen is not None:
            try:
                lt = self.loadgen.cpu_times()
                s["loadgen_cpu"] = lt.user + lt.system
                s["loadgen_rss"] = self.loadgen.memory_info().rss
            except psutil.Error:
                pass
        self.samples.append(s)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._sample()
            self._stop.wait(self.interval)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def window(self, t0: float, t1: float) -> dict[str, Any]:
        inside = [s for s in self.samples if t0 <= s["t"] <= t1]
        if len(inside) < 2:
            return {}
        a, b = inside[0], inside[-1]
        span = b["t"] - a["t"]
        out = {
            "seconds": round(span, 2),
            "busy_cpu_s": round(b["busy"] - a["busy"], 2),
            "server_cpu_s": round(b["server_cpu"] - a["server_cpu"], 2),
            "controller_cpu_s": round(b["self_cpu"] - a["self_cpu"], 2),
            "peak_server_rss_mib": round(max(s["server_rss"] for s in inside) / 2**20, 1),
            "peak_tree_rss_mib": round(max(s["tree_rss"] for s in inside) / 2**20, 1),
        }
        lg = [s for s in inside if "loadgen_rss" in s]
        if lg:
            out["peak_loadgen_rss_mib"] = round(max(s["loadgen_rss"] for s in lg) / 2**20, 1)
        return out


def _start_server(args: argparse.Namespace, home: Path, roots: Path, token: str,
                  log: Path) -> tuple[subprocess.Popen[bytes], str]:
    env = _gristmill_env(home, args, source_roots=str(roots), api_token=token,
                         # The load generator is one client standing for many users:
                         # a per-client search limit (if this version has one) would
                         # measure the limiter, not the server.
                         search_rate_limit=args.server_rate_limit,
                         **dict(pair.split("=", 1) for pair in args.server_setting))
    seen = log.stat().st_size if log.exists() else 0
    with open(log, "ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gristmill", "serve", "--port", "0"],
                                env=env, cwd=home.parent, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.findall(r"Uvicorn running on (http://127\.0\.0\.1:\d+)",
                           log.read_bytes()[seen:].decode(errors="replace"))
        if found:
            return proc, found[-1]
        if proc.poll() is not None:
            raise SystemExit(f"the server exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"the server did not start:\n{log.read_text()[-3000:]}")


def _stop_server(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _live_children(proc: psutil.Process) -> list[psutil.Process]:
    out = []
    for child in proc.children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                out.append(child)
        except psutil.Error:
            pass
    return out


def _become_subreaper() -> bool:
    """Make orphaned descendants (a job's fork server) our children, so their CPU can be
    counted when we reap them (Linux prctl PR_SET_CHILD_SUBREAPER)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _reap_orphans(keep: set[int], timeout: float = 30.0) -> float:
    """Wait for our children other than ``keep`` (orphans adopted as a subreaper); the
    CPU seconds they and the children they reaped used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    deadline = time.monotonic() + timeout
    for child in psutil.Process().children():
        if child.pid in keep:
            continue
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except psutil.TimeoutExpired:
            print(f"[warn] process {child.pid} left by the job is still running",
                  file=sys.stderr)
        except psutil.Error:
            pass
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _proc_cpu() -> dict[tuple[int, float], tuple[str, float]]:
    """CPU seconds so far of every process, keyed by (pid, start time)."""
    out = {}
    for proc in psutil.process_iter(["name", "cmdline", "create_time", "cpu_times"]):
        info = proc.info
        if info["cpu_times"] is None:
            continue
        name = " ".join(info["cmdline"] or [info["name"] or "?"])[:100]
        out[(proc.pid, info["create_time"])] = (name, info["cpu_times"].user
                                                + info["cpu_times"].system)
    return out


def _top_others(before: dict[tuple[int, float], tuple[str, float]],
                after: dict[tuple[int, float], tuple[str, float]], ours: set[int],
                n: int = 5) -> list[list[Any]]:
    """The processes outside the benchmark that used the most CPU between two snapshots
    (those that started and ended in between are not seen)."""
    used = []
    for key, (name, cpu) in after.items():
        if key[0] in ours:
            continue
        spent = cpu - before.get(key, (name, 0.0))[1]
        if spent >= 0.2:
            used.append([round(spent, 2), key[0], name])
    return sorted(used, reverse=True)[:n]


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    v = sorted(values)
    return v[min(len(v) - 1, max(0, round(q / 100 * len(v) + 0.5) - 1))]


def _latency(records: list[list[Any]], t0: float | None = None, t1: float | None = None
             ) -> dict[str, Any]:
    """Latency percentiles (ms) of the searches scheduled in [t0, t1]."""
    chosen = [r for r in records
              if (t0 is None or r[0] >= t0) and (t1 is None or r[0] <= t1)]
    ok = [r[1] * 1000 for r in chosen if r[3] == 200]
    service = [r[2] * 1000 for r in chosen if r[3] == 200]
    span = (max(r[0] for r in chosen) - min(r[0] for r in chosen)) if len(chosen) > 1 else 0
    out: dict[str, Any] = {
        "n": len(chosen), "ok": len(ok),
        "errors": sum(1 for r in chosen if r[3] not in (200, 429, -2)),
        "throttled_429": sum(1 for r in chosen if r[3] == 429),
        "not_sent": sum(1 for r in chosen if r[3] == -2),
        "zero_hits": sum(1 for r in chosen if r[3] == 200 and r[5] == 0),
        "rate_per_s": round(len(chosen) / span, 2) if span else None,
    }
    for name, vals in (("", ok), ("service_", service)):
        for q in (50, 95, 99):
            p = _pct(vals, q)
            out[f"{name}p{q}_ms"] = None if p is None else round(p, 1)
    out["max_ms"] = round(max(ok), 1) if ok else None
    out["mean_ms"] = round(statistics.fmean(ok), 1) if ok else None
    return out


def _by_matches(records: list[list[Any]], queries: list[dict[str, Any]], t0: float | None,
                t1: float | None) -> dict[str, Any]:
    bands = [(0, 100, "<100"), (100, 1000, "100-1k"), (1000, 10_000, "1k-10k"),
             (10_000, 10**9, ">=10k")]
    out = {}
    for lo, hi, name in bands:
        sel = [r for r in records if lo <= queries[r[4] % len(queries)]["matches"] < hi]
        out[name] = _latency(sel, t0, t1)
    return out


def run_phase(args: argparse.Namespace, work: Path, kind: str, round_no: int,
              queries_path: Path) -> dict[str, Any]:
    """One phase on a fresh copy of the index: idle search, then the job (alone or
    under load)."""
    run_dir = work / "run"
    home = run_dir / "home"
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    t_copy = time.perf_counter()
    shutil.copytree(work / "index" / "home", home)
    os.sync()  # the copy's writeback must not land inside the measurement
    copy_s = time.perf_counter() - t_copy
    token = secrets.token_urlsafe(24)
    sse_on, search_on = kind in ("load", "sse"), kind in ("load", "search")
    queries = json.loads(queries_path.read_text())
    job_dir = _job_dir(args, work)
    proc, url = _start_server(args, home, job_dir, token, run_dir / "serve.log")
    sampler = Sampler(proc.pid).start()
    cpu0 = psutil.cpu_times()
    steps = [
        # Each step starts at its own place in the query list, so no step repeats the
        # queries an earlier one sent to this server (and warmed its caches for).
        {"kind": "serial", "count": 30, "offset": len(queries) - 30, "label": "warm-up"},
        {"kind": "serial", "count": args.serial, "offset": 0, "label": "idle-serial"},
        {"kind": "searches", "seconds": args.idle_seconds, "searchers": args.searchers,
         "rate": args.search_rate, "offset": len(queries) // 3, "label": "idle-load"},
        {"kind": "job", "source": str(job_dir / "src"), "collection": JOB_COLLECTION,
         "sse_clients": args.sse_clients if sse_on else 0,
         "searchers": args.searchers if search_on else 0,
         "rate": args.search_rate if search_on else 0, "offset": 2 * len(queries) // 3,
         "label": "job"},
        # The same idle measure once the job has ended: the index now also holds the
        # job's chunks (how much of the slowdown during the job is the bigger index).
        {"kind": "serial", "count": args.serial, "offset": len(queries) // 6,
         "pause_before": 3.0, "label": "after-job-serial"},
    ]
    cfg = {"url": url, "token": token, "queries": queries,
           "k": args.k, "search_mode": args.mode, "steps": steps}
    cfg_path = run_dir / "loadgen.json"
    out_path = run_dir / "loadgen-out.json"
    cfg_path.write_text(json.dumps(cfg))
    loadavg0 = os.getloadavg()[0]
    procs0 = _proc_cpu()
    lg = subprocess.Popen([sys.executable, str(LOADGEN), str(cfg_path), str(out_path)],
                          stdin=subprocess.DEVNULL)
    sampler.loadgen = psutil.Process(lg.pid)
    rc = lg.wait()
    if rc != 0:
        sampler.stop()
        _stop_server(proc)
        raise SystemExit(f"the load generator failed (exit {rc}); server log: "
                         f"{run_dir / 'serve.log'}")
    result = json.loads(out_path.read_text())
    by_label = {step["label"]: step for step in result["steps"]}
    job_step = by_label["job"]
    # The job process writes its end, then shuts its pool down: wait until it has gone,
    # then let the server reap it, so the server's children CPU is the job tree's.
    server = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while _live_children(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"},
                      timeout=30) as client:
        final = client.get(f"/api/v1/jobs/{job_step['job_id']}").json()
    # Processes the job left behind (its multiprocessing fork server, which reaps the
    # pool's workers) are this process's children now (a subreaper): reaping them adds
    # their CPU, and their workers', to our RUSAGE_CHILDREN.
    orphan_cpu = _reap_orphans(keep={proc.pid})
    time.sleep(0.3)
    sampler.stop()
    job_exit = sampler.job_seen_at + sampler.interval
    ct = server.cpu_times()
    job_tree_cpu = ct.children_user + ct.children_system + orphan_cpu
    ours = {os.getpid(), proc.pid, lg.pid, *(c.pid for c in server.children(recursive=True))}
    ours |= {int(x) for x in sampler.seen_pids}
    top_others = _top_others(procs0, _proc_cpu(), ours)
    cpu1 = psutil.cpu_times()
    _stop_server(proc)
    # A server that never reaped the job's process leaves it to us (the subreaper) now.
    late = _reap_orphans(keep=set(), timeout=10)
    job_tree_cpu += late
    orphan_cpu += late
    loadavg1 = os.getloadavg()[0]

    job = final
    started, finished = job["started_at"], job["finished_at"]
    # CPU is counted from the job's creation to its process tree's exit (the pool's
    # shutdown after finished_at included); items/s from its own counters.
    window = sampler.window(started, job_exit)
    lg_job_cpu = job_step["loadgen_cpu_s"]
    other = window.get("busy_cpu_s", 0) - window.get("server_cpu_s", 0) - job_tree_cpu \
        - lg_job_cpu - window.get("controller_cpu_s", 0)
    duration = finished - started
    idle_step = by_label["idle-load"]
    phase = {
        "kind": kind, "round": round_no, "copy_s": round(copy_s, 2),
        "job_window": [started, finished],
        "loadavg_1m_start": round(loadavg0, 2), "loadavg_1m_end": round(loadavg1, 2),
        "job": {"id": job["id"], "state": job["state"], "done": job["done"],
                "items": job["items"], "chunks": job.get("chunks"),
                "seconds": round(duration, 2),
                "items_per_s": round(job["done"] / duration, 2),
                "chunks_per_s": round((job.get("chunks") or 0) / duration, 1),
                "poll_errors": job_step["poll_errors"]},
        "cpu_in_job": {
            "seconds": round(duration, 2), "busy_cpu_s": window.get("busy_cpu_s"),
            "server_cpu_s": window.get("server_cpu_s"),
            "job_tree_cpu_s": round(job_tree_cpu, 2), "loadgen_cpu_s": lg_job_cpu,
            # the job's driver process alone (its last sample): the rest is its workers
            "job_driver_cpu_s": round(sum(sampler.driver_cpu.values()), 2),
            "controller_cpu_s": window.get("controller_cpu_s"),
            "other_cpu_s": round(max(other, 0.0), 2),
            "other_cpu_share": round(max(other, 0.0) / (window.get("seconds", duration)
                                                        * (os.cpu_count() or 1)), 3),
            "cpu_window_s": window.get("seconds"), "orphan_cpu_s": round(orphan_cpu, 2),
        },
        "top_other_processes": top_others,
        "machine_cpu_whole_phase_s": round(_busy_seconds(cpu1) - _busy_seconds(cpu0), 1),
        "rss_in_job": {k: v for k, v in window.items() if "rss" in k},
        "rss_whole_phase": {k: v for k, v in sampler.window(0, 1e12).items() if "rss" in k},
        "search_idle_serial": _latency(by_label["idle-serial"]["searches"]),
        "search_after_job_serial": _latency(by_label["after-job-serial"]["searches"]),
        "search_idle_load": _latency(idle_step["searches"]),
        "idle_load_cpu": {"loadgen_cpu_s": idle_step["loadgen_cpu_s"],
                          **sampler.window(idle_step["start_epoch"], idle_step["end_epoch"])},
        "loadgen_max_rss_mib": result["loadgen_max_rss_mib"],
        "raw": {"idle_serial": by_label["idle-serial"]["searches"],
                "after_job_serial": by_label["after-job-serial"]["searches"],
                "idle_load": idle_step["searches"], "job": job_step["searches"]},
    }
    idle_searches = phase["search_idle_load"]["n"]
    if idle_searches and phase["idle_load_cpu"].get("server_cpu_s") is not None:
        phase["idle_load_cpu"]["server_cpu_ms_per_search"] = round(
            1000 * phase["idle_load_cpu"]["server_cpu_s"] / idle_searches, 2)
    if search_on:
        phase["search_in_job"] = _latency(job_step["searches"], started, finished)
        phase["search_in_job_by_matches"] = _by_matches(
            job_step["searches"], cfg["queries"], started, finished)
    if sse_on:
        sse = job_step["sse"]
        connects = [s["connect_s"] for s in sse if s.get("connect_s") is not None]
        gaps = [s["max_gap_s"] for s in sse if s.get("max_gap_s") is not None]
        finals = [s["final_epoch"] - finished for s in sse if s.get("final_epoch")]
        phase["sse"] = {
            "clients": len(sse),
            "connected": sum(1 for s in sse if s.get("connected")),
            "connect_p95_s": _pct(connects, 95),
            "events": sum(s["events"] for s in sse),
            "events_per_client_median": statistics.median([s["events"] for s in sse]) if sse else 0,
            "kinds": dict(sum((Counter(s["kinds"]) for s in sse), Counter())),
            "reconnects": sum(s["reconnects"] for s in sse),
            "errors": sum(len(s["errors"]) for s in sse),
            "error_kinds": dict(Counter(e for s in sse for e in s["errors"])),
            "got_final_state": sum(1 for s in sse if s.get("final_state")),
            "final_lag_p50_s": _pct(finals, 50), "final_lag_p95_s": _pct(finals, 95),
            "max_gap_p95_s": _pct(gaps, 95),
        }
        phase["raw"]["sse"] = sse
    return phase


# --------------------------------------------------------------------------- report


NOISY = 0.10  # other processes' share of the CPUs above which a phase is marked noisy
KINDS = {"alone": "A: job alone", "load": "B: job + SSE + searches",
         "sse": "C: job + SSE only", "search": "D: job + searches only"}


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def _in_job(phases: list[dict[str, Any]]) -> list[list[Any]]:
    """The searches of the job steps that were scheduled while the job ran."""
    return [r for p in phases for r in p["raw"]["job"]
            if p["job_window"][0] <= r[0] <= p["job_window"][1]]


def _pooled(records: list[list[Any]], rates: list[float | None]) -> dict[str, Any]:
    """Percentiles over the records of several phases; the rate is the median of theirs."""
    out = _latency(records)
    out["rate_per_s"] = _median([r for r in rates if r is not None])
    return out


def summarize(phases: list[dict[str, Any]]) -> dict[str, Any]:
    by_kind = {k: [p for p in phases if p["kind"] == k] for k in KINDS}
    alone = {p["round"]: p["job"]["items_per_s"] for p in by_kind["alone"]}
    quiet_alone = {p["round"] for p in by_kind["alone"]
                   if p["cpu_in_job"]["other_cpu_share"] <= NOISY}
    out: dict[str, Any] = {"jobs": {}, "search": {}, "sse": {}}
    for kind, group in by_kind.items():
        if not group:
            continue
        rates = [p["job"]["items_per_s"] for p in group]
        ratios = [p["job"]["items_per_s"] / alone[p["round"]] for p in group
                  if p["round"] in alone]
        cpu = [p["cpu_in_job"] for p in group]
        quiet = [p["job"]["items_per_s"] / alone[p["round"]] for p in group
                 if p["round"] in quiet_alone and p["cpu_in_job"]["other_cpu_share"] <= NOISY]
        out["jobs"][kind] = {
            "items_per_s": rates, "items_per_s_median": _median(rates),
            "ratio_to_alone_per_round": [round(x, 3) for x in ratios],
            "ratio_to_alone_median": _median(ratios),
            # rounds where neither phase was noisy (other processes <= NOISY of the CPUs)
            "ratio_to_alone_quiet_rounds": [round(x, 3) for x in quiet],
            "seconds_median": _median([p["job"]["seconds"] for p in group]),
            **{f"{k}_median": _median([c.get(k) for c in cpu])
               for k in ("server_cpu_s", "job_tree_cpu_s", "job_driver_cpu_s",
                         "loadgen_cpu_s", "other_cpu_s", "other_cpu_share")},
            "peak_server_rss_mib": max(p["rss_in_job"].get("peak_server_rss_mib", 0)
                                       for p in group),
            "peak_tree_rss_mib": max(p["rss_in_job"].get("peak_tree_rss_mib", 0)
                                     for p in group),
        }
        if kind in ("load", "search"):
            out["search"][f"in_job_{kind}"] = _pooled(
                _in_job(group), [p["search_in_job"]["rate_per_s"] for p in group])
            out["search"][f"in_job_{kind}"]["p95_ms_per_round"] = [
                p["search_in_job"]["p95_ms"] for p in group]
        if kind in ("load", "sse"):
            sse = [p["sse"] for p in group]
            out["sse"][kind] = {
                "clients": sse[0]["clients"],
                "connected_min": min(x["connected"] for x in sse),
                "events_per_client_median": _median([x["events_per_client_median"]
                                                     for x in sse]),
                "reconnects": sum(x["reconnects"] for x in sse),
                "errors": sum(x["errors"] for x in sse),
                "got_final_state_min": min(x["got_final_state"] for x in sse),
                "final_lag_p95_s_max": max((x["final_lag_p95_s"] or 0) for x in sse),
                "max_gap_p95_s_max": max((x["max_gap_p95_s"] or 0) for x in sse),
            }
    out["search"]["idle_serial"] = _pooled(
        [r for p in phases for r in p["raw"]["idle_serial"]], [None])
    out["search"]["after_job_serial"] = _pooled(
        [r for p in phases for r in p["raw"].get("after_job_serial", [])], [None])
    out["search"]["idle_load"] = _pooled(
        [r for p in phases for r in p["raw"]["idle_load"]],
        [p["search_idle_load"]["rate_per_s"] for p in phases])
    shares = [p["cpu_in_job"]["other_cpu_share"] for p in phases]
    out["noisy_phases"] = sum(1 for x in shares if x > NOISY)
    out["other_cpu_share_median"] = _median(shares)
    out["server_cpu_ms_per_search_idle_median"] = _median(
        [p["idle_load_cpu"].get("server_cpu_ms_per_search") for p in phases])
    return out


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:.2f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def table(report: dict[str, Any]) -> str:
    s = report["summary"]
    phases = report["phases"]
    cfg = report["config"]
    load = (f"{cfg['sse_clients']} SSE clients + searches at {cfg['search_rate']:g}/s (open "
            f"loop, Poisson, <= {cfg['searchers']} in flight)" if cfg["search_rate"] > 0 else
            f"{cfg['sse_clients']} SSE clients + {cfg['searchers']} closed-loop searchers")
    lines = [
        f"Index: {report['index']['chunks']:,} chunks ({report['index']['files']:,} files, "
        f"{report['index']['text_bytes'] / 1e6:.0f} MB of text); job: "
        f"{report['job_corpus']['files']:,} files ({report['job_corpus']['bytes'] / 1e6:.0f} "
        f"MB); search mode={cfg['mode']}, k={cfg['k']}; load: {load}.",
        "",
        "| search latency, ms: from the scheduled send (service: from the actual send) "
        "| searches | achieved /s | p50 | p95 | p99 | max | service p50 / p95 | errors "
        "| 429 | backlog left unsent |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    rows = [("idle server, one at a time", "idle_serial"),
            ("idle server, the search load", "idle_load"),
            ("during the job, + SSE clients (B)", "in_job_load"),
            ("during the job, no SSE clients (D)", "in_job_search"),
            ("idle server after the job (index + the job's chunks), one at a time",
             "after_job_serial")]
    for name, key in rows:
        x = s["search"].get(key)
        if x and x["n"]:
            lines.append(f"| {name} | {x['n']:,} | {_fmt(x['rate_per_s'])} | "
                         f"{_fmt(x['p50_ms'])} | {_fmt(x['p95_ms'])} | {_fmt(x['p99_ms'])} | "
                         f"{_fmt(x['max_ms'])} | {_fmt(x['service_p50_ms'])} / "
                         f"{_fmt(x['service_p95_ms'])} | {x['errors']} | "
                         f"{x['throttled_429']} | {x['not_sent']} |")
    load_phases = [p for p in phases if p["kind"] == "load"]
    if load_phases:
        lines += ["", "| B: search latency by chunks the query matches | searches | p50 ms "
                  "| p95 ms | p99 ms |", "|---|---:|---:|---:|---:|"]
        for band, x in _by_matches(_in_job(load_phases), report["_queries"], None,
                                   None).items():
            lines.append(f"| {band} | {x['n']:,} | {_fmt(x['p50_ms'])} | {_fmt(x['p95_ms'])} "
                         f"| {_fmt(x['p99_ms'])} |")
    lines += ["", "| job | items/s per round | median | vs A (median of per-round ratios) "
              "| vs A, rounds where both were quiet | job s "
              "| CPU s in the job: server / job tree (its driver) / load gen / other "
              "| peak RSS MiB: server / server + job tree |",
              "|---|---|---:|---:|---|---:|---|---|"]
    for kind, j in s["jobs"].items():
        lines.append(
            f"| {KINDS[kind]} | {', '.join(_fmt(x) for x in j['items_per_s'])} | "
            f"{_fmt(j['items_per_s_median'])} | {_fmt(j['ratio_to_alone_median'])} | "
            f"{', '.join(_fmt(x) for x in j['ratio_to_alone_quiet_rounds']) or '-'} | "
            f"{_fmt(j['seconds_median'])} | {_fmt(j['server_cpu_s_median'])} / "
            f"{_fmt(j['job_tree_cpu_s_median'])} ({_fmt(j['job_driver_cpu_s_median'])}) / "
            f"{_fmt(j['loadgen_cpu_s_median'])} / "
            f"{_fmt(j['other_cpu_s_median'])} | {_fmt(j['peak_server_rss_mib'])} / "
            f"{_fmt(j['peak_tree_rss_mib'])} |")
    if s["sse"]:
        lines += ["", "| SSE clients | connected (min) | events per client (median) "
                  "| reconnects | errors | got the final state (min) | final event lag p95 s "
                  "| longest gap p95 s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for kind, x in s["sse"].items():
            lines.append(f"| {KINDS[kind]} | {x['connected_min']}/{x['clients']} | "
                         f"{_fmt(x['events_per_client_median'])} | {x['reconnects']} | "
                         f"{x['errors']} | {x['got_final_state_min']}/{x['clients']} | "
                         f"{_fmt(x['final_lag_p95_s_max'])} | {_fmt(x['max_gap_p95_s_max'])} |")
    lines += ["", "| phase | round | job s | items/s | server CPU s | job tree CPU s "
              "| load gen CPU s | other CPU share | search p95 ms | load avg 1 min |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for p in phases:
        c, j = p["cpu_in_job"], p["job"]
        p95 = p["search_in_job"]["p95_ms"] if "search_in_job" in p else None
        lines.append(
            f"| {KINDS[p['kind']].split(':')[0]} | {p['round']} | {_fmt(j['seconds'])} | "
            f"{_fmt(j['items_per_s'])} | {_fmt(c['server_cpu_s'])} | "
            f"{_fmt(c['job_tree_cpu_s'])} | {_fmt(c['loadgen_cpu_s'])} | "
            f"{_fmt(c['other_cpu_share'])}{' (noisy)' if c['other_cpu_share'] > NOISY else ''}"
            f" | {_fmt(p95)} | "
            f"{p['loadavg_1m_start']} -> {p['loadavg_1m_end']} |")
    b = s["jobs"].get("load", {})
    ratio = b.get("ratio_to_alone_median")
    p95 = s["search"].get("in_job_load", {}).get("p95_ms")
    lines += [
        "",
        f"Targets: job throughput under load {_fmt(ratio)} of alone (drop "
        f"{_fmt(None if ratio is None else round((1 - ratio) * 100, 1))} %, target < 10 %); "
        f"search p95 under load {_fmt(p95)} ms (target < 100 ms). Server CPU per search on "
        f"the idle server: {_fmt(s['server_cpu_ms_per_search_idle_median'])} ms.",
        f"Phases with other processes above {NOISY:.0%} of the CPUs (noisy): "
        f"{s['noisy_phases']} of {len(phases)}; median other share "
        f"{_fmt(s['other_cpu_share_median'])}.",
    ]
    return "\n".join(lines)


def _machine_snapshot() -> dict[str, Any]:
    procs = list(psutil.process_iter(["pid", "name", "cmdline"]))
    for p in procs:
        try:
            p.cpu_percent(None)
        except psutil.Error:
            pass
    time.sleep(1.0)
    busy = []
    for p in procs:
        try:
            pct = p.cpu_percent(None)
        except psutil.Error:
            continue
        if pct >= 5:
            busy.append({"pid": p.pid, "cpu_pct": pct,
                         "cmd": " ".join(p.info["cmdline"] or [p.info["name"] or ""])[:120]})
    busy.sort(key=lambda x: -x["cpu_pct"])
    return {"loadavg": [round(x, 2) for x in os.getloadavg()], "busy_processes": busy[:8]}


def _gristmill_version(args: argparse.Namespace) -> dict[str, Any]:
    probe = ("import gristmill, pathlib; print(pathlib.Path(gristmill.__file__).parent)")
    env = _gristmill_env(Path("/nonexistent"), args)
    where = subprocess.run([sys.executable, "-c", probe], env=env, text=True,
                           capture_output=True).stdout.strip()
    out: dict[str, Any] = {"package_dir": where}
    if where:
        git = ["git", "-C", where]
        head = subprocess.run([*git, "rev-parse", "HEAD"], text=True, capture_output=True)
        dirty = subprocess.run([*git, "status", "--porcelain", "."], text=True,
                               capture_output=True)
        if head.returncode == 0:
            out["git_head"] = head.stdout.strip()
            out["git_dirty_files"] = len(dirty.stdout.splitlines())
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill-bench/api-load"),
                        help="work folder: cached index, job files, results "
                             "(default /tmp/gristmill-bench/api-load)")
    parser.add_argument("--chunks", type=int, default=100_000,
                        help="chunks the index must hold (default 100000)")
    parser.add_argument("--index-source", action="append", default=None,
                        help="folder of real text for the index (repeatable; default "
                             "/usr/share/doc)")
    parser.add_argument("--job-files", type=int, default=8000,
                        help="files in the job at most (0: all found; default 8000)")
    parser.add_argument("--job-min-bytes", type=int, default=1024,
                        help="smallest job file (default 1 KiB)")
    parser.add_argument("--job-max-bytes", type=int, default=65536,
                        help="largest job file: small and medium files (default 64 KiB)")
    parser.add_argument("--sse-clients", type=int, default=100,
                        help="clients following the job's event stream (default 100)")
    parser.add_argument("--searchers", type=int, default=8,
                        help="searches in flight at most (closed loop: clients) (default 8)")
    parser.add_argument("--search-rate", type=float, default=20.0,
                        help="searches/s, open loop with Poisson arrivals; 0: closed loop "
                             "(default 20)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="rounds of (A: job alone, B: job under load) (default 2)")
    parser.add_argument("--idle-seconds", type=float, default=15.0,
                        help="seconds of the search load on the idle server, per phase")
    parser.add_argument("--serial", type=int, default=100,
                        help="searches one at a time on the idle server, per phase")
    parser.add_argument("--queries", type=int, default=3000, help="distinct queries")
    parser.add_argument("-k", type=int, default=10, help="hits per search (default 10)")
    parser.add_argument("--mode", default="keyword", choices=["keyword", "hybrid", "vector"],
                        help="search mode (default keyword: the index has no vectors)")
    parser.add_argument("--server-rate-limit", default="1000000/second",
                        help="GRISTMILL_SEARCH_RATE_LIMIT given to the server (versions "
                             "without a limiter ignore it)")
    parser.add_argument("--server-setting", action="append", default=[], metavar="NAME=VALUE",
                        help="a setting for the server (GRISTMILL_NAME), e.g. search_nice=0 "
                             "(repeatable)")
    parser.add_argument("--gristmill-src", type=Path,
                        help="a gristmill source tree's src/ to run instead of the installed "
                             "one (put first on PYTHONPATH of every gristmill process)")
    parser.add_argument("--breakdown", action="store_true",
                        help="also run the job with the SSE clients only (C) and with the "
                             "searches only (D) in every round, to tell their costs apart")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the cached index and job")
    parser.add_argument("--quick", action="store_true",
                        help="a short try: 1 round, 1500 job files, 5 s idle load, 30 serial")
    parser.add_argument("--build-only", action="store_true",
                        help="build (or check) the cached index, queries and job, then exit")
    parser.add_argument("--report", type=Path, metavar="RESULTS",
                        help="print the table of a results file again and exit")
    parser.add_argument("--out", type=Path, help="result JSON (default WORK/results/TIME.json)")
    args = parser.parse_args(argv)
    if args.report:
        report = json.loads(args.report.read_text())
        report["summary"] = summarize(report["phases"])
        queries_file = Path(report["config"]["work"]) / "index" / "queries.json"
        report["_queries"] = json.loads(queries_file.read_text())
        print(table(report))
        return
    if args.quick:
        args.repeat, args.job_files, args.idle_seconds, args.serial = 1, 1500, 5.0, 30
    if args.index_source is None:
        args.index_source = ["/usr/share/doc"]
    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    subreaper = _become_subreaper()
    version_at_start = _gristmill_version(args)
    machine = _machine_snapshot()
    print(f"[machine] load average {machine['loadavg']}; busy: "
          f"{[(b['cpu_pct'], b['cmd'][:60]) for b in machine['busy_processes']]}",
          file=sys.stderr, flush=True)
    index = build_index(args, work)
    how = "cached" if index["reused"] else f"built in {index['build_s']} s"
    print(f"[index] {index['chunks']:,} chunks, {index['files']:,} files ({how})",
          file=sys.stderr, flush=True)
    queries = build_queries(work, args.queries)
    queries_path = work / "run-queries.json"
    queries_path.write_text(json.dumps(queries))
    job_meta = build_job(args, work)
    print(f"[job] {job_meta['files']:,} files, {job_meta['bytes'] / 1e6:.1f} MB",
          file=sys.stderr, flush=True)
    if args.build_only:
        print(json.dumps({"index": index, "job": job_meta}, indent=1))
        return

    phases = []
    for round_no in range(1, args.repeat + 1):
        for kind in ("alone", "load", "sse", "search") if args.breakdown else ("alone", "load"):
            t0 = time.perf_counter()
            phase = run_phase(args, work, kind, round_no, queries_path)
            phases.append(phase)
            j = phase["job"]
            extra = ""
            if "search_in_job" in phase:
                extra += f", search p95 {phase['search_in_job']['p95_ms']} ms"
            if "sse" in phase:
                extra += f", SSE {phase['sse']['connected']}/{phase['sse']['clients']} connected"
            print(f"[round {round_no} {kind}] job {j['seconds']} s, {j['items_per_s']} items/s"
                  f"{extra}, other CPU {phase['cpu_in_job']['other_cpu_share']} "
                  f"(top: {phase['top_other_processes'][:3]}) "
                  f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    report = {
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(), "gristmill": version_at_start,
        "gristmill_at_end": _gristmill_version(args),
        "machine_at_start": machine, "subreaper": subreaper,
        "machine_at_end": {"loadavg": list(os.getloadavg())},
        "index": index, "job_corpus": job_meta,
        "queries": {"n": len(queries), "by_head": dict(Counter(q["head"] for q in queries)),
                    "by_words": dict(Counter(q["words"] for q in queries)),
                    "matches_median": statistics.median(q["matches"] for q in queries)},
        "summary": summarize(phases), "phases": phases,
        "total_s": round(time.perf_counter() - started, 1), "_queries": queries,
    }
    out = args.out or work / "results" / f"api-load-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({k: v for k, v in report.items() if not k.startswith("_")},
                              indent=1) + "\n")
    print(table(report))
    if report["gristmill_at_end"] != version_at_start:
        print(f"\nwarning: gristmill changed during the run: {version_at_start} -> "
              f"{report['gristmill_at_end']}", file=sys.stderr)
    print(f"\nresults: {out} ({report['total_s']} s in all)", file=sys.stderr)


if __name__ == "__main__":
    main()
