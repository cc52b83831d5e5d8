"""Helpers of the store-of-originals tests."""

from __future__ import annotations

import hashlib
import re
import urllib.request
from pathlib import Path

from seaweed import SeaweedFS


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def folder_objects(store: Path) -> dict[str, Path]:
    """The objects of a folder store by name (temporary files left out)."""
    return {path.name: path for path in store.rglob("*")
            if path.is_file() and ".incoming" not in path.parts}


def puts(server: SeaweedFS, bucket: str) -> int:
    """PUT requests (objects and multipart parts) ``server`` served for ``bucket``."""
    url = f"http://127.0.0.1:{server.ports['metricsPort']}/metrics"
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    total = 0
    for line in text.splitlines():
        match = re.match(r'SeaweedFS_s3_request_total\{bucket="([^"]*)",code="[^"]*",'
                         r'type="PUT"\} (\S+)', line)
        if match and match[1] == bucket:
            total += int(float(match[2]))
    return total
