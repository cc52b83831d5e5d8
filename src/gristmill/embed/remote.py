"""What every remote embedder shares: retries, rate budgets, request batches, vectors.

The providers (:mod:`gristmill.embed.openai`, :mod:`gristmill.embed.bedrock`) only
say how one request is made and which of its failures are worth retrying; the policy
(how long to wait, how often, how much to send per minute) lives here, once.
"""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TypeVar

import numpy as np
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from tenacity import (
    RetryCallState,
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from gristmill.chunking import estimate_tokens
from gristmill.errors import ConfigError, EmbedderUnavailable, GristmillError

__all__ = ["RateBudget", "RetryPolicy", "Retryable", "normalise", "plan_requests",
           "retry_after_seconds", "run_in_order"]

T = TypeVar("T")

# A Retry-After beyond this is a quota reset hours away, not a pause: waiting it out
# would hang the job silently, so it is capped and the retries run out instead.
_MAX_RETRY_AFTER = 300.0


class Retryable(Exception):
    """A failure worth trying again (429, 5xx, a timeout, a dropped connection).

    ``answer`` says what happened, for the error raised when the retries run out;
    ``retry_after`` is the server's own wait in seconds, when it gave one.
    """

    def __init__(self, answer: str, retry_after: float | None = None) -> None:
        super().__init__(answer)
        self.answer = answer
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date)."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return min(max(float(value), 0.0), _MAX_RETRY_AFTER)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None  # a header we cannot read is as good as none: plain backoff
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.now(UTC).timestamp() if now is None else now
    return min(max(when.timestamp() - current, 0.0), _MAX_RETRY_AFTER)


class _AtLeastRetryAfter:
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self, backoff: wait_random_exponential) -> None:
        self._backoff = backoff

    def __call__(self, state: RetryCallState) -> float:
        wait = float(self._backoff(state))
        outcome = state.outcome
        error = outcome.exception() if outcome is not None else None
        if isinstance(error, Retryable) and error.retry_after is not None:
            wait = max(wait, error.retry_after)
        return wait


class RetryPolicy:
    """Calls a request again on :class:`Retryable` failures, ``max_retries`` times at most.

    Args:
        max_retries: retries after the first try.
        service: names the service in the error raised when the retries run out.
        backoff: the first retry waits up to this many seconds (doubling each time,
            with full jitter, up to ``max_backoff``).
        unavailable: the error raised when the retries run out (another service than
            an embedder raises its own).
        setting: the environment variable that sets ``max_retries``, named in it.
    """

    def __init__(self, max_retries: int, service: str, backoff: float = 0.5,
                 max_backoff: float = 60.0, *,
                 unavailable: type[GristmillError] = EmbedderUnavailable,
                 setting: str = "GRISTMILL_EMBED_MAX_RETRIES") -> None:
        self.max_retries = max_retries
        self.service = service
        self._unavailable = unavailable
        self._setting = setting
        self._wait = _AtLeastRetryAfter(wait_random_exponential(multiplier=backoff,
                                                                max=max_backoff))

    def call(self, request: Callable[[], T]) -> T:
        """``request()``, retried; other exceptions pass through at once.

        Raises:
            EmbedderUnavailable: (or ``unavailable``) the last try failed too; says what
                the service answered.
        """
        retrying = Retrying(stop=stop_after_attempt(self.max_retries + 1), wait=self._wait,
                            retry=retry_if_exception_type(Retryable), reraise=False)
        try:
            return retrying(request)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            answer = last.answer if isinstance(last, Retryable) else str(last)
            raise self._unavailable(
                f"{self.service} still failed after {self.max_retries + 1} tries: {answer}. "
                "Check the service's status or quota, then resume the job; "
                f"{self._setting} sets how often it is retried") from None


class RateBudget:
    """Requests and tokens per period (a moving window, in memory): callers wait their turn.

    Args:
        requests: requests per period (0 = no budget).
        tokens: estimated tokens per period (0 = no budget).
        period: the window in seconds (60 for the per-minute settings).
    """

    def __init__(self, requests: int = 0, tokens: int = 0, period: int = 60) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._requests = RateLimitItemPerSecond(requests, period) if requests else None
        self._tokens = RateLimitItemPerSecond(tokens, period) if tokens else None
        self._period = period
        # Both budgets are tested and then spent together, so a request that passes one
        # and waits for the other does not use up the first meanwhile.
        self._lock = threading.Lock()

    @property
    def active(self) -> bool:
        """Whether any budget is set."""
        return self._requests is not None or self._tokens is not None

    def acquire(self, tokens: int) -> float:
        """Wait until one request of ``tokens`` fits both budgets, then spend it.

        Returns the seconds waited.
        """
        if not self.active:
            return 0.0
        started = time.monotonic()
        # A request larger than the whole token budget could never fit: it counts as the
        # whole budget, so it waits for a full window instead of forever.
        cost = min(tokens, self._tokens.amount) if self._tokens is not None else 0
        while True:
            with self._lock:
                wait = max(self._wait_for(self._requests, "requests", 1),
                           self._wait_for(self._tokens, "tokens", cost))
                if wait <= 0:
                    if self._requests is not None:
                        self._limiter.hit(self._requests, "requests")
                    if self._tokens is not None and cost > 0:
                        self._limiter.hit(self._tokens, "tokens", cost=cost)
                    return time.monotonic() - started
            time.sleep(min(wait, self._period))

    def _wait_for(self, item: RateLimitItem | None, key: str, cost: int) -> float:
        if item is None or cost <= 0 or self._limiter.test(item, key, cost=cost):
            return 0.0
        reset = self._limiter.get_window_stats(item, key).reset_time
        # reset_time is when the oldest entry leaves the window; one more entry may not
        # be enough room for a large cost, and the loop simply checks again then.
        return max(reset - time.time(), 0.05)


def plan_requests(texts: Sequence[str], max_inputs: int, max_tokens: int) -> list[range]:
    """Cut ``texts`` (kept in order) into requests of at most ``max_inputs`` texts and
    ``max_tokens`` estimated tokens; a single text over the token cap goes alone."""
    requests: list[range] = []
    start = 0
    tokens = 0
    for i, text in enumerate(texts):
        cost = estimate_tokens(text)
        if i > start and (i - start >= max_inputs or tokens + cost > max_tokens):
            requests.append(range(start, i))
            start, tokens = i, 0
        tokens += cost
    if start < len(texts):
        requests.append(range(start, len(texts)))
    return requests


def run_in_order(pool: ThreadPoolExecutor | None, work: Callable[[range], np.ndarray],
                 requests: Sequence[range]) -> list[np.ndarray]:
    """``work(request)`` for each request, concurrently on ``pool``, results in order.

    A single request runs on the calling thread (a search query need not hop threads).
    The first failure is raised once every request has ended, so none is left running.
    """
    if pool is None or len(requests) <= 1:
        return [work(r) for r in requests]
    futures = [pool.submit(work, r) for r in requests]
    errors = [f.exception() for f in futures]
    for error in errors:
        if error is not None:
            raise error
    return [f.result() for f in futures]


def normalise(rows: Sequence[Sequence[float]], dim: int | None, service: str) -> np.ndarray:
    """Rows as float32 unit vectors, checked to be ``dim`` long (when known).

    The service's own normalisation is not trusted: some servers return raw vectors,
    and search scores assume unit length.

    Raises:
        ConfigError: the rows are not all ``dim`` long.
    """
    try:
        array = np.asarray(rows, dtype=np.float32)
    except ValueError:
        raise ConfigError(f"{service} returned vectors of different lengths: check the "
                          "model setting") from None
    if array.ndim != 2 or (dim is not None and array.shape[1] != dim):
        got = array.shape[1] if array.ndim == 2 else "no"
        raise ConfigError(f"{service} returned {got}-dimensional vectors where {dim} "
                          "were expected: check embed_dimensions and the model, or use a "
                          "new home for a different model")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    vectors: np.ndarray = (array / np.maximum(norms, 1e-12)).astype(np.float32)
    return vectors
