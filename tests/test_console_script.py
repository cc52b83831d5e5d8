"""The installed ``gristmill`` script starts its workers without running itself again.

multiprocessing recreates a ``__main__`` that is a plain file (pip's console script) in
every worker it starts, by running the file: the whole CLI imported once more per worker
and per recycle. Python's ``-X importtime`` report (``PYTHONPROFILEIMPORTTIME``), which
every process of the run writes to the shared stderr, shows which processes imported
the CLI.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from process_tools import env_for

SCRIPT = Path(sys.executable).with_name("gristmill")

pytestmark = pytest.mark.skipif(not SCRIPT.exists(),
                                reason="the gristmill console script is not installed")


def test_workers_of_the_console_script_do_not_import_the_cli(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(6):
        (docs / f"note-{i}.txt").write_text(f"note number {i} about gristmill workers\n")
    # One item per worker life: six files start at least six workers.
    env = env_for(tmp_path / "home", workers="2", max_tasks_per_worker="1")
    env["PYTHONPROFILEIMPORTTIME"] = "1"
    done = subprocess.run([str(SCRIPT), "ingest", str(docs), "--json"], env=env, text=True,
                          capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["items"]["indexed"] == 6
    # Processes other than the driver do write their reports here: the driver and the
    # fork server (its preload) each import the worker module ...
    workers = re.findall(r"\|\s+gristmill\.runtime\.worker$", done.stderr, re.MULTILINE)
    assert len(workers) >= 2
    # ... but only the driver imports the CLI.
    cli_imports = re.findall(r"\|\s+gristmill\.cli$", done.stderr, re.MULTILINE)
    assert len(cli_imports) == 1, f"gristmill.cli imported by {len(cli_imports)} processes"
