"""Test-only pacing: extraction waits at a gate that the test opens.

Tests that steer a job (pause, resume, cancel, kill) put this folder on ``PYTHONPATH``
(see :class:`gate.Gate`), so Python imports this module at start-up in every process
of the run: the driver, the fork server and, forked from it, each worker. With
``GRISTMILL_TEST_GATE`` naming a folder, the extractors of the test corpus's file types
(PDF, DOCX, HTML, Markdown, text) are registered again behind that gate, under their
own names and versions: before reading its file, an item takes a ticket (a file the
test put in the folder) or finds the folder's ``open`` file, and otherwise waits; then
it notes its path in the folder's ``passed`` file. A job thus advances exactly as far
as the test lets it, whatever the machine's speed, and the test sees what was read.
"""

from __future__ import annotations

import importlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

_GATE = os.environ.get("GRISTMILL_TEST_GATE")
_WAIT = 0.01  # seconds between looks at the gate
# Extension -> the built-in module and extractor name that reads it.
_GATED = {".pdf": ("pdf", "pdf"), ".docx": ("office", "docx"), ".html": ("html", "html"),
          ".md": ("text", "text"), ".txt": ("text", "text"), ".java": ("code", "code")}


def wait_at_gate(gate: Path, path: Path) -> None:
    """Return once this process holds a ticket, or the gate is open; note ``path``."""
    while not _admitted(gate):
        time.sleep(_WAIT)
    # One short O_APPEND write per line: lines from several workers do not interleave.
    fd = os.open(gate / "passed", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{path}\n".encode())
    finally:
        os.close(fd)


def _admitted(gate: Path) -> bool:
    if (gate / "open").exists():
        return True
    for ticket in sorted(gate.glob("ticket-*")):
        try:
            ticket.unlink()  # of the workers that saw it, exactly one removes it
        except FileNotFoundError:
            continue
        return True
    return False


class GatedExtractor:
    """A built-in extractor that waits at the gate before it reads."""

    def __init__(self, module: str, name: str, extensions: frozenset[str]) -> None:
        from gristmill.extract import _BUILTIN_VERSIONS

        self.name = name
        self.version = _BUILTIN_VERSIONS[name]
        self.extensions = extensions
        self._module = module
        self._inner: object | None = None

    def extract(self, path: Path, limits: object) -> Iterator[object]:
        """Wait at the gate, then extract as the built-in does."""
        assert _GATE is not None
        wait_at_gate(Path(_GATE), path)
        if self._inner is None:
            module = importlib.import_module(f"gristmill.extract.{self._module}")
            self._inner = next(e for e in module.EXTRACTORS if e.name == self.name)
        return self._inner.extract(path, limits)  # type: ignore[attr-defined, no-any-return]


def _install() -> None:
    from gristmill.extract import register

    by_name: dict[tuple[str, str], set[str]] = {}
    for ext, home in _GATED.items():
        by_name.setdefault(home, set()).add(ext)
    for (module, name), extensions in by_name.items():
        register(GatedExtractor(module, name, frozenset(extensions)))  # type: ignore[arg-type]


if _GATE:
    _install()
