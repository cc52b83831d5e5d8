"""AWS Bedrock embedding models (Titan, Cohere) through boto3's ``bedrock-runtime``.

Credentials come from botocore's default chain (environment, profile, SSO,
assume-role, instance role), whose refreshable credentials renew themselves before
they expire. When AWS still answers that the token is expired or unknown, the client
is built again from a fresh session (which reads the chain again) and the request is
sent once more; a second refusal is a :class:`~gristmill.errors.CredentialError`.
botocore's exceptions are translated in one place, :func:`_classify`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from gristmill.chunking import estimate_tokens
from gristmill.config import Settings
from gristmill.embed.remote import RateBudget, Retryable, RetryPolicy, normalise, run_in_order
from gristmill.errors import ConfigError, CredentialError

__all__ = ["BedrockEmbedder"]

# Per-request limits of the models: Cohere takes 96 texts of up to 2,048 characters
# ("truncate": "END" then trims tokens); Titan v2 one text of up to 50,000 characters.
_COHERE_TEXTS = 96
_COHERE_CHARS = 2048
_TITAN_CHARS = 50_000

# AWS error codes by who must act. Refused: the credential (after one fresh client).
_REFUSED = frozenset({"ExpiredTokenException", "ExpiredToken", "UnrecognizedClientException",
                      "InvalidSignatureException", "InvalidClientTokenId",
                      "AccessDeniedException"})
# Passing: throttled or the service's own trouble, retried like HTTP 429/5xx.
_PASSING = frozenset({"ThrottlingException", "TooManyRequestsException",
                      "ServiceUnavailableException", "InternalServerException",
                      "ModelNotReadyException", "ModelTimeoutException"})
_BOTO_CREDENTIAL_ERRORS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                                     "CredentialRetrievalError", "TokenRetrievalError",
                                     "SSOTokenLoadError", "UnauthorizedSSOTokenError"})
_CREDENTIAL_FIX = ("renew the AWS credentials (`aws sso login`, new keys in the "
                   "environment or profile) and check that this model's access is "
                   "granted in the Bedrock console, then resume the job")

Family = Literal["titan-v1", "titan-v2", "cohere"]


class BedrockEmbedder:
    """Embeds with a Bedrock model: ``amazon.titan-embed-text-v2:0``,
    ``amazon.titan-embed-text-v1``, ``cohere.embed-english-v3``,
    ``cohere.embed-multilingual-v3`` (or a cross-region profile of one, ``us.…``).

    Args:
        model: the Bedrock model id.
        region: the AWS region (default: botocore's).
        dimensions: Titan v2's ``dimensions`` (256, 512 or 1024) or Cohere's
            ``output_dimension``; unset: the model's own.
        concurrency: requests in flight at once.
        budget: requests and tokens per minute.
        timeout: seconds one request may take.
        max_retries: retries after throttling, a service error or a timeout.
        backoff: the first retry waits up to this many seconds (then doubling).
        client_factory: builds a ``bedrock-runtime`` client; called again after an
            expired token (default: from a new boto3 session).
    """

    def __init__(self, model: str, *, region: str | None = None,
                 dimensions: int | None = None, concurrency: int = 4,
                 budget: RateBudget | None = None, timeout: float = 60.0,
                 max_retries: int = 6, backoff: float = 0.5,
                 client_factory: Callable[[], Any] | None = None) -> None:
        self._model = model
        self._family = _family(model)
        if self._family == "titan-v1" and dimensions is not None:
            raise ConfigError(f"{model} has a fixed vector length: unset embed_dimensions "
                              "or use amazon.titan-embed-text-v2:0")
        self._dimensions = dimensions
        self.model_id = f"bedrock:{model}" + (f"@{dimensions}" if dimensions else "")
        self._dim: int | None = dimensions
        self._factory = client_factory or _boto3_factory(region, timeout, concurrency)
        self._client = self._factory()
        self._client_generation = 0
        self._client_lock = threading.Lock()
        self._budget = budget if budget is not None else RateBudget()
        self._retries = RetryPolicy(max_retries, f"Bedrock model {model}", backoff=backoff)
        self._pool = (ThreadPoolExecutor(concurrency, thread_name_prefix="gristmill-bedrock")
                      if concurrency > 1 else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> BedrockEmbedder:
        """The embedder the ``bedrock_*`` and ``embed_*`` settings describe.

        Raises:
            ConfigError: boto3 is not installed, or the model is not Titan or Cohere.
        """
        return cls(settings.bedrock_model_id, region=settings.bedrock_region,
                   dimensions=settings.embed_dimensions,
                   concurrency=settings.embed_concurrency,
                   budget=RateBudget(settings.embed_rpm, settings.embed_tpm),
                   timeout=settings.embed_timeout, max_retries=settings.embed_max_retries)

    @property
    def dim(self) -> int:
        """Vector length: ``dimensions`` when set, else learnt from the first answer."""
        if self._dim is None:
            self.embed(["dimension probe"])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` in their order, shape ``(len(texts), dim)``.

        Raises:
            CredentialError: AWS refused the credentials, also from a fresh session.
            EmbedderUnavailable: throttling or service errors outlasted the retries.
            ConfigError: Bedrock rejected the request (model id, dimensions, region).
        """
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        step = _COHERE_TEXTS if self._family == "cohere" else 1
        requests = [range(i, min(i + step, len(texts))) for i in range(0, len(texts), step)]
        parts = run_in_order(self._pool, lambda r: self._embed_request(texts[r.start:r.stop]),
                             requests)
        return np.concatenate(parts)

    def close(self) -> None:
        """Stop the request threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _embed_request(self, texts: Sequence[str]) -> np.ndarray:
        body = self._body(texts)
        tokens = sum(estimate_tokens(t) for t in texts)

        def attempt() -> np.ndarray:
            self._budget.acquire(tokens)
            rows = self._rows(self._invoke_with_refresh(body))
            if len(rows) != len(texts):
                raise ConfigError(f"Bedrock model {self._model} returned {len(rows)} "
                                  f"vectors for {len(texts)} texts")
            vectors = normalise(rows, self._dim, f"Bedrock model {self._model}")
            self._dim = vectors.shape[1]
            return vectors

        return self._retries.call(attempt)

    def _body(self, texts: Sequence[str]) -> dict[str, Any]:
        if self._family == "cohere":
            body: dict[str, Any] = {"texts": [t[:_COHERE_CHARS] for t in texts],
                                    "input_type": "search_document", "truncate": "END"}
            if self._dimensions is not None:
                body["output_dimension"] = self._dimensions
            return body
        body = {"inputText": texts[0][:_TITAN_CHARS]}
        if self._family == "titan-v2":
            body["normalize"] = True
            if self._dimensions is not None:
                body["dimensions"] = self._dimensions
        return body

    def _rows(self, answer: dict[str, Any]) -> list[list[float]]:
        try:
            if self._family != "cohere":
                return [answer["embedding"]]
            embeddings = answer["embeddings"]
            # Cohere answers {"float": [...]} when embedding types were asked for.
            return list(embeddings["float"] if isinstance(embeddings, dict) else embeddings)
        except (KeyError, TypeError):
            raise ConfigError(f"Bedrock model {self._model} answered in an unexpected "
                              f"shape ({str(answer)[:200]}): is it an embedding model?"
                              ) from None

    def _invoke_with_refresh(self, body: dict[str, Any]) -> dict[str, Any]:
        with self._client_lock:
            client, generation = self._client, self._client_generation
        try:
            return self._invoke(client, body)
        except _Refused:
            # botocore renews refreshable credentials itself; still refused means the
            # chain's source changed (new keys, a fresh SSO login): read it again, once.
            with self._client_lock:
                if self._client_generation == generation:
                    self._client = self._factory()
                    self._client_generation += 1
                client = self._client
            try:
                return self._invoke(client, body)
            except _Refused as again:
                raise CredentialError(
                    "the AWS credentials (botocore's default chain)",
                    f"were refused by Bedrock ({again.answer}), also from a fresh session",
                    _CREDENTIAL_FIX) from None

    def _invoke(self, client: Any, body: dict[str, Any]) -> dict[str, Any]:
        try:
            response = client.invoke_model(modelId=self._model, body=json.dumps(body),
                                           contentType="application/json",
                                           accept="application/json")
            answer: dict[str, Any] = json.loads(response["body"].read())
            return answer
        except Exception as exc:
            raise _classify(exc) from None


class _Refused(Exception):
    """AWS refused the credentials: fetch them again (once) before giving up."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer)
        self.answer = answer


def _classify(exc: Exception) -> Exception:
    """botocore's exception as ours: refused, passing (retried) or the request's fault."""
    name = type(exc).__name__
    if name in _BOTO_CREDENTIAL_ERRORS:
        return _Refused(f"{name}: {exc}")
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:  # a ClientError
        code = str(response["Error"].get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        answer = f"{code} (HTTP {status}): {response['Error'].get('Message', '')}"
        if code in _REFUSED:
            return _Refused(answer)
        if code in _PASSING or status == 429 or status >= 500:
            return Retryable(answer)
        return ConfigError(f"Bedrock rejected the request: {answer}; check "
                           "bedrock_model_id, bedrock_region and embed_dimensions")
    from botocore.exceptions import ConnectionError, HTTPClientError

    # Timeouts and dropped connections only: a ParamValidationError is ours to fix.
    if isinstance(exc, ConnectionError | HTTPClientError):
        return Retryable(f"{name}: {exc}")
    return exc


def _family(model: str) -> Family:
    if "cohere.embed" in model:
        return "cohere"
    if "titan-embed-text-v2" in model:
        return "titan-v2"
    if "titan-embed" in model:
        return "titan-v1"
    raise ConfigError(f"bedrock_model_id {model!r} is not a Titan or Cohere embedding model: "
                      "use amazon.titan-embed-text-v2:0 or cohere.embed-english-v3")


def _boto3_factory(region: str | None, timeout: float, concurrency: int
                   ) -> Callable[[], Any]:
    try:  # an optional extra: only `embedder = bedrock` needs it
        import boto3
        from botocore.config import Config
        from botocore.exceptions import NoRegionError
    except ImportError:
        raise ConfigError("embedder 'bedrock' needs boto3: pip install 'gristmill[bedrock]'"
                          ) from None
    # botocore's own retries are off: RetryPolicy retries (with Retry-After-free
    # backoff and the job's limits), and two layers would multiply the attempts.
    config = Config(read_timeout=timeout, connect_timeout=min(timeout, 10.0),
                    max_pool_connections=concurrency,
                    retries={"total_max_attempts": 1, "mode": "standard"})

    def make() -> Any:
        try:
            return boto3.session.Session().client("bedrock-runtime", region_name=region,
                                                  config=config)
        except NoRegionError:
            raise ConfigError("embedder 'bedrock' needs a region: set "
                              "GRISTMILL_BEDROCK_REGION (or AWS_REGION)") from None

    return make
