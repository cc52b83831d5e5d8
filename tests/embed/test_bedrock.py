"""The Bedrock embedder, tested with botocore's Stubber on a real boto3 client.

This is a Stubber test, not a test against AWS: the client is real (its request
validation and response parsing run), but each ``invoke_model`` is answered from a
queue the test fills, and nothing leaves the machine.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber

from gristmill.config import Settings
from gristmill.embed import make_embedder
from gristmill.embed.bedrock import BedrockEmbedder
from gristmill.errors import ConfigError, CredentialError, EmbedderUnavailable

TITAN = "amazon.titan-embed-text-v2:0"
COHERE = "cohere.embed-english-v3"


class JsonBody:
    """Equals a request body whose JSON is ``expected`` (key order and spacing aside)."""

    def __init__(self, expected: dict[str, Any]) -> None:
        self.expected = expected

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str | bytes) and json.loads(other) == self.expected

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return 0

    def __repr__(self) -> str:
        return f"JsonBody({self.expected!r})"


@pytest.fixture
def client() -> Iterator[tuple[Any, Stubber]]:
    # Fake static keys: a stubbed call is answered before any signing or sending.
    session = boto3.session.Session(aws_access_key_id="AKIDTEST", aws_secret_access_key="x",
                                    region_name="us-east-1")
    bedrock = session.client("bedrock-runtime")
    with Stubber(bedrock) as stubber:
        yield bedrock, stubber
        stubber.assert_no_pending_responses()


def answer(payload: dict[str, Any]) -> dict[str, Any]:
    data = json.dumps(payload).encode()
    return {"body": StreamingBody(io.BytesIO(data), len(data)),
            "contentType": "application/json"}


def expect(model: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"modelId": model, "body": JsonBody(body), "contentType": "application/json",
            "accept": "application/json"}


def build(client: tuple[Any, Stubber], model: str, **options: Any) -> BedrockEmbedder:
    # One request at a time: the Stubber answers in the order it was filled.
    options.setdefault("concurrency", 1)
    options.setdefault("backoff", 0.01)
    return BedrockEmbedder(model, client_factory=lambda: client[0], **options)


def test_titan_sends_one_text_per_call_and_vectors_come_back_normalised(
        client: tuple[Any, Stubber]) -> None:
    """Titan v2: inputText, normalize and dimensions per text; raw vectors are scaled to
    unit length and keep the texts' order."""
    _, stubber = client
    stubber.add_response("invoke_model", answer({"embedding": [3.0, 4.0, 0.0, 0.0],
                                                 "inputTextTokenCount": 2}),
                         expect(TITAN, {"inputText": "first", "normalize": True,
                                        "dimensions": 4}))
    stubber.add_response("invoke_model", answer({"embedding": [0.0, 0.0, 0.0, 2.0],
                                                 "inputTextTokenCount": 2}),
                         expect(TITAN, {"inputText": "second", "normalize": True,
                                        "dimensions": 4}))
    embedder = build(client, TITAN, dimensions=4)
    vectors = embedder.embed(["first", "second"])
    assert vectors.dtype == np.float32
    assert np.allclose(vectors, [[0.6, 0.8, 0, 0], [0, 0, 0, 1]])
    assert (embedder.dim, embedder.model_id) == (4, f"bedrock:{TITAN}@4")


def test_cohere_sends_texts_as_search_documents_in_one_call(
        client: tuple[Any, Stubber]) -> None:
    """Cohere: one call for the batch, input_type search_document, vectors in order."""
    _, stubber = client
    stubber.add_response("invoke_model",
                         answer({"id": "x", "texts": ["a", "b", "c"],
                                 "embeddings": [[1, 1], [0, 5], [-2, 0]]}),
                         expect(COHERE, {"texts": ["a", "b", "c"],
                                         "input_type": "search_document",
                                         "truncate": "END"}))
    embedder = build(client, COHERE)
    vectors = embedder.embed(["a", "b", "c"])
    assert np.allclose(vectors, [[2**-0.5, 2**-0.5], [0, 1], [-1, 0]], atol=1e-6)
    assert embedder.dim == 2 and embedder.model_id == f"bedrock:{COHERE}"


def test_throttling_is_retried_like_a_429(client: tuple[Any, Stubber]) -> None:
    """ThrottlingException twice, then an answer: the caller sees only the vector."""
    _, stubber = client
    for _ in range(2):
        stubber.add_client_error("invoke_model", service_error_code="ThrottlingException",
                                 service_message="Too many requests", http_status_code=429)
    stubber.add_response("invoke_model", answer({"embedding": [1.0, 0.0]}))
    assert np.allclose(build(client, TITAN).embed(["x"]), [[1.0, 0.0]])


def test_throttling_forever_runs_out_of_retries(client: tuple[Any, Stubber]) -> None:
    """Throttled on every try: EmbedderUnavailable quoting AWS, not a credential error."""
    _, stubber = client
    for _ in range(3):
        stubber.add_client_error("invoke_model", service_error_code="ThrottlingException",
                                 service_message="Rate exceeded", http_status_code=429)
    with pytest.raises(EmbedderUnavailable, match=r"ThrottlingException.*Rate exceeded"):
        build(client, TITAN, max_retries=2).embed(["x"])


def test_an_expired_token_is_retried_once_from_a_fresh_client(
        client: tuple[Any, Stubber]) -> None:
    """ExpiredTokenException once: a new client is built and the call succeeds."""
    bedrock, stubber = client
    built: list[Any] = []

    def factory() -> Any:
        built.append(bedrock)
        return bedrock

    stubber.add_client_error("invoke_model", service_error_code="ExpiredTokenException",
                             service_message="The security token included in the request "
                             "is expired", http_status_code=403)
    stubber.add_response("invoke_model", answer({"embedding": [0.0, 1.0]}))
    embedder = BedrockEmbedder(TITAN, client_factory=factory, concurrency=1)
    assert np.allclose(embedder.embed(["x"]), [[0.0, 1.0]])
    assert len(built) == 2


def test_an_expired_token_after_refresh_is_a_credential_error(
        client: tuple[Any, Stubber]) -> None:
    """Refused again from a fresh client: CredentialError saying how to renew."""
    _, stubber = client
    for _ in range(2):
        stubber.add_client_error("invoke_model", service_error_code="ExpiredTokenException",
                                 service_message="The security token included in the "
                                 "request is expired", http_status_code=403)
    with pytest.raises(CredentialError, match=r"ExpiredTokenException.*aws sso login"):
        build(client, TITAN).embed(["x"])


def test_a_validation_error_is_a_config_error_and_not_retried(
        client: tuple[Any, Stubber]) -> None:
    """A bad request (wrong dimensions) is the settings' fault: one call, ConfigError."""
    _, stubber = client
    stubber.add_client_error("invoke_model", service_error_code="ValidationException",
                             service_message="dimensions must be 256, 512 or 1024",
                             http_status_code=400)
    with pytest.raises(ConfigError, match=r"ValidationException.*embed_dimensions"):
        build(client, TITAN, dimensions=100).embed(["x"])


def test_unknown_models_and_titan_v1_dimensions_are_refused_up_front() -> None:
    """A model id that is not Titan or Cohere, or dimensions on Titan v1: ConfigError."""
    with pytest.raises(ConfigError, match="not a Titan or Cohere"):
        BedrockEmbedder("meta.llama3-8b-instruct-v1:0", client_factory=object)
    with pytest.raises(ConfigError, match="fixed vector length"):
        BedrockEmbedder("amazon.titan-embed-text-v1", dimensions=256, client_factory=object)


def test_make_embedder_builds_a_bedrock_client_for_the_region() -> None:
    """embedder = bedrock gives a BedrockEmbedder on a real client in the set region."""
    embedder = make_embedder(Settings(embedder="bedrock", bedrock_region="eu-west-1",
                                      bedrock_model_id=COHERE, embed_concurrency=1))
    assert isinstance(embedder, BedrockEmbedder)
    assert embedder._client.meta.region_name == "eu-west-1"
    assert embedder.model_id == f"bedrock:{COHERE}"


class FlakyClient:
    """A stand-in client (no Stubber: it cannot raise botocore's connection errors) whose
    first call times out and whose next answers."""

    def __init__(self) -> None:
        self.calls = 0

    def invoke_model(self, **request: Any) -> dict[str, Any]:
        from botocore.exceptions import ReadTimeoutError

        self.calls += 1
        if self.calls == 1:
            raise ReadTimeoutError(endpoint_url="https://bedrock-runtime.invalid")
        return answer({"embedding": [2.0, 0.0]})


def test_a_read_timeout_is_retried() -> None:
    """A request that times out is sent again; the caller sees the vector."""
    flaky = FlakyClient()
    embedder = BedrockEmbedder(TITAN, client_factory=lambda: flaky, concurrency=1,
                               backoff=0.01)
    assert np.allclose(embedder.embed(["x"]), [[1.0, 0.0]]) and flaky.calls == 2
