"""S3 and S3-compatible object stores (AWS S3, MinIO, SeaweedFS, Ceph, R2) as a source.

A root is ``s3://bucket/prefix/`` (every object under the prefix), ``s3://bucket`` (the
whole bucket) or ``s3://bucket/key`` (one object). Items are named by their URL,
``s3://bucket/key``. The listing is read one ``list_objects_v2`` page (1,000 keys) at a
time while workers already extract what earlier pages found. An object's change token is
its ETag: an object listed with the ETag and size the catalog holds is unchanged and is
never downloaded; a new or changed one is downloaded by a worker, into a spool file in
the home hashed as it streams (see :func:`gristmill.sources.base.spool`), then extracted.
A dropped connection mid-download resumes with a ranged GET of the rest, pinned to the
ETag first read (``If-Match``, and the answer's ETag and range checked, for stores that
ignore either), so a large object is not fetched twice and never mixes two versions.

Credentials come from boto3's default chain (environment, shared config and profile,
SSO, container or instance role), which refreshes temporary credentials itself, so a
long job survives their rotation. The endpoint is boto3's too (``AWS_ENDPOINT_URL_S3``,
``AWS_ENDPOINT_URL``, the profile's ``endpoint_url``) unless the ``s3_endpoint_url``
setting names one. botocore's errors are translated here, once: into a
:class:`~gristmill.errors.SourceError` for a listing (with what to check), into an
:class:`~gristmill.errors.ItemError` (transient or permanent) for one object.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from gristmill.catalog import FileFacts
from gristmill.errors import (
    ConfigError,
    ExtractionError,
    ItemError,
    SourceError,
    TransientError,
)
from gristmill.sources.base import ObjectTooLarge, Spooled, spool
from gristmill.sources.local import Matcher

__all__ = ["ObjectTooLarge", "S3Source", "client_for", "error_code", "is_missing",
           "item_error", "parse_url"]

log = logging.getLogger(__name__)

_PAGE = 1000  # keys per listing page: S3's maximum
_BLOCK = 1 << 20
# A download cut off mid-stream is resumed this many times (ranged GETs) before the
# attempt counts as a transient failure of its item.
_RESUMES = 5
# Error codes S3 (and compatible stores) answer when they are busy or briefly broken.
_BUSY = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout",
                   "RequestTimeTooSkewed", "ServiceUnavailable", "InternalError",
                   "ExpiredToken", "TokenRefreshRequired", "503", "500"})
_GONE = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({"AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                     "AllAccessDisabled", "InvalidToken"})


def parse_url(url: str) -> tuple[str, str]:
    """``(bucket, key or prefix)`` of an ``s3://`` URL.

    Raises:
        SourceError: not an ``s3://`` URL, or its bucket name is not a valid one.
    """
    scheme, _, rest = url.partition("://")
    if scheme.lower() != "s3" or not rest:
        raise SourceError(f"{url} is not an s3:// URL (s3://bucket/prefix/)")
    bucket, _, key = rest.partition("/")
    if not 3 <= len(bucket) <= 63 or not bucket.replace("-", "").replace(".", "").isalnum():
        raise SourceError(f"{url}: {bucket!r} is not a valid bucket name (3 to 63 letters, "
                          "digits, dots and hyphens)")
    return bucket, key


def client_for(endpoint_url: str | None) -> Any:
    """The process's S3 client for ``endpoint_url`` (None: boto3's endpoint), as sources
    use it: the store of originals (:mod:`gristmill.store`) shares it."""
    return _client(endpoint_url)


def error_code(exc: BaseException) -> str | None:
    """The S3 error code of a botocore ``ClientError`` (None for any other exception)."""
    return _code(exc)


def is_missing(exc: BaseException) -> bool:
    """Whether ``exc`` says the object is not there (404, ``NoSuchKey``)."""
    return _code(exc) in _GONE


def _client(endpoint_url: str | None) -> Any:
    """One S3 client per endpoint and process (a client is thread-safe, and building one
    costs tens of milliseconds), built again when the environment names other
    credentials, another profile or endpoint (a long-lived ``serve``, a test suite)."""
    return _cached_client(endpoint_url, *(os.environ.get(name) for name in _ENVIRONMENT))


# The variables a client is built from once (credentials from a profile or a role are
# refreshed by boto3 itself).
_ENVIRONMENT = ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_ACCESS_KEY_ID",
                "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_MAX_ATTEMPTS",
                "AWS_DEFAULT_REGION", "AWS_REGION")


@functools.lru_cache(maxsize=4)
def _cached_client(endpoint_url: str | None, *_environment: str | None) -> Any:
    try:
        import boto3
        from botocore.config import Config
    except ImportError:  # pragma: no cover - the extra is part of the dev install
        raise ConfigError("reading s3:// sources needs boto3: pip install "
                          "'gristmill[s3]'") from None
    # endpoint_url=None lets botocore read AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL and the
    # profile's endpoint_url itself; "standard" retries back off on throttling and 5xx.
    # No max_attempts here: botocore then reads AWS_MAX_ATTEMPTS or the profile's.
    config = Config(retries={"mode": "standard"}, connect_timeout=10, read_timeout=60)
    return boto3.session.Session().client("s3", endpoint_url=endpoint_url or None,
                                          config=config)


class S3Source:
    """The objects under one ``s3://bucket/prefix`` root (see the module docstring)."""

    def __init__(self, root: str, client: Any) -> None:
        self.root = root
        self.bucket, self.prefix = parse_url(root)
        self._client = client

    @classmethod
    def for_root(cls, root: str, *, endpoint_url: str | None = None) -> S3Source:
        """The source of ``root``, with the process's client for ``endpoint_url``."""
        parse_url(root)  # a malformed URL fails before boto3 is loaded
        return cls(root, _client(endpoint_url))

    def canonical_root(self) -> str:
        """The root as the catalog records it: ``s3://bucket/prefix/`` for a prefix,
        ``s3://bucket/key`` for one object (a root without a trailing ``/`` that names an
        object), so that ``.../docs`` and ``.../docs/`` are one root.

        Raises:
            SourceError: the bucket cannot be read (missing, refused, unreachable).
        """
        base = f"s3://{self.bucket}/"
        if not self.prefix or self.prefix.endswith("/"):
            return base + self.prefix
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.prefix)
        except Exception as exc:
            if _code(exc) not in _GONE:
                raise listing_error(exc, self.root) from exc
            return f"{base}{self.prefix}/"
        return base + self.prefix

    def entries(self, matcher: Matcher) -> Iterator[FileFacts]:
        """The objects under the root that ``matcher`` admits (matched on the key below
        the prefix), one listing page at a time. Keys ending in ``/`` (folder markers)
        and keys inside hidden folders (``.git/``, as a folder walk skips them) are left
        out.

        Raises:
            SourceError: the listing failed (see :func:`listing_error`).
        """
        folder = not self.prefix or self.prefix.endswith("/")
        paginator = self._client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix,
                                   PaginationConfig={"PageSize": _PAGE})
        try:
            for page in pages:
                for entry in page.get("Contents", ()):
                    key: str = entry["Key"]
                    if folder:
                        relative = key[len(self.prefix):]
                    elif key == self.prefix:
                        relative = key.rsplit("/", 1)[-1]
                    elif key.startswith(self.prefix + "/"):
                        relative = key[len(self.prefix) + 1:]
                    else:  # docs2/x under a root s3://bucket/docs
                        continue
                    if not relative or key.endswith("/") or any(
                            part.startswith(".") for part in relative.split("/")[:-1]):
                        continue
                    if not matcher(relative):
                        continue
                    yield FileFacts(
                        f"s3://{self.bucket}/{key}", size=int(entry["Size"]),
                        mtime_ns=int(entry["LastModified"].timestamp() * 1_000_000_000),
                        change_token=str(entry.get("ETag", "")).strip('"') or None)
        except SourceError:
            raise
        except Exception as exc:
            raise listing_error(exc, self.root) from exc

    def open(self, name: str) -> BinaryIO:
        """The object's bytes as a stream (its body, read as it is consumed)."""
        bucket, key = parse_url(name)
        response = self._client.get_object(Bucket=bucket, Key=key)
        return cast(BinaryIO, response["Body"])

    @contextlib.contextmanager
    def local_copy(self, name: str, directory: Path, max_bytes: int, *,
                   on_block: Callable[[], None] | None = None,
                   spool_name: str | None = None) -> Iterator[Spooled]:
        """Download object ``name`` into a spool file in ``directory`` (hashed as it
        streams), deleted when the context ends. The file is named like the key, or
        ``spool_name`` (an original in the store, whose key has no suffix).

        Raises:
            ObjectTooLarge: the object is over ``max_bytes`` (nothing is downloaded).
            Exception: botocore's own (see :func:`item_error`).
        """
        bucket, key = parse_url(name)
        response = self._client.get_object(Bucket=bucket, Key=key)
        size = int(response["ContentLength"])
        if size > max_bytes:
            response["Body"].close()
            raise ObjectTooLarge(size, max_bytes)
        etag = response.get("ETag")
        blocks = self._blocks(bucket, key, response, etag)
        with spool(blocks, directory, spool_name or key, max_bytes, expected_size=size,
                   on_block=on_block) as copy:
            yield copy

    def _blocks(self, bucket: str, key: str, response: dict[str, Any],
                etag: str | None) -> Iterator[bytes]:
        """The object's bytes in blocks; a connection dropped mid-body is resumed with a
        ranged GET of what is left, only if the object still has ``etag``."""
        from botocore.exceptions import BotoCoreError
        from urllib3.exceptions import HTTPError

        offset = 0
        resumes = 0
        body = response["Body"]
        while True:
            try:
                for block in body.iter_chunks(_BLOCK):
                    offset += len(block)
                    yield block
                return
            except (BotoCoreError, HTTPError, OSError) as exc:
                body.close()
                resumes += 1
                if resumes > _RESUMES:
                    raise
                log.info("s3://%s/%s: download cut off at byte %d (%s); resuming", bucket,
                         key, offset, exc)
                extra = {"IfMatch": etag} if etag else {}
                resumed = self._client.get_object(Bucket=bucket, Key=key,
                                                  Range=f"bytes={offset}-", **extra)
                body = resumed["Body"]
                _check_resumed(resumed, bucket, key, etag, offset)


def _check_resumed(response: dict[str, Any], bucket: str, key: str, etag: str | None,
                   offset: int) -> None:
    """Refuse a resumed response that is not the rest of the version first read.

    A store that ignores ``If-Match`` answers another version's bytes, and one that
    ignores ``Range`` the whole object: either, stitched onto what is spooled, would be
    a copy that never existed. The item then fails as transient and is read again whole.
    """
    url = f"s3://{bucket}/{key}"
    if etag and response.get("ETag") != etag:
        response["Body"].close()
        raise TransientError("the object changed while it was downloaded", path=url)
    if not str(response.get("ContentRange", "")).startswith(f"bytes {offset}-"):
        response["Body"].close()
        raise TransientError(f"the S3 store did not resume the download at byte {offset} "
                             "(it ignored the ranged GET)", path=url)


def item_error(exc: BaseException, url: str) -> ItemError | ConfigError:
    """What a failure to read object ``url`` means for its item: transient (the store
    is busy or unreachable: retried, and again on the next run), permanent (gone,
    refused), or the run's configuration (no credentials at all)."""
    if isinstance(exc, ItemError):
        return exc
    try:
        from botocore.exceptions import (
            BotoCoreError,
            NoCredentialsError,
            PartialCredentialsError,
        )
    except ImportError:  # another remote source's failure, with no boto3 installed
        if isinstance(exc, OSError):
            return TransientError(f"cannot read {url}: {exc}"[:300], path=url)
        return ExtractionError(f"{type(exc).__name__}: {exc}"[:300], path=url)
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return ConfigError(f"no AWS credentials to read {url}: {_CREDENTIALS_HINT}")
    code = _code(exc)
    if code is not None:
        message = _message(exc)
        if code in _GONE:
            return ExtractionError("the object is no longer in the bucket (deleted since "
                                   "it was listed); the next run removes its item",
                                   path=url)
        if code in {"PreconditionFailed", "412"}:
            return TransientError("the object changed while it was downloaded", path=url)
        if code in _DENIED:
            return ExtractionError(f"access denied ({code}): the credentials may not read "
                                   "this object (s3:GetObject)", path=url)
        if code in _BUSY or _status(exc) >= 500:
            return TransientError(f"the S3 store answered {code}: {message}"[:300], path=url)
        return ExtractionError(f"S3 error {code}: {message}"[:300], path=url)
    if isinstance(exc, BotoCoreError) or _is_urllib3(exc):
        return TransientError(f"cannot reach the S3 store: {exc}"[:300], path=url)
    if isinstance(exc, OSError):  # the spool's disk, a connection reset
        return TransientError(f"I/O error while downloading: {exc}"[:300], path=url)
    return ExtractionError(f"{type(exc).__name__}: {exc}"[:300], path=url)


def listing_error(exc: BaseException, root: str) -> SourceError:
    """A failed listing of ``root`` as one sentence saying what to check."""
    from botocore.exceptions import (
        BotoCoreError,
        NoCredentialsError,
        PartialCredentialsError,
    )

    bucket = parse_url(root)[0]
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return SourceError(f"cannot list {root}: no AWS credentials found; "
                           f"{_CREDENTIALS_HINT}")
    code = _code(exc)
    if code == "NoSuchBucket":
        return SourceError(f"cannot list {root}: there is no bucket {bucket!r} at this "
                           "endpoint; check the name, and the endpoint (s3_endpoint_url, "
                           "AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL)")
    if code in _DENIED:
        return SourceError(f"cannot list {root}: access denied ({code}); check the "
                           "credentials (AWS_PROFILE, AWS_ACCESS_KEY_ID) and that they may "
                           "list the bucket (s3:ListBucket)")
    if code is not None:
        return SourceError(f"cannot list {root}: the S3 store answered {code}: "
                           f"{_message(exc)}; run again later")
    if isinstance(exc, BotoCoreError | OSError) or _is_urllib3(exc):
        return SourceError(f"cannot list {root}: {exc}; check that the S3 endpoint is up "
                           "(s3_endpoint_url, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL) and "
                           "run again")
    return SourceError(f"cannot list {root}: {type(exc).__name__}: {exc}")


_CREDENTIALS_HINT = ("set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
                     "(aws configure, aws sso login), or run where an instance role applies")


def _code(exc: BaseException) -> str | None:
    """The error code of a botocore ``ClientError`` (None for any other exception)."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = response.get("Error", {}).get("Code")
    return str(code) if code is not None else str(_status(exc) or "") or None


def _status(exc: BaseException) -> int:
    response = getattr(exc, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


def _message(exc: BaseException) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Message") or "no details")


def _is_urllib3(exc: BaseException) -> bool:
    from urllib3.exceptions import HTTPError

    return isinstance(exc, HTTPError)
