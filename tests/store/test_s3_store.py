"""The S3 store of originals against a real SeaweedFS on loopback: HEAD before PUT, the
server's sha256 check, a large original as a multipart upload aborted (never completed)
when its bytes are wrong, and a damaged object refused when read back."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from seaweed import SeaweedFS
from store_helpers import puts, sha256_of

from gristmill.errors import ConfigError, TransientError
from gristmill.store import DigestMismatch, S3Store, open_store, store_error

DATA = b"The granary ledger lists every sack of barley.\n"
SHA = sha256_of(DATA)
# Over the single-PUT limit (8 MB): sent as a multipart upload.
LARGE = b"".join(b"sack %07d of barley\n" % i for i in range(600_000))


def test_put_heads_first_and_writes_once(seaweed: SeaweedFS, bucket: str,
                                         tmp_path: Path) -> None:
    """The object lands at ``<prefix>ab/cd/<sha256>`` with the bytes; a second put of the
    same bytes sends no PUT; a local copy has the bytes under the name asked for."""
    store = open_store(f"s3://{bucket}/objects/")
    assert isinstance(store, S3Store)
    assert store.key(SHA) == f"objects/{SHA[:2]}/{SHA[2:4]}/{SHA}"
    assert not store.has(SHA)
    assert store.put(SHA, io.BytesIO(DATA), len(DATA)) is True
    client = seaweed.client()
    assert client.get_object(Bucket=bucket, Key=store.key(SHA))["Body"].read() == DATA
    written = puts(seaweed, bucket)
    assert store.put(SHA, io.BytesIO(DATA), len(DATA)) is False
    assert puts(seaweed, bucket) == written
    with store.local_copy(SHA, tmp_path / "spool", "ledger.txt", 1 << 20) as copy:
        assert copy.path.name == "ledger.txt"
        assert (copy.path.read_bytes(), copy.sha256) == (DATA, SHA)


def test_the_server_checks_the_sha256_of_a_single_put(seaweed: SeaweedFS,
                                                       bucket: str) -> None:
    """SeaweedFS refuses a PUT whose ChecksumSHA256 is not its body's (BadDigest): the
    header the store sends is verified, not decoration."""
    import base64

    from botocore.exceptions import ClientError

    wrong = base64.b64encode(bytes.fromhex(sha256_of(b"other bytes"))).decode()
    with pytest.raises(ClientError, match="BadDigest"):
        seaweed.client().put_object(Bucket=bucket, Key="probe", Body=DATA,
                                    ChecksumSHA256=wrong)
    assert "Contents" not in seaweed.client().list_objects_v2(Bucket=bucket)


@pytest.mark.parametrize("size", [len(DATA), len(LARGE)], ids=["single", "multipart"])
def test_bytes_that_are_not_the_sha256_never_become_an_object(
        seaweed: SeaweedFS, bucket: str, size: int) -> None:
    """Wrong bytes are refused before a single PUT is sent, or on the last part of a
    multipart upload, which is then aborted: no object, no upload left open."""
    store = open_store(f"s3://{bucket}/objects/")
    data = DATA if size == len(DATA) else LARGE
    claimed = sha256_of(data + b"!")
    with pytest.raises(DigestMismatch):
        store.put(claimed, io.BytesIO(data), len(data))
    client = seaweed.client()
    assert "Contents" not in client.list_objects_v2(Bucket=bucket)
    assert not client.list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_a_large_original_is_stored_whole(seaweed: SeaweedFS, bucket: str,
                                          tmp_path: Path) -> None:
    """A multipart upload of right bytes completes, and reads back checked."""
    store = open_store(f"s3://{bucket}/o")  # no trailing slash: a prefix all the same
    sha = sha256_of(LARGE)
    assert store.put(sha, io.BytesIO(LARGE), len(LARGE))
    assert store.key(sha).startswith("o/")
    with store.local_copy(sha, tmp_path, "big.txt", 1 << 30) as copy:
        assert copy.sha256 == sha and copy.size == len(LARGE)


def test_a_damaged_object_is_refused_when_read_back(seaweed: SeaweedFS, bucket: str,
                                                    tmp_path: Path) -> None:
    """An object overwritten with other bytes (by hand, by another tool) is not handed
    out as the original."""
    store = open_store(f"s3://{bucket}/objects/")
    store.put(SHA, io.BytesIO(DATA), len(DATA))
    seaweed.client().put_object(Bucket=bucket, Key=store.key(SHA), Body=b"not the ledger")
    with pytest.raises(DigestMismatch), \
            store.local_copy(SHA, tmp_path / "spool", "ledger.txt", 1 << 20):
        pass


def test_a_missing_bucket_is_a_config_error_and_an_unreachable_store_is_transient(
        seaweed: SeaweedFS, bucket: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No bucket: the configuration's, saying to check the bucket. Nothing listening at
    the endpoint: transient (the item is retried later)."""
    store = open_store(f"s3://{bucket}-none/objects/")
    with pytest.raises(Exception) as caught:
        store.put(SHA, io.BytesIO(DATA), len(DATA))
    error = store_error(caught.value, store.location)
    assert isinstance(error, ConfigError)
    assert "bucket" in str(error) and "`store`" in str(error)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    down = open_store(f"s3://{bucket}/objects/")
    with pytest.raises(Exception) as caught:
        down.put(SHA, io.BytesIO(DATA), len(DATA))
    assert isinstance(store_error(caught.value, down.location), TransientError)
