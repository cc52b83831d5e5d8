"""What every route of one app shares, and the dependencies that hand it to them.

:func:`~gristmill.api.app.create_app` builds one :class:`ApiState` and keeps it on
``app.state``; a route asks for it with a :data:`State` parameter instead of closing over
the factory's locals, so each resource's routes live in a module of their own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Header, Request

from gristmill.api.events import JobFeeds
from gristmill.api.launcher import JobLauncher
from gristmill.api.problems import RETRY_AFTER_SECONDS, ApiError
from gristmill.api.search_pool import SearchPool
from gristmill.api.security import Tokens, require_admin
from gristmill.api.throttle import SearchThrottle
from gristmill.catalog import lease_owner_token
from gristmill.catalog.jobs import Problem
from gristmill.config import Settings
from gristmill.knowledge_base import KnowledgeBase

__all__ = ["ApiState", "State", "admin_only", "api_state", "authenticate"]

T = TypeVar("T")


class ApiState:
    """One server's settings, knowledge base, job launcher, event feeds, search pool,
    tokens and search throttle."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        # A request waits out a database restart for a few seconds at most, then gets a
        # 503 with Retry-After (problems.py); the jobs it starts get the whole budget.
        self.kb = KnowledgeBase(settings.model_copy(update={"store_retry_seconds": min(
            settings.store_retry_seconds, RETRY_AFTER_SECONDS)}))
        # The knowledge base's SQLite connection is shared by the server's worker
        # threads: one of them uses it at a time (see run).
        self._lock = threading.Lock()
        self.searchers = SearchPool(self.kb, settings.search_threads, settings.search_nice)
        self.owner = lease_owner_token()  # answers for a queued job until its process takes over
        self.launcher = JobLauncher(settings, self.owner)
        self.tokens = Tokens(settings)
        self.throttle = SearchThrottle(settings.search_rate_limit)
        self.feeds = JobFeeds(self.job, self.problems)

    def run(self, fn: Callable[[KnowledgeBase], T]) -> T:
        """``fn(kb)``, while no other thread uses the knowledge base."""
        with self._lock:
            return fn(self.kb)

    def job(self, job_id: int) -> dict[str, Any]:
        """One job as the API shows it; JobNotFound (404) when there is none."""
        self.launcher.reap()  # job processes that ended are collected while clients watch
        return self.run(lambda kb: kb.jobs.get(job_id).to_dict())

    def problems(self, job_id: int, after: tuple[float, int], limit: int) -> list[Problem]:
        """The job's failed and skipped items after ``after`` (its SSE ``failure``s)."""
        return self.run(lambda kb: kb.jobs.problems(job_id, after, limit))

    def start(self, kb: KnowledgeBase, job_id: int) -> None:
        """Hand a queued job to the launcher: it starts now or when a slot frees."""
        why = self.launcher.submit(kb.jobs, job_id)
        if why is not None:
            raise ApiError(500, f"job {job_id} {why}")

    def close(self) -> None:
        """Collect ended job processes, stop the search threads, close the catalog."""
        self.launcher.reap()
        self.searchers.close()
        self.kb.close()


async def api_state(request: Request) -> ApiState:
    """The app's :class:`ApiState` (async: no worker thread just to read an attribute)."""
    state: ApiState = request.app.state.gristmill
    return state


#: A route parameter that receives the app's :class:`ApiState`.
State = Annotated[ApiState, Depends(api_state)]


def authenticate(request: Request, state: State,
                 authorization: Annotated[str | None, Header()] = None) -> None:
    """Who is calling, kept as ``request.state.caller``; 401 without a valid token when
    tokens are configured."""
    request.state.caller = state.tokens.caller(authorization)


def admin_only(state: State,
               authorization: Annotated[str | None, Header()] = None) -> None:
    """403 for a read-only token: starting and steering jobs needs an admin one."""
    require_admin(state.tokens.caller(authorization))
