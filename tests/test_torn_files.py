"""A file rewritten while a worker reads it is never indexed as a mix of two versions:
the read is dropped and done again, and the recorded sha256 is that of the bytes the
chunks came from (issue 11, finding 4)."""

from __future__ import annotations

import hashlib
import subprocess
import time
from pathlib import Path

from backends import query
from process_tools import env_for, start

# An extractor plugin for `.txt` that reads a file the way streaming extractors do, in
# pieces through one open file, and holds between its two halves (attempt N signals
# `half-N`) until the test opens the gate (`open-N`, or `open` for every attempt): the
# test rewrites the file at that exact point, however fast or slow the machine is.
_PACED_TEXT = '''
import os, time
from pathlib import Path
from gristmill.extract import Segment, register
class PacedText:
    name = "pacedtext"; version = 1; extensions = frozenset({".txt"})
    def extract(self, path, limits):
        gate = Path(os.environ["TEST_PACED_GATE"])
        with open(path, "rb") as fh:
            first = fh.read(os.fstat(fh.fileno()).st_size // 2)
            attempt = len(list(gate.glob("half-*"))) + 1
            (gate / f"half-{attempt}").touch()
            while not ((gate / "open").exists() or (gate / f"open-{attempt}").exists()):
                time.sleep(0.05)
            rest = fh.read()
        for block in (first + rest).decode("utf-8", "replace").split("\\n\\n"):
            if block.strip():
                yield Segment(block)
register(PacedText())
'''


def _version(word: str, lines: int = 20_000) -> str:
    """A large text file whose every paragraph names its version (same size for each)."""
    return "".join(f"{word} line {i:07d} of the version\n" + ("\n" if i % 10 == 9 else "")
                   for i in range(lines))


def _setup(tmp_path: Path, **settings: str) -> tuple[Path, Path, Path, dict[str, str]]:
    big = tmp_path / "src" / "big.txt"
    big.parent.mkdir()
    big.write_text(_version("alphaword"))
    gate = tmp_path / "gate"
    gate.mkdir()
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(_PACED_TEXT)
    home = tmp_path / "home"
    env = env_for(home, workers="1", **settings)
    env.update(PYTHONPATH=str(hooks), TEST_PACED_GATE=str(gate))
    return big, gate, home, env


def _await_half(gate: Path, attempt: int, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while not (gate / f"half-{attempt}").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"attempt {attempt} never started"
        time.sleep(0.05)


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out + err


def _words(home: Path, source: Path) -> set[str]:
    rows = query(home, "SELECT c.text FROM chunks c JOIN items i ON i.id = c.item_id "
                       "WHERE i.source = ?", (str(source),))
    return {word for word in ("alphaword", "bravoword") if any(word in t for (t,) in rows)}


def _recorded(home: Path, source: Path) -> tuple[str, str, int]:
    [row] = query(home, "SELECT status, sha256, size FROM items WHERE source = ?",
                  (str(source),))
    return row[0], row[1], row[2]


def test_a_file_overwritten_during_extraction_is_indexed_as_one_version(
        tmp_path: Path) -> None:
    """Version A is overwritten in place with B half-way through its extraction: the
    chunks hold only B and the catalog records B's sha256 and size; restoring A and
    re-running gives A's chunks only (not "unchanged" with B's text)."""
    big, gate, home, env = _setup(tmp_path)
    proc = start("ingest", str(big.parent), env=env)
    _await_half(gate, 1, proc)
    version_b = _version("bravoword")
    big.write_text(version_b)  # same inode, same size: only the stat times tell
    (gate / "open").touch()
    _finish(proc)
    assert _words(home, big) == {"bravoword"}
    assert _recorded(home, big) == ("indexed", hashlib.sha256(version_b.encode()).hexdigest(),
                                    len(version_b))

    version_a = _version("alphaword")
    big.write_text(version_a)
    _finish(start("ingest", str(big.parent), env=env))
    assert _words(home, big) == {"alphaword"}
    assert _recorded(home, big) == ("indexed", hashlib.sha256(version_a.encode()).hexdigest(),
                                    len(version_a))


def test_a_file_that_keeps_changing_while_read_fails_with_the_reason(
        tmp_path: Path) -> None:
    """A file rewritten during every read fails once its attempts are used up, with a
    reason saying so, and no chunks of any version."""
    big, gate, home, env = _setup(tmp_path, max_attempts="2")
    proc = start("ingest", str(big.parent), env=env)
    for attempt, word in ((1, "bravoword"), (2, "charlieword")):
        _await_half(gate, attempt, proc)
        big.write_text(_version(word))
        (gate / f"open-{attempt}").touch()
    _finish(proc)
    [(status, error)] = query(home, "SELECT status, error FROM items WHERE source = ?",
                              (str(big),))
    assert status == "failed" and "kept changing while it was being read" in error, error
    assert query(home, "SELECT count(*) FROM chunks")[0][0] == 0
