"""Who holds a lease: a token naming the process, and whether that process is gone.

Items and jobs are leased to a run; a lease whose owner died on this host is taken back
at once instead of waiting for its expiry.
"""

from __future__ import annotations

import socket

import psutil

__all__ = ["lease_owner_token", "owner_is_dead"]


def lease_owner_token() -> str:
    """``host:pid:start-time`` of this process: enough to tell, on this host, whether the
    owner of a lease is still alive (a pid alone can be reused)."""
    proc = psutil.Process()
    return f"{socket.gethostname()}:{proc.pid}:{proc.create_time():.2f}"


def owner_is_dead(owner: str, host: str) -> bool:
    """Whether the process behind a ``lease_owner_token`` is gone (known only on its own
    host: elsewhere, only an expiry tells)."""
    try:
        owner_host, pid_text, started = owner.rsplit(":", 2)
        pid = int(pid_text)
    except ValueError:
        return False
    if owner_host != host:
        return False  # another machine's lease: only its expiry can free it
    try:
        return f"{psutil.Process(pid).create_time():.2f}" != started
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return True
    except psutil.AccessDenied:
        return False
