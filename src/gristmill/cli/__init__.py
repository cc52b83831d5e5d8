"""The ``gristmill`` command: parses flags, calls one library method, prints the result.

Every command takes ``--home`` (or ``GRISTMILL_HOME``), ``--embedder`` (or
``GRISTMILL_EMBEDDER``) and ``--database`` (or ``GRISTMILL_DATABASE_URL``); ``--json``
gives machine-readable output. One module per group of commands; importing this package
registers them all on :data:`app`."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from typing import Any

import typer

from gristmill.cli import (  # noqa: F401 (importing them registers their commands)
    audio,
    jobs,
    knowledge,
    machine,
    moving,
    server,
    store,
    sync,
)
from gristmill.cli._shared import app

__all__ = ["app", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    if argv is None:  # the process's own command line: the CLI owns the process
        _present_script_as_package_main()
    command: Callable[..., Any] = typer.main.get_command(app)
    command(args=argv, prog_name="gristmill")


def _present_script_as_package_main() -> None:
    """Keep worker processes from running the ``gristmill`` script again.

    pip's console script is the process's ``__main__``: a file without a module spec.
    multiprocessing (forkserver) recreates such a ``__main__`` in every worker it starts
    by running the file again, which imports the whole CLI once more: measured on 300
    PDFs, the first page began 0.22 s later than under ``python -m gristmill`` and every
    worker recycled after ``max_tasks_per_worker`` items left a core idle 0.3 s instead
    of 0.04 s. Workers need nothing from the script (they run
    :mod:`gristmill.runtime.worker`), and a package's ``__main__`` is what
    multiprocessing leaves alone, so the script is named for what it stands for.
    """
    script = sys.modules.get("__main__")
    if script is not None and getattr(script, "__spec__", None) is None:
        script.__spec__ = importlib.util.find_spec("gristmill.__main__")
