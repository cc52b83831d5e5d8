"""Before/after: `gristmill ingest` of one folder by several checkouts, in interleaved
rounds, against the pypdfium2 floor on the same files (optional).

Each variant is ``NAME=SRC``: a checkout's ``src`` folder put first on ``PYTHONPATH`` (a
``git worktree`` of an older commit, say), or nothing for the installed package; all run
the venv's ``gristmill`` console script, as users do. Reports the median wall time of
each (whole command, launch to exit) and, where the machine lets this process create a
cgroup (cgroup v1 ``cpuacct``, as root), the CPU time of its whole process tree,
workers included. Usage:

    python benchmarks/bench_ab.py FOLDER --rounds 5 --floor LIST before=/tmp/old/src after=
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CGROUP = Path("/sys/fs/cgroup/cpuacct/gristmill-bench")
_FLOOR = Path(__file__).with_name("floor_pdf.py")


def _cpu_seconds() -> float | None:
    try:
        return int((_CGROUP / "cpuacct.usage").read_text()) / 1e9
    except OSError:
        return None


def _enter_cgroup() -> None:  # in the child, before exec: its whole tree is counted
    try:
        (_CGROUP / "cgroup.procs").write_text(str(os.getpid()))
    except OSError:
        pass


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float | None]:
    cpu = _cpu_seconds()
    started = time.perf_counter()
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, preexec_fn=_enter_cgroup)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit {done.returncode}")
    time.sleep(0.3)  # the tree's last exits are accounted
    after = _cpu_seconds()
    return wall, None if cpu is None or after is None else after - cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("variants", nargs="+", help="NAME=SRC (empty SRC: installed)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor", type=Path, help="file list for floor_pdf.py (PDFs only)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    try:
        _CGROUP.mkdir(exist_ok=True)
    except OSError:
        print("no cgroup: wall time only", file=sys.stderr)
    script = Path(sys.executable).with_name("gristmill")
    variants = dict(v.split("=", 1) for v in args.variants)
    names = (["floor"] if args.floor else []) + list(variants)
    runs: dict[str, list[tuple[float, float | None]]] = {name: [] for name in names}
    with tempfile.TemporaryDirectory(prefix="gristmill-ab-") as scratch:
        home = Path(scratch) / "home"
        for round_ in range(args.rounds):
            for name in names:
                if name == "floor":
                    command = [sys.executable, str(_FLOOR), "--files-from", str(args.floor),
                               "-p", str(args.workers)]
                    env = dict(os.environ)
                else:
                    shutil.rmtree(home, ignore_errors=True)
                    command = [str(script), "ingest", str(args.folder), "--json"]
                    env = dict(os.environ, GRISTMILL_HOME=str(home), GRISTMILL_EMBEDDER="none",
                               GRISTMILL_WORKERS=str(args.workers))
                    if variants[name]:
                        env["PYTHONPATH"] = variants[name]
                wall, cpu = _run(command, env)
                runs[name].append((wall, cpu))
                cpu_text = "" if cpu is None else f", cpu {cpu:.2f} s"
                print(f"round {round_ + 1} {name}: {wall:.2f} s{cpu_text}", flush=True)
    first = statistics.median(w for w, _ in runs[names[0]])
    summary = {}
    for name, values in runs.items():
        wall = statistics.median(w for w, _ in values)
        cpus = [c for _, c in values if c is not None]
        summary[name] = {"wall_median": round(wall, 2), "ratio": round(wall / first, 3),
                         "cpu_median": round(statistics.median(cpus), 2) if cpus else None,
                         "rounds": values}
        print(f"{name}: median {wall:.2f} s ({wall / first:.2f}x {names[0]})"
              + (f", cpu {statistics.median(cpus):.2f} s" if cpus else ""))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
