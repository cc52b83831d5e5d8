"""Fixtures of the store-of-originals tests: a real SeaweedFS on loopback, a bucket each."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "sources"))

from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, running_seaweed


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session (each test makes its own buckets)."""
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture()
def bucket(seaweed: SeaweedFS, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh bucket, with this process's (and its workers') credentials and endpoint
    set the standard AWS way."""
    name = f"gm-{uuid.uuid4().hex[:12]}"
    seaweed.client().create_bucket(Bucket=name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(variable, raising=False)
    return name
