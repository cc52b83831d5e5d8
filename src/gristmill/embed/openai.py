"""Any OpenAI-compatible ``POST {base_url}/embeddings``: OpenAI, Azure OpenAI, Ollama,
vLLM, LiteLLM, text-embeddings-inference.

The call chain reads ``embed -> _embed_request (retried, budgeted) -> _post_with_key
(a 401 fetches the key again, once)``.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx
import numpy as np

from gristmill.chunking import estimate_tokens
from gristmill.config import Settings
from gristmill.embed.credentials import ApiKey
from gristmill.embed.remote import (
    RateBudget,
    Retryable,
    RetryPolicy,
    normalise,
    plan_requests,
    retry_after_seconds,
    run_in_order,
)
from gristmill.errors import ConfigError, CredentialError

__all__ = ["OpenAIEmbedder"]

_REFUSED = (401, 403)
_PROBE = "dimension probe"


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible HTTP endpoint.

    Args:
        url: the base URL (``https://api.openai.com/v1``); requests go to ``url/embeddings``.
        model: the model name sent with each request.
        dimensions: sent as ``dimensions`` when set (OpenAI's text-embedding-3 models
            shorten their vectors to it).
        key: where the API key comes from (default: ``$OPENAI_API_KEY``, if set).
        key_header: ``authorization`` (``Bearer KEY``) or ``api-key`` (Azure OpenAI).
        api_version: sent as the ``api-version`` query parameter (Azure OpenAI).
        concurrency: requests in flight at once.
        budget: requests and tokens per minute.
        timeout: seconds one request may take.
        max_retries: retries after a 429, 5xx, timeout or connection error.
        request_inputs: texts per request at most.
        request_tokens: estimated tokens per request at most.
        backoff: the first retry waits up to this many seconds (then doubling).
    """

    def __init__(self, url: str, model: str, *, dimensions: int | None = None,
                 key: ApiKey | None = None,
                 key_header: Literal["authorization", "api-key"] = "authorization",
                 api_version: str | None = None, concurrency: int = 4,
                 budget: RateBudget | None = None, timeout: float = 60.0,
                 max_retries: int = 6, request_inputs: int = 32, request_tokens: int = 8192,
                 backoff: float = 0.5) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"embed_url {url!r} is not an http(s) URL: write it as "
                              "https://HOST/v1 (GRISTMILL_EMBED_URL)")
        self._endpoint = url.rstrip("/") + "/embeddings"
        self._model = model
        self._dimensions = dimensions
        self.model_id = f"openai:{parts.netloc}/{model}" + (f"@{dimensions}" if dimensions
                                                             else "")
        self._dim: int | None = dimensions
        self._key = key if key is not None else ApiKey()
        self._key_header = key_header
        self._params = {"api-version": api_version} if api_version else {}
        self._budget = budget if budget is not None else RateBudget()
        self._retries = RetryPolicy(max_retries, self._endpoint, backoff=backoff)
        self._request_inputs = request_inputs
        self._request_tokens = request_tokens
        self._client = httpx.Client(
            timeout=timeout,
            limits=httpx.Limits(max_connections=concurrency,
                                max_keepalive_connections=concurrency))
        self._pool = (ThreadPoolExecutor(concurrency, thread_name_prefix="gristmill-embed")
                      if concurrency > 1 else None)
        self._dim_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> OpenAIEmbedder:
        """The embedder the ``embed_*`` settings describe.

        Raises:
            ConfigError: ``embed_url`` or ``embed_model`` is not set.
        """
        if not settings.embed_url:
            raise ConfigError("embedder 'openai' needs embed_url: set GRISTMILL_EMBED_URL "
                              "(https://api.openai.com/v1, http://localhost:11434/v1, ...)")
        if not settings.embed_model:
            raise ConfigError("embedder 'openai' needs embed_model: set "
                              "GRISTMILL_EMBED_MODEL (text-embedding-3-small, ...)")
        key = ApiKey(env=settings.embed_api_key_env, file=settings.embed_api_key_file,
                     command=settings.embed_token_command)
        return cls(settings.embed_url, settings.embed_model,
                   dimensions=settings.embed_dimensions, key=key,
                   key_header=settings.embed_api_key_header,
                   api_version=settings.embed_api_version,
                   concurrency=settings.embed_concurrency,
                   budget=RateBudget(settings.embed_rpm, settings.embed_tpm),
                   timeout=settings.embed_timeout, max_retries=settings.embed_max_retries,
                   request_inputs=settings.embed_request_inputs,
                   request_tokens=settings.embed_request_tokens)

    @property
    def dim(self) -> int:
        """Vector length: ``dimensions`` when set, else learnt from the first answer (one
        short probe request if nothing was embedded yet)."""
        if self._dim is None:
            self.embed([_PROBE])
        assert self._dim is not None
        return self._dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of ``texts`` in their order, shape ``(len(texts), dim)``.

        Raises:
            CredentialError: the server refused the key, also after it was fetched again.
            EmbedderUnavailable: 429, 5xx or timeouts outlasted the retries.
            ConfigError: the server rejected the request itself (wrong model or URL).
        """
        if not texts:
            return np.zeros((0, self._dim or 0), dtype=np.float32)
        requests = plan_requests(texts, self._request_inputs, self._request_tokens)
        parts = run_in_order(self._pool, lambda r: self._embed_request(texts[r.start:r.stop]),
                             requests)
        return np.concatenate(parts)

    def close(self) -> None:
        """Close the connections and stop the request threads."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._client.close()

    def _embed_request(self, texts: Sequence[str]) -> np.ndarray:
        tokens = sum(estimate_tokens(t) for t in texts)

        def attempt() -> np.ndarray:
            # Each try spends budget: a retried request is a request to the server.
            self._budget.acquire(tokens)
            return self._vectors(self._post_with_key(texts), len(texts))

        return self._retries.call(attempt)

    def _post_with_key(self, texts: Sequence[str]) -> httpx.Response:
        generation, key = self._key.current()
        response = self._post(texts, key)
        if response.status_code in _REFUSED:
            # The key may have rotated or expired: fetch it again and try once more. A
            # second refusal is the credential's fault, not a passing one: not retried.
            _, key = self._key.refresh(generation)
            response = self._post(texts, key)
            if response.status_code in _REFUSED:
                raise CredentialError(
                    self._key.source,
                    f"was refused by {self._endpoint} ({_answer(response)}), also after "
                    "it was read again", self._key.fix)
        if response.status_code == 429 or response.status_code >= 500:
            raise Retryable(_answer(response),
                            retry_after_seconds(response.headers.get("retry-after")))
        if response.status_code >= 400:
            raise ConfigError(f"{self._endpoint} rejected the request ({_answer(response)}): "
                              "check embed_url, embed_model and embed_dimensions"
                              + (", or lower embed_request_inputs / embed_request_tokens"
                                 if response.status_code == 413 else ""))
        return response

    def _post(self, texts: Sequence[str], key: str | None) -> httpx.Response:
        body: dict[str, Any] = {"model": self._model, "input": list(texts)}
        if self._dimensions is not None:
            body["dimensions"] = self._dimensions
        headers = {}
        if key is not None:
            headers = ({"Authorization": f"Bearer {key}"} if self._key_header == "authorization"
                       else {"api-key": key})
        try:
            return self._client.post(self._endpoint, json=body, headers=headers,
                                     params=self._params)
        except httpx.TimeoutException as exc:
            raise Retryable(f"no answer within the timeout ({type(exc).__name__}); raise "
                            "embed_timeout if the server is just slow") from None
        except httpx.TransportError as exc:
            raise Retryable(f"connection failed: {type(exc).__name__}: {exc}") from None

    def _vectors(self, response: httpx.Response, count: int) -> np.ndarray:
        try:
            data = response.json()["data"]
            # Sorted by index: the API does not promise the order of `data`.
            rows = [item["embedding"] for item in sorted(data, key=lambda d: d["index"])]
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{self._endpoint} did not answer in the OpenAI embeddings "
                              f"shape ({response.text[:200]!r}): check embed_url") from None
        if len(rows) != count:
            raise ConfigError(f"{self._endpoint} returned {len(rows)} vectors for {count} "
                              "texts: check embed_url, or lower embed_request_inputs")
        with self._dim_lock:
            vectors = normalise(rows, self._dim, self._endpoint)
            self._dim = vectors.shape[1]
        return vectors


def _answer(response: httpx.Response) -> str:
    """The status and the start of the body: what the server said, for a message."""
    text = " ".join(response.text.split())[:300]
    return f"HTTP {response.status_code}" + (f": {text}" if text else "")
