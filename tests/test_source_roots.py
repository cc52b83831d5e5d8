"""Source roots hold where files are read, not only where a job is created: a folder
swapped for a symlink to the outside, before a job walks it or resumes, or a file
swapped between discovery and extraction, is never read (issue 11, finding 1)."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from api.http_server import TOKEN, Server, job_processes, start_server, wait_for
from backends import query
from gristmill.errors import SourceError
from gristmill.knowledge_base import KnowledgeBase
from gristmill.sources import Matcher, walk
from process_tools import env_for, gristmill, start

SECRET = "zanzibarpassword"
READ_TOKEN = "source-roots-read-token"

# A `gristmill jobs run` process started with this on its PYTHONPATH waits at start-up
# until the test opens the gate: the test decides what the disk looks like when the job
# process first looks at it, however fast or slow the machine is.
_JOB_GATE = '''
import os, sys, time
from pathlib import Path
gate = os.environ.get("TEST_JOB_GATE")
if gate and "jobs" in sys.orig_argv and "run" in sys.orig_argv:
    Path(gate, f"waiting-{os.getpid()}").touch()
    while not Path(gate, "open").exists():
        time.sleep(0.05)
'''

# An extractor plugin for `.paced` files that waits, while a worker holds its item, until
# the test opens the gate: discovery is done, the next item not yet opened.
_PACED_EXTRACTOR = '''
import os, time
from pathlib import Path
from gristmill.extract import Segment, register
class Paced:
    name = "paced"; version = 1; extensions = frozenset({".paced"})
    def extract(self, path, limits):
        gate = Path(os.environ["TEST_PACED_GATE"])
        (gate / "reading").touch()
        while not (gate / "open").exists():
            time.sleep(0.05)
        yield Segment(path.read_text())
register(Paced())
'''


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _await(condition: object, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _chunks_with(home: Path, word: str) -> int:
    return query(home, "SELECT count(*) FROM chunks WHERE text LIKE ?", (f"%{word}%",))[0][0]


def _swap_for_link(folder: Path, target: Path) -> None:
    """Replace ``folder`` by a symlink to ``target``, as an attacker with write access
    to a root would."""
    folder.rename(folder.with_name(folder.name + ".orig"))
    folder.symlink_to(target, target_is_directory=True)


# -- over the HTTP API, with a real server and real job processes ----------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Server, Path, Path]]:
    """`gristmill serve` with source roots, an admin and a read token; its job processes
    wait at the gate. Yields the server, the root and the gate folder."""
    root = tmp_path / "root"
    _write(root / "share" / "swap" / "notes.txt", "harmless notes about otters\n")
    _write(tmp_path / "outside" / "secret" / "secret.txt", f"the {SECRET} is here\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    hooks = tmp_path / "hooks"
    _write(hooks / "sitecustomize.py", _JOB_GATE)
    cwd = tmp_path / "cwd"
    digest = hashlib.sha256(READ_TOKEN.encode()).hexdigest()
    _write(cwd / "gristmill.toml",
           f'[[api_tokens]]\nname = "reader"\nsha256 = "{digest}"\nscope = "read"\n')
    home = tmp_path / "home"
    env = env_for(home, workers="1", source_roots=str(root), api_token=TOKEN)
    env.update(PYTHONPATH=str(hooks), TEST_JOB_GATE=str(gate))
    server = start_server(env, home, tmp_path / "serve.log", cwd=cwd)
    yield server, root, gate
    (gate / "open").touch()
    server.stop()
    for proc in job_processes(home):
        proc.kill()


def _waiting_pids(gate: Path) -> set[int]:
    """The job processes waiting at the gate."""
    return {int(p.name.removeprefix("waiting-")) for p in gate.glob("waiting-*")}


def _secret_found(server: Server) -> list[object]:
    with httpx.Client(base_url=server.url, timeout=30,
                      headers={"Authorization": f"Bearer {READ_TOKEN}"}) as reader:
        answer = reader.get("/api/v1/search", params={"q": SECRET, "mode": "keyword"})
        assert answer.status_code == 200, answer.text
        return [hit for hit in answer.json() if SECRET in hit["text"]]


def _job_log(server: Server, job_id: int) -> str:
    return (server.home / "logs" / f"job-{job_id}.log").read_text()


def test_a_job_source_swapped_for_a_symlink_after_creation_is_not_read(
        served: tuple[Server, Path, Path], tmp_path: Path) -> None:
    """A job created on a real folder inside the roots, which becomes a symlink to an
    outside folder before the job process walks it, fails with a clear reason and a
    read token's search finds nothing of the outside folder."""
    server, root, gate = served
    created = server.client.post("/api/v1/jobs", json={"source": str(root / "share/swap")})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    _await(lambda: _waiting_pids(gate), "the job process to start")
    _swap_for_link(root / "share" / "swap", tmp_path / "outside" / "secret")
    (gate / "open").touch()
    job = wait_for(server.client, job_id, "succeeded", "failed", timeout=120)
    assert job["state"] == "failed", job
    assert "outside the source roots" in _job_log(server, job_id)
    assert _secret_found(server) == []


def test_resuming_a_job_whose_source_became_a_symlink_out_is_refused(
        served: tuple[Server, Path, Path], tmp_path: Path) -> None:
    """A job killed before it ran, whose source is then replaced by a symlink to an
    outside folder, is resumed over HTTP: the run refuses the source and reads nothing."""
    server, root, gate = served
    created = server.client.post("/api/v1/jobs", json={"source": str(root / "share/swap")})
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    _await(lambda: _waiting_pids(gate), "the job process to start")
    [pid] = _waiting_pids(gate)
    os.kill(pid, 9)  # kill -9 of the job process: the job is interrupted, resumable
    wait_for(server.client, job_id, "interrupted", timeout=60)
    _swap_for_link(root / "share" / "swap", tmp_path / "outside" / "secret")
    (gate / "open").touch()
    resumed = server.client.post(f"/api/v1/jobs/{job_id}/resume")
    assert resumed.status_code == 202, resumed.text
    job = wait_for(server.client, job_id, "succeeded", "failed", timeout=120)
    assert job["state"] == "failed", job
    assert "outside the source roots" in _job_log(server, job_id)
    assert _secret_found(server) == []


# -- through the library and the CLI -------------------------------------------------


def test_folder_symlinks_out_of_the_roots_are_neither_followed_nor_a_way_in(
        tmp_path: Path) -> None:
    """Inside the roots, a folder symlink to the outside is not followed; a source named
    through such a symlink (itself, or a folder on its path) is refused, with a reason."""
    root = tmp_path / "root"
    outside = tmp_path / "outside"
    _write(outside / "deep" / "secret.txt", f"the {SECRET} is here\n")
    _write(root / "docs" / "notes.txt", "harmless notes about otters\n")
    (root / "docs" / "link").symlink_to(outside, target_is_directory=True)
    (root / "portal").symlink_to(outside, target_is_directory=True)
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1,
                            source_roots=[root]) as kb:
        report = kb.ingest([root / "docs"])
        assert report.items["indexed"] == 1
        for source in (root / "portal", root / "portal" / "deep",
                       root / "portal" / "deep" / "secret.txt"):
            with pytest.raises(SourceError, match="outside the source roots"):
                kb.ingest([source])
        assert kb.search(SECRET, mode="keyword") == []
    dry = gristmill("ingest", str(root / "portal"), "--dry-run",
                    env=env_for(tmp_path / "home", source_roots=str(root)))
    assert dry.returncode != 0 and "outside the source roots" in dry.stderr, dry
    assert _chunks_with(tmp_path / "home", SECRET) == 0


def test_a_file_swapped_for_a_symlink_out_after_discovery_is_not_read(
        tmp_path: Path) -> None:
    """A file that discovery hashed inside the roots and that becomes a symlink to an
    outside file before a worker opens it is skipped with the reason, never read."""
    root = tmp_path / "root"
    _write(root / "src" / "a.paced", "the first file, which holds the worker\n")
    victim = _write(root / "src" / "b.txt", "harmless notes about otters\n")
    secret = _write(tmp_path / "outside" / "secret.txt", f"the {SECRET} is here\n")
    gate = tmp_path / "gate"
    gate.mkdir()
    _write(tmp_path / "hooks" / "sitecustomize.py", _PACED_EXTRACTOR)
    home = tmp_path / "home"
    # One item in flight: b.txt is opened only after a.paced is done.
    env = env_for(home, workers="1", window="1", source_roots=str(root))
    env.update(PYTHONPATH=str(tmp_path / "hooks"), TEST_PACED_GATE=str(gate))
    proc = start("ingest", str(root / "src"), env=env)
    try:
        _await(lambda: (gate / "reading").exists() or proc.poll() is not None,
               "a.paced to be extracted")
        assert proc.poll() is None, proc.communicate()
        # Discovery committed both files in one batch before a.paced was claimed.
        assert query(home, "SELECT count(*) FROM items WHERE source = ? AND sha256 IS NOT NULL",
                     (str(victim),))[0][0] == 1
        victim.unlink()
        victim.symlink_to(secret)
        (gate / "open").touch()
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, out + err
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _chunks_with(home, SECRET) == 0
    [(status, error)] = query(home, "SELECT status, error FROM items WHERE source = ?",
                              (str(victim),))
    assert status == "skipped" and "outside the source roots" in error


def test_a_folder_swapped_for_a_symlink_while_walked_is_not_entered(tmp_path: Path) -> None:
    """A folder that the walk listed as a real folder and that becomes a symlink to the
    outside before the walk enters it is not entered: nothing outside is yielded."""
    root = tmp_path / "root"
    _write(root / "a" / "first.txt", "first\n")
    _write(root / "b" / "second.txt", "second\n")
    _write(tmp_path / "outside" / "secret.txt", f"the {SECRET} is here\n")
    found = []
    for facts in walk(root, Matcher(), confine=[root]):
        found.append(facts)
        if facts.source.endswith("first.txt"):  # root listed, a/ entered, b/ not yet
            _swap_for_link(root / "b", tmp_path / "outside")
    assert [Path(f.source).name for f in found] == ["first.txt", "b"]
    assert found[1].skip_reason == "symlink out of the allowed source roots (source_roots)"
