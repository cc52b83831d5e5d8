"""A 1 GB object from a real SeaweedFS streams through ingest in bounded memory (issue 17):
the download goes to a spool file block by block, hashed as it comes, never held whole."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from boto3.s3.transfer import TransferConfig
from seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, running_seaweed

from backends import query
from process_tools import PeakTreeRss, env_for

SIZE = 1_000_000_000  # bytes: the object
PEAK_LIMIT = 400 * 1024 * 1024  # the whole process tree's peak RSS must stay below
# The object, on the server's disk, and its copy in the spool, with room to spare.
NEEDED_FREE = 3 * 1024**3


_BLOCK = b"".join(b"line %d of the granary ledger: one sack of barley\n" % i
                 for i in range(20_000))  # about 1 MB of text


class _Lines(io.RawIOBase):
    """``size`` bytes of text, made block by block as they are read (never all at once)."""

    def __init__(self, size: int) -> None:
        self._left = size
        self._blocks = 0
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._left)
        while len(self._pending) < want:
            self._pending += b"block %d\n" % self._blocks + _BLOCK
            self._blocks += 1
        buffer[:want] = self._pending[:want]
        del self._pending[:want]
        self._left -= want
        return want


def _sha256_of_lines(size: int) -> str:
    digest, stream = hashlib.sha256(), _Lines(size)
    while block := stream.read(8 * 1024 * 1024):
        digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the module, if the disk has room for the object twice."""
    folder = tmp_path_factory.mktemp("seaweedfs-large")
    free = shutil.disk_usage(folder).free
    if free < NEEDED_FREE:
        pytest.skip(f"{free / 1024**3:.1f} GB free where the test writes: a 1 GB object "
                    "and its spooled copy need 3 GB")
    with running_seaweed(folder) as server:
        yield server


@pytest.mark.slow
def test_a_1_gb_object_streams_through_ingest_in_bounded_memory(
        tmp_path: Path, seaweed: SeaweedFS) -> None:
    """The CLI's whole process tree stays far below the object's size while it downloads
    and hashes a 1 GB object; the item ends with the object's size and sha256 recorded
    and a reason of its own (its text is over max_text_chars), not a crash."""
    if shutil.disk_usage(tmp_path).free < NEEDED_FREE:
        pytest.skip("under 3 GB free for the spool")
    bucket = f"gm-{uuid.uuid4().hex[:12]}"
    client = seaweed.client()
    client.create_bucket(Bucket=bucket)
    client.upload_fileobj(_Lines(SIZE), bucket, "big/ledger.txt",
                          Config=TransferConfig(multipart_chunksize=64 * 1024 * 1024,
                                                max_concurrency=4))
    home = tmp_path / "home"
    env = env_for(home, workers="1")
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=seaweed.endpoint)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS"):
        env.pop(variable, None)
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "gristmill", "ingest",
                             f"s3://{bucket}/big/"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    sampler = PeakTreeRss(proc.pid)
    try:
        output, _ = proc.communicate(timeout=900)
    finally:
        peak = sampler.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    seconds = time.monotonic() - started
    # The figure BENCHMARKS.md records ("S3 sources"); `pytest -s` shows it.
    print(f"\n1 GB object ingested in {seconds:.1f} s; peak RSS of the process tree "
          f"{peak / 2**20:.0f} MiB (limit {PEAK_LIMIT / 2**20:.0f} MiB)")
    assert proc.returncode == 0, output
    assert peak < PEAK_LIMIT, f"peak RSS {peak / 2**20:.0f} MiB for a 1 GB object"
    [(status, size, sha256, error)] = query(
        home, "SELECT status, size, sha256, error FROM items WHERE source = ?",
        (f"s3://{bucket}/big/ledger.txt",))
    assert (size, sha256) == (SIZE, _sha256_of_lines(SIZE))
    assert status in ("failed", "skipped") and "max_text_chars" in error
    assert not list((home / "spool").glob("*")), "the spooled copy outlives its item"
