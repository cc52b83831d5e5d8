"""Who may call the API and what it may read: the bearer token, the source roots, and
which addresses may be served without a token."""

from __future__ import annotations

import hmac
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path

from gristmill.api.problems import ApiError

__all__ = ["check_token", "is_loopback", "resolve_source"]


def check_token(expected: str | None, authorization: str | None) -> None:
    """Refuse a request whose ``Authorization: Bearer`` header is not ``expected``.

    Raises:
        ApiError: 401, when a token is configured and the header lacks it.
    """
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest: the time taken must not tell how much of a guess was right.
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(),
                                                             expected.encode()):
        raise ApiError(401, "missing or wrong bearer token: send `Authorization: Bearer "
                            "<GRISTMILL_API_TOKEN>`",
                       headers={"WWW-Authenticate": "Bearer"})


def resolve_source(source: str, roots: Sequence[Path]) -> str:
    """``source`` as the real path to ingest, if it lies inside one of ``roots``.

    Symlinks and ``..`` are resolved first (``os.path.realpath``), so neither a link
    inside a root nor a relative climb can reach a folder outside it.

    Raises:
        ApiError: 403 outside every root (or no roots configured); 400 when the
            source is inside a root but does not exist.
    """
    if not roots:
        raise ApiError(403, "this server accepts no job sources: set GRISTMILL_SOURCE_ROOTS "
                            "to the folders jobs may read (os.pathsep-separated)")
    if not os.path.isabs(source):
        raise ApiError(400, f"source {source!r} must be an absolute path")
    real = os.path.realpath(source)
    for root in roots:
        real_root = os.path.realpath(root)
        if os.path.commonpath([real, real_root]) == real_root:
            break
    else:
        raise ApiError(403, f"source {source!r} is outside the configured source roots "
                            "(GRISTMILL_SOURCE_ROOTS)")
    # Existence only after the root check, so the API tells nothing about other folders.
    if not os.path.exists(real):
        raise ApiError(400, f"source {source!r} does not exist")
    return real


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything
