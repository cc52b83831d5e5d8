"""Who may call the API and what it may read: bearer tokens and their scopes, the
source roots, and which addresses may be served without a token."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gristmill.api.problems import ApiError
from gristmill.config import Scope, Settings
from gristmill.errors import SourceError
from gristmill.sources.base import canonical_root
from gristmill.sources.roots import inside_url, is_url

__all__ = ["Caller", "Tokens", "is_loopback", "new_token", "require_admin", "resolve_source"]


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request, as far as its token says."""

    name: str
    scope: Scope


class Tokens:
    """The tokens a server accepts: ``api_token`` (admin) and ``api_tokens`` (by hash)."""

    def __init__(self, settings: Settings) -> None:
        secret = settings.api_token.get_secret_value() if settings.api_token else None
        self._admin = secret.encode() if secret else None
        self._hashed = list(settings.api_tokens)

    @property
    def enabled(self) -> bool:
        """Whether requests need a token at all (without one, every caller is admin)."""
        return self._admin is not None or bool(self._hashed)

    def caller(self, authorization: str | None) -> Caller:
        """The caller an ``Authorization`` header proves.

        Raises:
            ApiError: 401 when tokens are configured and the header carries none of them.
        """
        if not self.enabled:
            return Caller("anonymous", "admin")
        scheme, _, given = (authorization or "").partition(" ")
        token = given.strip().encode()
        found: Caller | None = None
        if scheme.lower() == "bearer" and token:
            # compare_digest everywhere, and no early exit: the time a request takes
            # must not tell how much of a guess was right, or which token it was near.
            if self._admin is not None and hmac.compare_digest(token, self._admin):
                found = Caller("GRISTMILL_API_TOKEN", "admin")
            digest = hashlib.sha256(token).hexdigest().encode()
            for entry in self._hashed:
                if hmac.compare_digest(digest, entry.sha256.encode()) and found is None:
                    found = Caller(entry.name, entry.scope)
        if found is None:
            raise ApiError(401, "missing or wrong bearer token: send `Authorization: Bearer "
                                "<token>` with GRISTMILL_API_TOKEN or a token from "
                                "[[api_tokens]] in gristmill.toml",
                           headers={"WWW-Authenticate": "Bearer"})
        return found


def require_admin(caller: Caller) -> None:
    """Refuse a read-only caller.

    Raises:
        ApiError: 403 for a ``read`` token.
    """
    if caller.scope != "admin":
        raise ApiError(403, f"token {caller.name!r} is read-only: starting and steering "
                            "jobs needs a token with scope = \"admin\"")


def new_token() -> tuple[str, str]:
    """A fresh random token and its hex SHA-256 (what ``[[api_tokens]]`` stores)."""
    token = secrets.token_urlsafe(32)
    return token, hashlib.sha256(token.encode()).hexdigest()


def resolve_source(source: str, roots: Sequence[str | Path], *, remote: bool = False,
                   s3_endpoint_url: str | None = None) -> str:
    """``source`` as the real path (or canonical URL) to ingest, if it lies inside one
    of ``roots``.

    Symlinks and ``..`` are resolved first (``os.path.realpath``), so neither a link
    inside a root nor a relative climb can reach a folder outside it. A URL (allowed
    where ``remote``) must lie under a URL prefix among ``roots`` at a ``/`` boundary.

    Raises:
        ApiError: 403 outside every root (or no roots configured); 400 when the
            source is inside a root but does not exist, or is a URL where only
            folders are read.
    """
    if not roots:
        raise ApiError(403, "this server accepts no job sources: set GRISTMILL_SOURCE_ROOTS "
                            "to the folders (and URL prefixes) jobs may read "
                            "(os.pathsep-separated)")
    if is_url(source):
        return _resolve_url(source, roots, remote=remote, s3_endpoint_url=s3_endpoint_url)
    if not os.path.isabs(source):
        raise ApiError(400, f"source {source!r} must be an absolute path")
    real = os.path.realpath(source)
    for root in roots:
        if is_url(root):
            continue  # a URL prefix admits no path (its realpath would be a folder!)
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


def _resolve_url(source: str, roots: Sequence[str | Path], *, remote: bool,
                 s3_endpoint_url: str | None) -> str:
    if not remote:
        raise ApiError(400, f"source {source!r}: this kind of job reads folders only; give "
                            "an absolute path")
    if "@" in source.partition("://")[2].partition("/")[0]:
        # The job runs in another process, which would not have the password, and a
        # password must not be stored with the job: the server's configuration has it.
        shown = f"{source.partition('://')[0]}://{source.partition('@')[2]}"
        raise ApiError(400, f"source {shown!r}: a user or password in a job's URL is not "
                            "accepted; configure them on the server in fsspec's "
                            "configuration (FSSPEC_<PROTOCOL>_USERNAME and "
                            "FSSPEC_<PROTOCOL>_PASSWORD, or an fsspec config file) and "
                            "give the URL without them")
    outside = ApiError(403, f"source {source!r} is not under a URL prefix among the "
                            "configured source roots (GRISTMILL_SOURCE_ROOTS), such as "
                            "s3://bucket/prefix/ (mind the trailing /)")
    # Checked before the store is asked anything, so the API tells nothing about
    # buckets outside the roots.
    if not inside_url(source, roots):
        raise outside
    try:
        canonical = canonical_root(source, s3_endpoint_url=s3_endpoint_url)
    except SourceError as error:
        raise ApiError(400, str(error)) from None
    # The catalog's spelling is what the job reads: it must be inside as well.
    if not inside_url(canonical, roots):
        raise outside
    return canonical


def is_loopback(host: str) -> bool:
    """Whether ``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve to anything
