"""How a run answers SIGINT and SIGTERM: finish the items in flight, then stop.

A run stopped this way commits what finished and gives back the leases of the rest, so
the next run starts at once; killing it outright would leave those leases to expire.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable

__all__ = ["stop_on_signals"]

log = logging.getLogger(__name__)


def stop_on_signals(stop: Callable[[], None]) -> Callable[[], None]:
    """SIGINT/SIGTERM ask the run to stop cleanly; a second SIGINT interrupts at once."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    hits = {"n": 0}

    def handler(signum: int, _frame: object) -> None:
        hits["n"] += 1
        if signum == signal.SIGINT and hits["n"] > 1:
            raise KeyboardInterrupt
        name = signal.Signals(signum).name
        log.warning("received %s: finishing in-flight work and stopping", name)
        # Said at once on stderr, terminal or not (a live view also shows it): stopping
        # waits for the items in flight, seconds to minutes, and silence reads as a hang.
        again = " (Ctrl-C again to abort)" if signum == signal.SIGINT else ""
        try:
            sys.stderr.write(f"stopping on {name}: finishing in-flight items{again}\n")
            sys.stderr.flush()
        except (OSError, RuntimeError, ValueError):
            pass  # stderr closed, or busy with a line of its own (a reentrant write)
        stop()

    for sig in previous:
        signal.signal(sig, handler)

    def restore() -> None:
        for sig, old in previous.items():
            signal.signal(sig, old)

    return restore
