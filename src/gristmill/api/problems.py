"""The API's one error shape, ``{"detail": "<one sentence>"}``, and its handlers."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gristmill.errors import StoreBusy, StoreError, StoreFull

__all__ = ["RETRY_AFTER_SECONDS", "ApiError", "install_handlers"]

log = logging.getLogger(__name__)

#: What a 503 tells a client to wait before it asks again (``Retry-After``).
RETRY_AFTER_SECONDS = 5
_LOG_EVERY = 60.0  # seconds between log lines about the same kind of database failure


class ApiError(Exception):
    """An error answered with ``status`` and ``{"detail": detail}``."""

    def __init__(self, status: int, detail: str,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def install_handlers(app: FastAPI) -> None:
    """Make every error path answer with the same JSON shape."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        return JSONResponse({"detail": exc.detail}, exc.status, headers=exc.headers)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)  # 404 route, 405 method, ...
        detail = str(exc.detail)
        if exc.status_code == 413:  # FastAPI's max_body_size
            detail = ("request body too large for this server (max_request_kb); send a "
                      "smaller request or raise the setting")
        return JSONResponse({"detail": detail}, exc.status_code, headers=exc.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        # FastAPI's default is a list of error objects; one sentence reads better and
        # keeps `detail` a string everywhere.
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"] if part != "body")
        why = str(first["msg"]).removeprefix("Value error, ")  # our validators' own words
        return JSONResponse({"detail": f"{where}: {why}"}, 422)

    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn logs it); the client gets the
        # same shape as every other error, and no internals.
        return JSONResponse({"detail": "internal server error; the server log has the "
                                       "traceback"}, 500)

    last_logged: dict[str, float] = {}

    async def store_failed(request: Request, exc: Exception) -> JSONResponse:
        # The database failed, not the request. Clients get no internals (a server's
        # address, a path); the log gets the reason, once a minute per kind of failure.
        assert isinstance(exc, StoreError)
        kind = type(exc).__name__
        now = time.monotonic()
        if now - last_logged.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            last_logged[kind] = now
            log.warning("%s %s answered %s: %s", request.method, request.url.path,
                        "503" if isinstance(exc, StoreBusy) else
                        "507" if isinstance(exc, StoreFull) else "500", exc)
        if isinstance(exc, StoreBusy):  # away (a restart) or busy: it comes back
            return JSONResponse(
                {"detail": "the database is unavailable right now (restarting, unreachable "
                           f"or busy); retry in {RETRY_AFTER_SECONDS} seconds"}, 503,
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        if isinstance(exc, StoreFull):
            return JSONResponse({"detail": "the database's disk is full; the server's "
                                           "operator must free space (see its log)"}, 507)
        return JSONResponse({"detail": "the database failed; the server log has the "
                                       "reason"}, 500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StoreError, store_failed)
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
