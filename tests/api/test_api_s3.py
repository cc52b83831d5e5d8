"""Jobs on S3 prefixes over the HTTP API (issue 17), against a real SeaweedFS on
loopback: a prefix listed in the source roots is ingested and searchable, with its
items shown by their URLs; any other prefix or bucket is refused."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.http_server import Server, job_processes, start_server, wait_for
from process_tools import env_for
from sources.seaweed import ACCESS_KEY, SECRET_KEY, SeaweedFS, running_seaweed

DOCS = {
    "docs/granary.txt": "The granary ledger lists every sack of barley.\n",
    "docs/wheel/water.txt": "A nested note about the zqwaterwheel and its paddles.\n",
    "docs/guild.md": "# Guild\n\nThe miller guild agreed on a new barley price.\n",
}
PRIVATE = {"private/secret.txt": "zqsecret must never be ingested\n",
           "docs-old/stale.txt": "zqstale sits beside the prefix, not under it\n"}


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    """One SeaweedFS for the module."""
    with running_seaweed(tmp_path_factory.mktemp("seaweedfs")) as server:
        yield server


@pytest.fixture
def api(seaweed: SeaweedFS, tmp_path: Path) -> Iterator[tuple[Server, str]]:
    """A server whose source roots are a local folder and one bucket's ``docs/``; the
    bucket also holds objects beside and outside that prefix."""
    bucket = f"gm-{uuid.uuid4().hex[:12]}"
    client = seaweed.client()
    client.create_bucket(Bucket=bucket)
    for key, text in {**DOCS, **PRIVATE}.items():
        client.put_object(Bucket=bucket, Key=key, Body=text.encode())
    (tmp_path / "local").mkdir()
    home = tmp_path / "home"
    env = env_for(home, workers="1", api_token="s3-api-token",
                  source_roots=f"{tmp_path / 'local'}:s3://{bucket}/docs/")
    env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
               AWS_DEFAULT_REGION="us-east-1", AWS_ENDPOINT_URL_S3=seaweed.endpoint)
    for variable in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_MAX_ATTEMPTS"):
        env.pop(variable, None)
    server = start_server(env, home, tmp_path / "serve.log", token="s3-api-token")
    try:
        yield server, bucket
    finally:
        server.stop()
        for proc in job_processes(home):  # only ever a failed test's leftover
            proc.kill()


@pytest.mark.slow
def test_an_s3_prefix_in_the_source_roots_is_ingested_through_the_api(
        api: tuple[Server, str]) -> None:
    """POST /api/v1/jobs with an s3:// prefix under a listed one runs to the end; its
    items are shown by URL in the job, in search results and in the errors view."""
    server, bucket = api
    created = server.client.post("/api/v1/jobs", json={"source": f"s3://{bucket}/docs/",
                                                       "collection": "store"})
    assert created.status_code == 202, created.text
    assert created.json()["sources"] == [f"s3://{bucket}/docs/"]
    job = wait_for(server.client, int(created.json()["id"]), "succeeded", "failed",
                   timeout=120)
    assert job["state"] == "succeeded", job
    assert job["items"] == {"indexed": len(DOCS)}

    hits = server.client.get("/api/v1/search", params={"q": "zqwaterwheel",
                                                       "mode": "keyword"}).json()
    assert [hit["source"] for hit in hits] == [f"s3://{bucket}/docs/wheel/water.txt"]
    for word in ("zqsecret", "zqstale"):  # beside or outside the prefix: never read
        assert server.client.get("/api/v1/search",
                                 params={"q": word, "mode": "keyword"}).json() == []


@pytest.mark.slow
def test_urls_outside_the_listed_prefixes_are_refused(api: tuple[Server, str]) -> None:
    """Another prefix, a longer prefix or bucket name, or a climb is a 403 naming the
    source roots; nothing is queued for any of them."""
    server, bucket = api
    for source in (f"s3://{bucket}/private/", f"s3://{bucket}/docs-old/",
                   f"s3://{bucket}-evil/docs/", f"s3://{bucket}/docs/../private/",
                   f"s3://{bucket}/", "gdrive://my-drive/"):
        refused = server.client.post("/api/v1/jobs", json={"source": source})
        assert refused.status_code == 403, (source, refused.text)
        assert "source roots" in refused.json()["detail"]
    assert server.client.get("/api/v1/jobs").json() == []
