"""The fork server that local worker processes are started from.

Workers are forked from a small server process instead of from the driver, so they
never inherit the driver's threads (the embedding stage) or its database connection.
The server imports the extractors once (:data:`PRELOAD`), so each new worker starts with
them loaded. This module imports nothing else: the CLI starts the server before it
imports the rest of gristmill, so the two imports run side by side on two cores.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import multiprocessing.forkserver

__all__ = ["PRELOAD", "start_fork_server"]

#: Imported once in the fork server. The office libraries (python-docx, python-pptx,
#: openpyxl: ~0.3 s of imports) are left to the registry's lazy loading: a worker
#: imports them on its first office file, once per worker lifetime, instead of every
#: run paying for them before its first file.
PRELOAD = ["gristmill.runtime.worker", "gristmill.extract.pdf", "gristmill.extract.html",
           "gristmill.extract.text"]


def start_fork_server() -> multiprocessing.context.BaseContext:
    """Start the fork server now, without waiting for it (idempotent).

    It spends ~0.1 s of a core importing the extractors, while the caller goes on
    (imports, discovery) instead of before the first file.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    multiprocessing.forkserver.ensure_running()
    return context
