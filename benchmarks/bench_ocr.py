"""OCR accuracy and speed of gristmill against the tesseract CLI on rendered PDF pages.

Page images of born-digital PDFs, whose text layer is the ground truth.

    .venv/bin/python benchmarks/bench_ocr.py --pages 50 --json-out BENCH/ocr.json
    .venv/bin/python benchmarks/bench_ocr.py --pages 4 --rounds 1          # a quick look
    .venv/bin/python benchmarks/bench_ocr.py --pages 50 --scan-pages 300   # + memory case

Pages are chosen from real PDFs (by default the shared example corpus), spread over the
documents by a seeded shuffle (see ``_ocr_truth.choose_pages``), and rendered with
pypdfium2 to grayscale PNGs at ``--dpi``. Every contender reads the same PNGs in the same
run, in interleaved rounds:

``cli-1t``      ``tesseract IMG stdout -l LANG``, one page at a time, OMP_THREAD_LIMIT=1
                (the baseline of the throughput target);
``cli-1t-xN``   the same, N pages at a time (N = ``--workers``): the most page
                parallelism gets out of the CLI here, the floor for gristmill;
``cli-default`` one page at a time with Tesseract's default threads (``--cli-default-threads``,
                slow on a shared 2-core machine);
``gristmill``   ``gristmill ingest IMAGES --home FRESH --embedder none --workers N --json``,
                timed from launch to exit, peak RSS of its process tree sampled; each
                image's text is read back from the catalog (its chunks in order).

Accuracy is scored on the first round's output after normalising both sides (NFKC,
quotes and dashes folded, whitespace collapsed): order-sensitive character accuracy
(1 - CER, by edit distance), order-sensitive word accuracy (1 - WER), and the
order-insensitive word-bag recall and precision (multiset intersection), which do not
punish a two-column page read in another column order. A page is "empty" when its OCR
text is under 5 % of its truth's length.

``--scan-pages N`` also writes an image-only PDF of N pages (the rendered pages as JPEG,
reused in turn) and ingests it with gristmill alone: wall time, pages/s and the tree's
peak RSS, the figure behind the "300-page scan under 1 GB" target.
"""

from __future__ import annotations

import argparse
import ctypes
import io
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
from _harness import _cpu_report, add_selection_args, select_files
from _ocr_truth import (
    Page,
    choose_pages,
    normalise,
    render,
    score_page,
    self_test,
    totals,
    write_scanned_pdf,
)
from _rss import PeakRSS

# ../shared/corpus beside the checkout, as the tests find it.
DEFAULT_CORPUS = (Path(__file__).resolve().parents[2] / "shared" / "corpus"
                  / "unstructured-example-docs")


class Meter:
    """Wall clock, CPU share of everything else on the machine, and peak RSS of a block."""

    def __init__(self, rss: PeakRSS) -> None:
        self.rss = rss
        self.seconds = 0.0
        self.cpu: dict[str, float] = {}

    def __enter__(self) -> Meter:
        self._cpu0 = psutil.cpu_times()
        self._ru0 = (resource.getrusage(resource.RUSAGE_SELF),
                     resource.getrusage(resource.RUSAGE_CHILDREN))
        self._start = time.perf_counter()
        self.rss.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.rss.__exit__(None, None, None)
        self.seconds = time.perf_counter() - self._start
        ru1 = (resource.getrusage(resource.RUSAGE_SELF),
               resource.getrusage(resource.RUSAGE_CHILDREN))
        self.cpu = _cpu_report(self._cpu0, psutil.cpu_times(), self._ru0, ru1, self.seconds)

    def figures(self, pages: int) -> dict[str, Any]:
        return {"seconds": round(self.seconds, 3),
                "s_per_page": round(self.seconds / pages, 3) if pages else None,
                "pages_per_s": round(pages / self.seconds, 4) if self.seconds else None,
                "peak_rss_mib": round(self.rss.peak_tree_bytes / 2**20, 1),
                "peak_rss_process_mib": round(self.rss.peak_process_bytes / 2**20, 1),
                **self.cpu}


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux PR_SET_CHILD_SUBREAPER). gristmill's forkserver
    outlives the gristmill process by a moment and would be reparented to init, taking
    the CPU time of every worker and tesseract it reaped with it; adopted and reaped
    here, that time lands in this process's RUSAGE_CHILDREN, so ``other_cpu_share``
    stays honest."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap_orphans(wait_s: float = 10.0) -> int:
    """Reap adopted descendants as they exit; the number still running after ``wait_s``
    (a gristmill run should leave none)."""
    end = time.monotonic() + wait_s
    while True:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid == 0:
            if time.monotonic() > end:
                return len(psutil.Process().children())
            time.sleep(0.02)


# --------------------------------------------------------------------------- contenders


def _cli_env(single_thread: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_THREAD_LIMIT",
                                                            "OMP_NUM_THREADS")}
    if single_thread:
        env["OMP_THREAD_LIMIT"] = "1"
    return env


def run_cli(images: list[Path], lang: str, single_thread: bool, parallel: int,
            timeout: float) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """``tesseract IMG stdout`` on every image, ``parallel`` at a time."""
    env = _cli_env(single_thread)
    texts: dict[str, str] = {}
    errors: dict[str, str] = {}

    def one(image: Path) -> None:
        try:
            proc = subprocess.run(["tesseract", str(image), "stdout", "-l", lang],
                                  env=env, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            errors[image.stem] = f"timeout after {timeout:g} s"
            texts[image.stem] = ""
            return
        texts[image.stem] = proc.stdout.decode("utf-8", "replace").replace("\f", "\n")
        if proc.returncode:
            errors[image.stem] = (f"exit {proc.returncode}: "
                                  f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}")

    # The CLI contenders' tree is the tesseract processes, not this benchmark.
    with Meter(PeakRSS(include_root=False)) as meter:
        if parallel <= 1:
            for image in images:
                one(image)
        else:
            with ThreadPoolExecutor(parallel) as pool:
                list(pool.map(one, images))
    return meter.figures(len(images)), texts, errors


def _gristmill_cmd(python: str, source: Path, home: Path, workers: int) -> list[str]:
    return [python, "-m", "gristmill", "ingest", str(source), "--home", str(home),
            "--embedder", "none", "--workers", str(workers), "--json"]


def run_gristmill(python: str, source: Path, home: Path, workers: int, lang: str,
                  log: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """One fresh ingest of ``source`` (a folder or a file), timed from launch to exit.
    Returns the figures and what the catalog holds: per item status, error, pages and
    text (its chunks joined in order; chunks do not overlap), and per page text."""
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "GRISTMILL_OCR_LANG": lang}
    env.pop("GRISTMILL_HOME", None)
    with log.open("w") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(_gristmill_cmd(python, source, home, workers), env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
        with Meter(PeakRSS(proc.pid)) as meter:
            out, _ = proc.communicate()
            seconds = time.perf_counter() - started
            leftover = reap_orphans()
    figures: dict[str, Any] = {"exit_code": proc.returncode,
                               "processes_left_running": leftover}
    try:
        report = json.loads(out)
    except json.JSONDecodeError:
        report = {}
    figures["seconds_to_searchable"] = report.get("seconds_to_searchable")
    figures["report_items"] = report.get("items")
    items: dict[str, Any] = {}
    db_path = home / "gristmill.db"
    if db_path.exists():
        db = sqlite3.connect(db_path)
        try:
            for item_id, src, status, error, extractor, pages in db.execute(
                    "SELECT id, source, status, error, extractor, pages FROM items"):
                rows = db.execute("SELECT text, page FROM chunks WHERE item_id = ? "
                                  "ORDER BY seq", (item_id,)).fetchall()
                by_page: dict[int, list[str]] = {}
                for text, page in rows:
                    if page is not None:
                        by_page.setdefault(page, []).append(text)
                items[Path(src).stem] = {
                    "source": src, "status": status, "error": error,
                    "extractor": extractor, "pages": pages, "chunks": len(rows),
                    "text": "\n".join(text for text, _page in rows),
                    "page_texts": {p: "\n".join(t) for p, t in by_page.items()},
                }
        finally:
            db.close()
    figures.update(meter.figures(0))
    figures["seconds"] = round(seconds, 3)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        figures["stderr_tail"] = tail
    return figures, items


# --------------------------------------------------------------------------- reporting


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        tess = subprocess.run(["tesseract", "--version"], capture_output=True, text=True,
                              timeout=30)
        tess_version = (tess.stdout or tess.stderr).splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        tess_version = "tesseract not found"
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "tesseract": tess_version, "python": platform.python_version(),
            "platform": platform.platform(), "loadavg_start": os.getloadavg(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def _median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 4) if values else None


def summarise(name: str, runs: list[dict[str, Any]], scores: list[dict[str, Any]],
              pages: int) -> dict[str, Any]:
    seconds = _median([r["seconds"] for r in runs])
    return {
        "contender": name, "rounds": len(runs), "pages": pages,
        "seconds_median": seconds,
        "s_per_page": round(seconds / pages, 3) if seconds and pages else None,
        "pages_per_s": round(pages / seconds, 4) if seconds else None,
        "peak_rss_mib_max": max(r["peak_rss_mib"] for r in runs),
        "other_cpu_share_max": max(r["other_cpu_share"] for r in runs),
        "accuracy": totals(scores),
    }


def print_table(rows: list[dict[str, Any]], baseline: str) -> None:
    base = next((r for r in rows if r["contender"] == baseline), None)
    head = (f"{'contender':<13}{'s':>8}{'s/page':>8}{'pages/s':>9}{'x 1t':>6}"
            f"{'chr acc':>8}{'word acc':>9}{'bag rec':>8}{'bag prec':>9}{'empty':>6}"
            f"{'RSS MiB':>9}{'other cpu':>10}")
    print(head)
    print("-" * len(head))
    for r in rows:
        a = r["accuracy"]
        # No ratio for a contender that did not read every page: it would time refusals.
        ratio = (r["pages_per_s"] / base["pages_per_s"] if base and r["pages_per_s"]
                 and base["pages_per_s"] and not r["problems"] else None)

        def f(v: Any, spec: str) -> str:
            return format(v, spec) if v is not None else "-".rjust(int(spec.split(".")[0]))

        print(f"{r['contender']:<13}{f(r['seconds_median'], '8.1f')}"
              f"{f(r['s_per_page'], '8.2f')}{f(r['pages_per_s'], '9.3f')}"
              f"{f(ratio, '6.2f')}{f(a['char_accuracy'], '8.3f')}"
              f"{f(a['word_accuracy_ordered'], '9.3f')}{f(a['word_bag_recall'], '8.3f')}"
              f"{f(a['word_bag_precision'], '9.3f')}{a['empty_pages']:>6}"
              f"{f(r['peak_rss_mib_max'], '9.0f')}{f(r['other_cpu_share_max'], '10.2f')}")


# --------------------------------------------------------------------------- scan mode


def scan_case(args: argparse.Namespace, pages: list[Page], images: list[Path],
              work: Path) -> dict[str, Any]:
    """Ingest an image-only PDF of ``--scan-pages`` pages with gristmill alone."""
    from PIL import Image

    jpegs: list[tuple[bytes, int, int]] = []
    for image in images:
        with Image.open(image) as im:
            buf = io.BytesIO()
            im.convert("L").save(buf, "JPEG", quality=80)
            jpegs.append((buf.getvalue(), im.width, im.height))
    folder = work / "scan"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    pdf = folder / f"scan-{args.scan_pages}p-{args.dpi}dpi.pdf"
    write_scanned_pdf(jpegs, args.scan_pages, args.dpi, pdf)
    del jpegs
    figures, items = run_gristmill(args.python, pdf, work / "home-scan", args.workers,
                                   args.lang, work / "gristmill-scan.log")
    item = items.get(pdf.stem, {})
    n = args.scan_pages
    result: dict[str, Any] = {
        "pdf": str(pdf), "pdf_mib": round(pdf.stat().st_size / 2**20, 1), "pages": n,
        "dpi": args.dpi, "workers": args.workers, **figures,
        "s_per_page": round(figures["seconds"] / n, 3),
        "pages_per_s": round(n / figures["seconds"], 4),
        "peak_rss_under_1gb": figures["peak_rss_mib"] < 1024,
        "status": item.get("status"), "error": item.get("error"),
        "extractor": item.get("extractor"), "item_pages": item.get("pages"),
        "chunks": item.get("chunks", 0),
    }
    if item.get("status") != "indexed":
        # Nothing was read: the time is that of a refusal, not of OCR.
        result.update(s_per_page=None, pages_per_s=None, peak_rss_under_1gb=None)
    page_texts = item.get("page_texts") or {}
    if page_texts:
        scores = [score_page(pages[i % len(pages)].truth, page_texts.get(i + 1, ""))
                  for i in range(n)]
        result["accuracy"] = totals(scores)
    return result


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    self_test(50)
    subreaper = become_subreaper()
    info = machine()
    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    pages, passed_over = choose_pages(select_files(args), args.pages, args.seed,
                                      args.min_chars)
    if not pages:
        raise SystemExit("no page qualified: give PDFs with a text layer")
    images_dir = work / "images"
    images = _render_pages(pages, args.dpi, images_dir, work)
    n = len(pages)
    print(f"{n} pages from {len({p.pdf for p in pages})} PDFs at {args.dpi} dpi "
          f"({sum(len(normalise(p.truth)) for p in pages):,} truth characters); "
          f"passed over: {passed_over or 'none'}", file=sys.stderr)

    runs, texts, notes = _run_rounds(args, pages, images, images_dir)
    rows, per_page = _score(pages, runs, texts, notes, work / "ocr")
    result: dict[str, Any] = {
        "machine": info, "dpi": args.dpi, "lang": args.lang, "pages": n,
        "pdfs": len({p.pdf for p in pages}), "seed": args.seed, "workers": args.workers,
        "rounds": args.rounds, "subreaper": subreaper, "passed_over": passed_over,
        "contenders": rows,
    }
    gm = next((r for r in rows if r["contender"] == "gristmill"), None)
    base = next((r for r in rows if r["contender"] == "cli-1t"), None)
    if gm and base:
        result["gristmill_vs_cli_1t"] = _versus(gm, base, n)
    if args.scan_pages:
        print(f"scan: {args.scan_pages}-page image-only PDF ...", file=sys.stderr, flush=True)
        result["scan"] = scan_case(args, pages, images, work)
    result["per_page"] = per_page
    result["machine"]["loadavg_end"] = os.getloadavg()

    _print_report(args, result, rows, n)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=1, default=str) + "\n")
        print(f"\nfigures: {args.json_out}")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*.pdf")
    parser.add_argument("--pages", type=int, default=50, help="pages to choose (default 50)")
    parser.add_argument("--min-chars", type=int, default=200,
                        help="skip pages whose text layer is shorter (default 200)")
    parser.add_argument("--dpi", type=int, default=200, help="render resolution (default 200)")
    parser.add_argument("--lang", default="eng", help="Tesseract languages, both sides")
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds (default 1)")
    parser.add_argument("-p", "--workers", type=int, default=2,
                        help="gristmill workers, and parallel CLI runs (default 2)")
    parser.add_argument("--cli-default-threads", action="store_true",
                        help="also run the CLI with its default threads (slow)")
    parser.add_argument("--no-cli-parallel", action="store_true",
                        help="skip the parallel single-threaded CLI run")
    parser.add_argument("--no-gristmill", action="store_true", help="CLI contenders only")
    parser.add_argument("--scan-pages", type=int, default=0,
                        help="also ingest an image-only PDF of N pages (e.g. 300)")
    parser.add_argument("--page-timeout", type=float, default=300,
                        help="seconds per page for the CLI (default 300)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with gristmill installed (default: this one)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill-bench/ocr"),
                        help="scratch folder (default /tmp/gristmill-bench/ocr)")
    parser.add_argument("--json-out", type=Path, help="write every figure here as JSON")
    args = parser.parse_args(argv)
    if not args.paths and args.files_from is None:
        args.paths = [DEFAULT_CORPUS]
    return args


def _render_pages(pages: list[Page], dpi: int, images_dir: Path, work: Path) -> list[Path]:
    """Render each page to a PNG in ``images_dir`` and write its truth beside it; the
    PNGs, in page order."""
    shutil.rmtree(images_dir, ignore_errors=True)
    images_dir.mkdir()
    images: list[Path] = []
    for i, page in enumerate(pages):
        page.key = f"{i:03d}-{page.pdf.stem[:40]}-p{page.index + 1}"
        image = images_dir / f"{page.key}.png"
        render(page, dpi, image)
        images.append(image)
    for stale in ("truth", "ocr"):  # outputs of an earlier run with other pages
        shutil.rmtree(work / stale, ignore_errors=True)
    (work / "truth").mkdir()
    for page in pages:
        (work / "truth" / f"{page.key}.txt").write_text(normalise(page.truth) + "\n")
    return images


def _run_rounds(args: argparse.Namespace, pages: list[Page], images: list[Path],
                images_dir: Path) -> tuple[dict[str, list[dict[str, Any]]],
                                           dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    """Each contender once a round, interleaved: the figures of every run, and the texts
    and problem notes of the first round, by contender."""
    work: Path = args.work
    n = len(pages)
    contenders: list[tuple[str, Any]] = [
        ("cli-1t", lambda: run_cli(images, args.lang, True, 1, args.page_timeout))]
    if not args.no_cli_parallel and args.workers > 1:
        contenders.append((f"cli-1t-x{args.workers}", lambda: run_cli(
            images, args.lang, True, args.workers, args.page_timeout)))
    if args.cli_default_threads:
        contenders.append(("cli-default", lambda: run_cli(
            images, args.lang, False, 1, args.page_timeout)))

    runs: dict[str, list[dict[str, Any]]] = {}
    texts: dict[str, dict[str, str]] = {}
    notes: dict[str, dict[str, str]] = {}
    for round_no in range(args.rounds):
        for name, fn in contenders:
            print(f"round {round_no + 1}/{args.rounds}: {name} ...", file=sys.stderr,
                  flush=True)
            figures, out, errors = fn()
            runs.setdefault(name, []).append(figures)
            if round_no == 0:
                texts[name], notes[name] = out, errors
        if not args.no_gristmill:
            print(f"round {round_no + 1}/{args.rounds}: gristmill ...", file=sys.stderr,
                  flush=True)
            figures, items = run_gristmill(args.python, images_dir,
                                           work / f"home-r{round_no}", args.workers,
                                           args.lang, work / f"gristmill-r{round_no}.log")
            figures["s_per_page"] = round(figures["seconds"] / n, 3)
            figures["pages_per_s"] = round(n / figures["seconds"], 4)
            runs.setdefault("gristmill", []).append(figures)
            if round_no == 0:
                texts["gristmill"] = {k: items.get(k, {}).get("text", "")
                                      for k in (p.key for p in pages)}
                notes["gristmill"] = {
                    k: f"{items[k]['status']}: {items[k]['error']}" if k in items
                    else "not in the catalog" for k in (p.key for p in pages)
                    if k not in items or items[k]["status"] != "indexed"}
    return runs, texts, notes


def _score(pages: list[Page], runs: dict[str, list[dict[str, Any]]],
           texts: dict[str, dict[str, str]], notes: dict[str, dict[str, str]],
           ocr_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """One summary row per contender, and per page each contender's scores; each
    contender's texts are written under ``ocr_dir``."""
    rows: list[dict[str, Any]] = []
    per_page: list[dict[str, Any]] = [page.as_dict() for page in pages]
    for name in runs:
        out_dir = ocr_dir / name
        out_dir.mkdir(parents=True, exist_ok=True)
        scores = []
        for page, record in zip(pages, per_page, strict=True):
            text = texts[name].get(page.key, "")
            (out_dir / f"{page.key}.txt").write_text(normalise(text) + "\n")
            score = score_page(page.truth, text)
            scores.append(score)
            record[name] = {"char_accuracy": round(max(0.0, 1 - score["char_edits"] /
                                                       score["truth_chars"]), 4),
                            "bag_recall": round(score["bag_common_words"] /
                                                max(1, score["truth_words"]), 4),
                            "empty": score["empty"], "note": notes[name].get(page.key)}
        row = summarise(name, runs[name], scores, len(pages))
        row["empty_page_keys"] = [p.key for p, s in zip(pages, scores, strict=True)
                                  if s["empty"]]
        row["problems"] = notes[name]
        row["runs"] = runs[name]
        rows.append(row)
    return rows, per_page


def _versus(gm: dict[str, Any], base: dict[str, Any], n: int) -> dict[str, Any]:
    """gristmill's figures against the single-threaded CLI's."""
    ratios = [n / g["seconds"] / (n / b["seconds"])
              for g, b in zip(gm["runs"], base["runs"], strict=True)]
    indexed = n - len(gm["problems"])
    return {
        # A ratio over images gristmill did not read would time refusals, not OCR.
        "pages_per_s_ratio_median_of_rounds": _median(ratios) if indexed == n else None,
        "target_ratio": 1.7,
        "char_accuracy_delta": _delta(gm, base, "char_accuracy"),
        "word_bag_recall_delta": _delta(gm, base, "word_bag_recall"),
        "images_indexed": indexed,
    }


def _print_report(args: argparse.Namespace, result: dict[str, Any],
                  rows: list[dict[str, Any]], n: int) -> None:
    info = result["machine"]
    gm = next((r for r in rows if r["contender"] == "gristmill"), None)
    print(f"\nOCR benchmark: {n} pages of {result['pdfs']} born-digital PDFs at {args.dpi} "
          f"dpi, lang {args.lang}, {args.rounds} round(s); {info['cpu_model']}, "
          f"{info['cpu_count']} cores; {info['tesseract']}")
    print_table(rows, "cli-1t")
    if "gristmill_vs_cli_1t" in result:
        cmp_ = result["gristmill_vs_cli_1t"]
        ratio = cmp_["pages_per_s_ratio_median_of_rounds"]
        print(f"\ngristmill / cli-1t pages/s: "
              f"{ratio if ratio is not None else 'n/a (not every image was indexed)'} "
              f"(target >= 1.7); char accuracy delta {cmp_['char_accuracy_delta']}, "
              f"bag recall delta {cmp_['word_bag_recall_delta']}; images indexed "
              f"{cmp_['images_indexed']}/{n}")
    for run in (gm or {}).get("runs", []):
        if run["exit_code"] != 0:
            print(f"gristmill exited with {run['exit_code']}: "
                  + " | ".join(run.get("stderr_tail", [])))
        if run["processes_left_running"]:
            print(f"gristmill left {run['processes_left_running']} process(es) running")
    for row in rows:
        if row["problems"]:
            reasons: dict[str, int] = {}
            for note in row["problems"].values():
                reasons[note] = reasons.get(note, 0) + 1
            print(f"{row['contender']}: {len(row['problems'])} page(s) not read: "
                  + "; ".join(f"{c} x {r}" for r, c in sorted(reasons.items())))
        if row["empty_page_keys"]:
            print(f"{row['contender']}: empty pages: {', '.join(row['empty_page_keys'])}")
    if "scan" in result:
        s = result["scan"]
        speed = (f"{s['pages_per_s']:.3f} pages/s" if s["pages_per_s"] is not None
                 else "NOT INDEXED, so no OCR figures")
        print(f"\nscan: {s['pages']}-page image-only PDF ({s['pdf_mib']} MiB, {s['dpi']} dpi), "
              f"gristmill --workers {s['workers']}: {s['seconds']:.1f} s, {speed}, "
              f"peak RSS {s['peak_rss_mib']:.0f} MiB (target < 1024); status {s['status']}"
              + (f" ({s['error']})" if s["error"] else "")
              + f", {s['chunks']} chunks, pages {s['item_pages']}")
        if "accuracy" in s:
            a = s["accuracy"]
            print(f"scan accuracy: chr {a['char_accuracy']}, bag recall "
                  f"{a['word_bag_recall']}, empty pages {a['empty_pages']}")


def _delta(a: dict[str, Any], b: dict[str, Any], key: str) -> float | None:
    x, y = a["accuracy"][key], b["accuracy"][key]
    return None if x is None or y is None else round(x - y, 4)


if __name__ == "__main__":
    main()
