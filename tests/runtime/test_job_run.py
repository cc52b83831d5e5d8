"""One job lifecycle: ingest, resume and watch claim, run and end their job through
:class:`gristmill.runtime.job_run.JobRun`, and a run's end becomes the job's state in one
place (:func:`~gristmill.runtime.job_run.job_state`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

import gristmill
from gristmill import KnowledgeBase
from gristmill.catalog.jobs import JobSpec, JobState, JobStore
from gristmill.errors import StoreError, StoreFull, StoreUnavailable
from gristmill.runtime.job_run import JobRun, job_state
from gristmill.runtime.options import RunOptions, RunOutcome
from process_tools import env_for, gristmill_json
from test_disk_full import _corpus, small_disk  # noqa: F401 - a fixture

PACKAGE = Path(gristmill.__file__).parent
#: The shells over the library, and the package's front door that re-exports it.
SHELLS = ("__init__.py", "cli", "api")


def test_only_the_shells_import_the_knowledge_base() -> None:
    """No library module (catalog, runtime, watching, ...) imports the knowledge base,
    not even for type checking: it sits above them, so no import cycle runs through it."""
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SHELLS or relative.name == "knowledge_base.py":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            modules = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                       else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(name.startswith("gristmill.knowledge_base") for name in modules):
                offences.append(f"{relative}:{node.lineno}")
    assert offences == []


@pytest.mark.parametrize(("outcome", "follow", "error", "state"), [
    (RunOutcome.FINISHED, False, None, JobState.SUCCEEDED),
    (RunOutcome.FINISHED, True, None, JobState.SUCCEEDED),
    (RunOutcome.PAUSED, False, None, JobState.PAUSED),
    (RunOutcome.PAUSED, True, None, JobState.PAUSED),
    (RunOutcome.CANCELLED, False, None, JobState.CANCELLED),
    (RunOutcome.CANCELLED, True, None, JobState.CANCELLED),
    # Ctrl-C: an ingest can be resumed like a paused one; a watch is done.
    (RunOutcome.STOPPED, False, None, JobState.PAUSED),
    (RunOutcome.STOPPED, True, None, JobState.SUCCEEDED),
    (RunOutcome.STOPPED, False, StoreFull("/h", 1),
     JobState.INTERRUPTED),
    (RunOutcome.STOPPED, True, StoreUnavailable("server gone"), JobState.INTERRUPTED),
    (RunOutcome.STOPPED, False, ValueError("a bug"), JobState.FAILED),
    (RunOutcome.FINISHED, True, KeyboardInterrupt(), JobState.FAILED),
])
def test_a_runs_end_asks_one_job_state(outcome: RunOutcome, follow: bool,
                                       error: BaseException | None, state: JobState) -> None:
    """Ingest and watch map a run's end to the same state; a database error leaves the
    job interrupted (resumable), any other error fails it."""
    assert job_state(outcome, follow=follow, error=error) == state


class FailingFinish(JobStore):
    """The real job store, except that recording a run's end fails (the disk is full)."""

    def finish(self, *args: object, **kwargs: object) -> JobState:
        raise StoreFull("the home", 1)


def test_an_end_that_cannot_be_recorded_after_a_database_error_is_interrupted(
        tmp_path: Path) -> None:
    """A run stopped by a database error whose end cannot be written either reports its
    job interrupted (as `jobs list` will show it); any other end that cannot be written
    raises."""
    source = tmp_path / "src"
    source.mkdir()
    with KnowledgeBase.open(tmp_path / "home", embedder="none") as kb:
        run = JobRun.create(kb, JobSpec("docs", (str(source),)))
        run.start()
        kb.jobs = FailingFinish(kb.db)
        assert run.finish(StoreFull("the home", 1), {}) == JobState.INTERRUPTED
        with pytest.raises(StoreError):
            run.finish(None, {})


def test_embed_only_works_for_no_job(tmp_path: Path) -> None:
    """The embedding stage alone records no job and builds a runner over every
    collection; a run of a job has both ids."""
    with KnowledgeBase.open(tmp_path / "home", embedder="none") as kb:
        runner = JobRun.embed_only(kb).runner()
        assert (runner.extract, runner.job_id, runner.jobs) == (False, None, None)
        assert kb.jobs.recent() == []
    with pytest.raises(ValueError, match="both a job_id and a run_id"):
        RunOptions("me", "docs", ("/data",), job_id=1)


@pytest.mark.sqlite_only("fills the disk under the SQLite catalog in the home folder")
@pytest.mark.slow
def test_a_watch_stopped_by_a_full_disk_leaves_its_job_interrupted(
        small_disk: Path, tmp_path: Path) -> None:  # noqa: F811 - the fixture
    """A watch whose catalog's disk fills up stops and leaves its job interrupted, as an
    ingest does (not failed): freeing space and resuming continues it."""
    corpus = _corpus(tmp_path / "corpus")
    home = small_disk / "home"
    env = env_for(home, workers="1")
    proc = subprocess.run([sys.executable, "-m", "gristmill", "watch", str(corpus)],
                          env=env, text=True, capture_output=True, timeout=300,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "disk full in" in proc.stderr
    deadline = time.monotonic() + 60
    jobs = gristmill_json("jobs", "list", env=env)
    while jobs[0]["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.2)
        jobs = gristmill_json("jobs", "list", env=env)
    assert [job["state"] for job in jobs] == ["interrupted"], json.dumps(jobs)
