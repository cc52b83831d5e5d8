"""Coverage per file type: what gristmill indexes, skips and fails on a folder, side by
side with the peer (`unstructured`, `partition(strategy="auto")`) on the same files in the
same run, with the reasons.

    .venv/bin/python benchmarks/bench_coverage.py CORPUS_DIR \\
        --peer-python PEER_VENV/bin/python --work BENCH/coverage --json BENCH/coverage.json

The file set is the corpus manifest (`CORPUS_DIR.manifest.tsv` beside the folder, or
`--manifest`: a TSV whose `path` column is relative to the folder), else every
non-hidden file under the folder. gristmill ingests the folder itself (fresh home,
`--embedder none`, `--workers P`); items outside the file set (a corpus's SOURCE.txt)
are listed apart, and child items (attachments, archive members) are counted under
their parent file but not in the per-file rows. The peer runs `peer_unstructured.py`
with its own interpreter, P processes and a per-file time limit.

A file counts as
- gristmill: indexed when its item is `indexed`/`extracted` with at least one chunk,
  or with none of its own and at least one indexed child item (a zip); skipped or
  failed as the catalog says, with its `error`; a file that never reached the catalog
  counts as failed ("not in the catalog").
- peer: indexed when `partition` returned an element with non-blank text; empty when it
  returned none (the 0-element trap: see shared/peers/README.md); failed when it raised
  (exception type and first line of its message) or ran past the limit ("timeout").

`--peer-result FILE` reuses an earlier `peer_unstructured.py --out` file instead of
running the peer (the report says so: the issue asks for the same run). Prints a
Markdown report; `--json OUT` writes per-file rows of both sides.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
INDEXED, SKIPPED, FAILED, EMPTY = "indexed", "skipped", "failed", "empty"
_CHILD_SEPARATORS = "/#!:|?"

# Reasons that differ only in paths, quoted names, hex ids or numbers are one reason
# (the same rules as `gristmill errors`).
_RULES = [
    (re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"]+)+/?"), "<path>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<quoted>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{12,}\b"), "<hex>"),
    (re.compile(r"\d+(?:[.,]\d+)*"), "<n>"),
]


def _pattern(reason: str) -> str:
    for regex, placeholder in _RULES:
        reason = regex.sub(placeholder, reason)
    return reason


def _first_line(text: str, limit: int = 160) -> str:
    line = next((s.strip() for s in str(text).splitlines() if s.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def file_type(path: str) -> str:
    """Lower-case extension without the dot; "(none)" when there is none."""
    suffix = Path(path).suffix.lower().lstrip(".")
    return suffix or "(none)"


# --------------------------------------------------------------------------- file set


def load_files(folder: Path, manifest: Path | None, verify: bool) -> tuple[list[str], list[str]]:
    """The files to compare (absolute paths, sorted) and any manifest mismatches."""
    problems: list[str] = []
    if manifest is None:
        files = []
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames[:] = [d for d in dirnames if not d.startswith(".")]
            files += [os.path.join(dirpath, n) for n in filenames if not n.startswith(".")]
        return sorted(files), problems
    files = []
    with manifest.open(encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            path = folder / row["path"]
            files.append(str(path))
            if not path.is_file():
                problems.append(f"{row['path']}: missing")
            elif verify and row.get("sha256"):
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                if digest != row["sha256"]:
                    problems.append(f"{row['path']}: sha256 differs from the manifest")
    return sorted(files), problems


# --------------------------------------------------------------------------- gristmill


def run_gristmill(folder: Path, home: Path, workers: int) -> dict[str, Any]:
    """A fresh `gristmill ingest FOLDER --embedder none`, timed launch to exit."""
    shutil.rmtree(home, ignore_errors=True)
    cmd = [sys.executable, "-m", "gristmill", "ingest", str(folder), "--home", str(home),
           "--embedder", "none", "--workers", str(workers), "--json"]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        # Items that fail or are skipped still exit 0; non-zero is a broken run.
        raise SystemExit(f"gristmill ingest exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    report = json.loads(proc.stdout)
    return {"command": " ".join(cmd), "exit": proc.returncode, "seconds": round(seconds, 2),
            "report": report}


def _gm_record(row: sqlite3.Row | None) -> dict[str, Any]:
    if row is None:
        return {"class": FAILED, "status": None, "reason": "not in the catalog",
                "chunks": 0, "pages": None}
    status, chunks = row["status"], row["chunk_count"] or 0
    rec = {"status": status, "chunks": chunks, "pages": row["pages"],
           "extractor": row["extractor"], "error_type": row["error_type"]}
    if status in ("indexed", "extracted"):
        if chunks > 0:
            return {**rec, "class": INDEXED, "reason": None}
        return {**rec, "class": SKIPPED, "reason": f"{status} with 0 chunks"}
    if status in (SKIPPED, FAILED):
        return {**rec, "class": status, "reason": _first_line(row["error"] or "(no reason)")}
    return {**rec, "class": FAILED, "reason": f"unfinished ({status})"}


def _parent_of(source: str, wanted: set[str]) -> str | None:
    # A child item's source starts with its parent file's path and a separator.
    for i, ch in enumerate(source):
        if ch in _CHILD_SEPARATORS and source[:i] in wanted and i < len(source) - 1:
            return source[:i]
    return None


def classify_gristmill(home: Path, files: list[str]) -> dict[str, Any]:
    """Per-file records from the catalog, plus child items and items outside the set."""
    db = sqlite3.connect(f"file:{home / 'gristmill.db'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    rows = {r["source"]: r for r in db.execute(
        "SELECT source, status, error, error_type, extractor, pages, chunk_count FROM items")}
    db.close()
    wanted = set(files)
    per_file = {f: _gm_record(rows.get(f)) for f in files}
    children: list[dict[str, Any]] = []
    extras: list[dict[str, Any]] = []
    for source, row in sorted(rows.items()):
        if source in wanted:
            continue
        rec = {"source": source, **_gm_record(row)}
        parent = _parent_of(source, wanted)
        if parent is not None:
            children.append({"parent": parent, **rec})
        else:
            extras.append(rec)
    # A container (an archive, a mail whose text is all in attachments) is indexed with
    # no chunks of its own: its text is searchable through its children.
    for parent, n in Counter(c["parent"] for c in children if c["class"] == INDEXED).items():
        rec = per_file[parent]
        rec["children_indexed"] = n
        if rec["class"] != INDEXED and rec["status"] in ("indexed", "extracted"):
            rec.update({"class": INDEXED, "reason": None})
    return {"files": per_file, "children": children, "extras": extras}


# --------------------------------------------------------------------------- peer


def run_peer(peer_python: str, files: list[str], work: Path, strategy: str, processes: int,
             timeout: int) -> dict[str, Any]:
    """`peer_unstructured.py` over the files with the peer's own interpreter."""
    listing = work / "files.txt"
    listing.write_text("".join(f + "\n" for f in files), encoding="utf-8")
    out = work / "peer.json"
    out.unlink(missing_ok=True)
    log = work / "peer.log"
    cmd = [peer_python, str(HERE / "peer_unstructured.py"), "--files-from", str(listing),
           "--strategy", strategy, "-p", str(processes), "--timeout", str(timeout),
           "--out", str(out), "--progress", "10"]
    print(f"peer: {' '.join(cmd)}\n      (log: {log})", file=sys.stderr, flush=True)
    started = time.perf_counter()
    with log.open("w", encoding="utf-8") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        raise SystemExit(f"the peer exited {proc.returncode} without a result:\n{tail}")
    data = json.loads(out.read_text(encoding="utf-8"))
    data["command"] = " ".join(cmd)
    data["seconds_launch_to_exit"] = round(seconds, 2)
    data["result_file"] = str(out)
    return data


def _peer_reason(error: str) -> str:
    if error.startswith("Timeout:"):
        return "timeout"
    return _first_line(error)


def _peer_record(rec: dict[str, Any] | None) -> dict[str, Any]:
    if rec is None:
        return {"class": FAILED, "reason": "not in the peer's result"}
    out = {"elements": rec.get("elements"), "chars": rec.get("chars"),
           "seconds": rec.get("seconds")}
    if not rec["ok"]:
        return {**out, "class": FAILED, "reason": _peer_reason(str(rec["error"]))}
    # Older result files lack text_elements; chars > 0 is the nearest stand-in.
    with_text = rec.get("text_elements", rec.get("chars", 0))
    if with_text:
        return {**out, "text_elements": rec.get("text_elements"), "class": INDEXED,
                "reason": None}
    why = "0 elements" if not rec.get("elements") else f"{rec['elements']} elements, no text"
    return {**out, "text_elements": rec.get("text_elements"), "class": EMPTY, "reason": why}


def classify_peer(data: dict[str, Any], files: list[str]) -> dict[str, dict[str, Any]]:
    """Per-file records from a peer_unstructured.py result."""
    by_path = {r["path"]: r for r in data["files"]}
    return {f: _peer_record(by_path.get(f)) for f in files}


# --------------------------------------------------------------------------- report


def _reasons(recs: list[dict[str, Any]], limit: int = 60) -> list[tuple[str, str, int]]:
    """(class, example reason, count) grouped by pattern, most frequent first."""
    groups: dict[tuple[str, str], list[str]] = {}
    for r in recs:
        if r["reason"] is not None:
            groups.setdefault((r["class"], _pattern(r["reason"])), []).append(r["reason"])
    out = []
    for (cls, _), reasons in groups.items():
        example = reasons[0] if len(reasons[0]) <= limit else reasons[0][: limit - 1] + "…"
        out.append((cls, example, len(reasons)))
    return sorted(out, key=lambda g: (g[0] != FAILED, -g[2], g[1]))


def _reason_text(groups: list[tuple[str, str, int]]) -> str:
    short = {FAILED: "fail", SKIPPED: "skip", EMPTY: "empty"}
    parts = [f"{short[c]} {r.replace('|', '/')} ×{n}" for c, r, n in groups]
    return "; ".join(parts)


def summarise(files: list[str], gm: dict[str, dict[str, Any]],
              peer: dict[str, dict[str, Any]] | None) -> list[dict[str, Any]]:
    """One row per file type: counts of each class on both sides, and their reasons."""
    types: dict[str, list[str]] = {}
    for f in files:
        types.setdefault(file_type(f), []).append(f)
    rows = []
    for t, members in types.items():
        g = Counter(gm[f]["class"] for f in members)
        row: dict[str, Any] = {
            "type": t, "files": len(members),
            "gristmill": {k: g[k] for k in (INDEXED, SKIPPED, FAILED)},
            "gristmill_reasons": _reasons([gm[f] for f in members]),
        }
        if peer is not None:
            p = Counter(peer[f]["class"] for f in members)
            row["peer"] = {k: p[k] for k in (INDEXED, EMPTY, FAILED)}
            row["peer_reasons"] = _reasons([peer[f] for f in members])
        rows.append(row)
    return sorted(rows, key=lambda r: (-r["files"], r["type"]))


def _counts(c: dict[str, int], keys: tuple[str, str, str]) -> str:
    return " / ".join(str(c[k]) for k in keys)


def markdown(rows: list[dict[str, Any]], files: list[str], gm: dict[str, Any],
             peer: dict[str, dict[str, Any]] | None, meta: dict[str, Any]) -> str:
    """The report: the table, totals, and where the peer does better."""
    gk, pk = (INDEXED, SKIPPED, FAILED), (INDEXED, EMPTY, FAILED)
    has_peer = peer is not None
    out = [f"{len(files)} files of {len(rows)} types in `{meta['folder']}`."]
    head = "| type | files | gristmill indexed / skipped / failed |"
    sep = "|---|---:|:---:|"
    if has_peer:
        head += " peer indexed / empty / failed | Δ indexed |"
        sep += ":---:|---:|"
    head += " reasons (gristmill; peer) |" if has_peer else " reasons |"
    sep += "---|"
    out += ["", head, sep]
    total_g: Counter[str] = Counter()
    total_p: Counter[str] = Counter()
    for r in rows:
        total_g.update(r["gristmill"])
        line = f"| {r['type']} | {r['files']} | {_counts(r['gristmill'], gk)} |"
        reasons = _reason_text(r["gristmill_reasons"])
        if has_peer:
            total_p.update(r["peer"])
            delta = r["gristmill"][INDEXED] - r["peer"][INDEXED]
            mark = f"**{delta:+d}**" if delta < 0 else (f"{delta:+d}" if delta else "0")
            line += f" {_counts(r['peer'], pk)} | {mark} |"
            peer_reasons = _reason_text(r["peer_reasons"])
            reasons = "; ".join(
                x for x in (f"gm: {reasons}" if reasons else "",
                            f"peer: {peer_reasons}" if peer_reasons else "") if x)
        out.append(line + f" {reasons} |")
    total = f"| **total** | **{len(files)}** | **{_counts(total_g, gk)}** |"
    if has_peer:
        delta = total_g[INDEXED] - total_p[INDEXED]
        total += f" **{_counts(total_p, pk)}** | **{delta:+d}** |"
    out.append(total + " |")

    children = gm["children"]
    if children:
        c = Counter(ch["class"] for ch in children)
        out += ["", f"gristmill child items (attachments, archive members; not in the table): "
                    f"{len(children)} from {len({ch['parent'] for ch in children})} files, "
                    f"{_counts(c, gk)} indexed / skipped / failed."]
    if gm["extras"]:
        names = ", ".join(f"`{Path(e['source']).name}` ({e['class']})" for e in gm["extras"])
        out += ["", f"Items outside the file set, not counted: {names}."]

    if not has_peer:
        return "\n".join(out) + "\n"
    worse = [r for r in rows if r["gristmill"][INDEXED] < r["peer"][INDEXED]]
    only_peer = [r["type"] for r in rows if r["peer"][INDEXED] and not r["gristmill"][INDEXED]]
    out += ["", "Types the peer indexes but gristmill does not: "
                + (", ".join(f"`{t}`" for t in only_peer) if only_peer else "none") + "."]
    out += ["", "Types where the peer indexes more files than gristmill: "
                + (", ".join(f"`{r['type']}` ({r['gristmill'][INDEXED]} vs "
                             f"{r['peer'][INDEXED]})" for r in worse) if worse else "none")
                + "."]
    lost = [f for f in files if peer[f]["class"] == INDEXED and gm["files"][f]["class"] != INDEXED]
    if lost:
        out += ["", "Files the peer indexes and gristmill does not:", "",
                "| file | gristmill | reason | peer chars |", "|---|---|---|---:|"]
        for f in lost:
            g = gm["files"][f]
            rel = os.path.relpath(f, meta["folder"])
            out.append(f"| `{rel}` | {g['class']} | {(g['reason'] or '').replace('|', '/')} "
                       f"| {peer[f].get('chars')} |")
    won = Counter(file_type(f) for f in files
                  if gm["files"][f]["class"] == INDEXED and peer[f]["class"] != INDEXED)
    out += ["", "Files gristmill indexes and the peer does not, by type: "
                + (", ".join(f"`{t}` {n}" for t, n in sorted(won.items())) or "none") + "."]
    out += ["", f"Failures: gristmill {total_g[FAILED]}, peer {total_p[FAILED]}. Indexed: "
                f"gristmill {total_g[INDEXED]}, peer {total_p[INDEXED]}."]
    hub = sum(peer[f]["class"] == FAILED and "Hub" in (peer[f]["reason"] or "") for f in files)
    if hub:
        out += ["", f"{hub} peer failures are its `hi_res` layout model (YOLOX, fetched from "
                    "a model hub at run time) being unreachable offline: `auto` picks "
                    "`hi_res` for images. They are failures of the peer as configured "
                    "offline, not of its parsers."]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="corpus folder (gristmill ingests it whole)")
    parser.add_argument("--manifest", type=Path,
                        help="TSV with a `path` column (default: FOLDER.manifest.tsv if present)")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check files against the manifest's sha256")
    parser.add_argument("--work", type=Path, default=Path("/tmp/gristmill-bench/coverage"),
                        help="scratch folder: gristmill home, file list, peer result and log")
    parser.add_argument("--peer-python", help="the peer venv's python (runs peer_unstructured.py)")
    parser.add_argument("--peer-result", type=Path,
                        help="reuse this peer_unstructured.py --out file instead of running it")
    parser.add_argument("--skip-peer", action="store_true", help="gristmill only")
    parser.add_argument("--strategy", default="auto", help="peer strategy (default auto)")
    parser.add_argument("-p", "--processes", type=int, default=2,
                        help="gristmill workers and peer processes (default 2)")
    # The corpus's largest files (a 1,225-page text, a 619-page PDF) take the peer
    # 250-300 s each on 2 shared cores: a 300 s limit turns its slowness into failures.
    parser.add_argument("--timeout", type=int, default=900,
                        help="peer per-file limit in seconds (default 900)")
    parser.add_argument("--json", type=Path, dest="json_out", help="write per-file rows here")
    parser.add_argument("--markdown", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    started_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    folder = args.folder.resolve()
    manifest = args.manifest
    if manifest is None and folder.with_name(folder.name + ".manifest.tsv").is_file():
        manifest = folder.with_name(folder.name + ".manifest.tsv")
    if not (args.skip_peer or args.peer_python or args.peer_result):
        parser.error("give --peer-python, --peer-result or --skip-peer")
    files, problems = load_files(folder, manifest, verify=not args.no_verify)
    for p in problems:
        print(f"manifest: {p}", file=sys.stderr)
    args.work.mkdir(parents=True, exist_ok=True)

    print(f"gristmill: ingesting {folder} ({len(files)} files)", file=sys.stderr, flush=True)
    gm_run = run_gristmill(folder, args.work / "gristmill-home", args.processes)
    gm = classify_gristmill(args.work / "gristmill-home", files)
    print(f"gristmill: {gm_run['seconds']} s", file=sys.stderr, flush=True)

    peer_data: dict[str, Any] | None = None
    if args.peer_result is not None:
        peer_data = json.loads(args.peer_result.read_text(encoding="utf-8"))
        peer_data["result_file"] = str(args.peer_result)
        peer_data["reused"] = True
    elif not args.skip_peer:
        peer_data = run_peer(args.peer_python, files, args.work, args.strategy,
                             args.processes, args.timeout)
        print(f"peer: {peer_data['seconds_launch_to_exit']} s", file=sys.stderr, flush=True)
    peer = classify_peer(peer_data, files) if peer_data is not None else None

    rows = summarise(files, gm["files"], peer)
    meta = {"folder": str(folder), "manifest": str(manifest) if manifest else None,
            "manifest_problems": problems}
    report = markdown(rows, files, gm, peer, meta)
    peer_summary = (peer_data or {}).get("summary", {})
    timing = [f"gristmill `ingest --embedder none --workers {args.processes}`: "
              f"{gm_run['seconds']} s launch to exit (exit {gm_run['exit']})."]
    if peer_data is not None:
        took = peer_data.get("seconds_launch_to_exit", peer_summary.get("seconds"))
        timing.append(
            f"peer {peer_summary.get('tool')} unstructured {peer_summary.get('unstructured')}, "
            f"{peer_summary.get('processes')} processes: {took} s"
            + (" (reused result file, not this run)" if peer_data.get("reused") else "")
            + f"; other_cpu_share {peer_summary.get('other_cpu_share')}, "
              f"peak RSS {peer_summary.get('peak_rss_tree_mib')} MiB.")
    report += "\n" + "\n".join(timing) + "\n"
    print(report)
    if args.markdown is not None:
        args.markdown.write_text(report, encoding="utf-8")
    if args.json_out is not None:
        data = {
            "meta": {**meta, "started": started_at,
                     "gristmill": gm_run,
                     "peer": {k: v for k, v in (peer_data or {}).items() if k != "files"}},
            "types": rows,
            "files": [{"path": os.path.relpath(f, folder), "type": file_type(f),
                       "gristmill": gm["files"][f],
                       "peer": peer[f] if peer is not None else None} for f in files],
            "gristmill_children": gm["children"],
            "gristmill_extras": gm["extras"],
        }
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
