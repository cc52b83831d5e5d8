"""The API's one error shape, ``{"detail": "<one sentence>"}``, and its handlers.

gristmill's own errors carry their status (``http_status`` on each class of
:mod:`gristmill.errors`) and are answered by one handler; :class:`ApiError` is for what
only the HTTP layer refuses (a missing token, a malformed query, a rate limit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gristmill.errors import GristmillError

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

    async def refused(request: Request, exc: Exception) -> JSONResponse:
        # Every error of gristmill's tree, answered with the status its class carries
        # (errors.py draws them all): no route maps an exception to a status itself.
        assert isinstance(exc, GristmillError)
        status = exc.http_status
        if status < 500:
            return JSONResponse({"detail": str(exc)}, status)  # about the request
        # The server failed, not the request. Clients get no internals (a server's
        # address, a path); the log gets the reason, once a minute per kind of failure.
        kind = type(exc).__name__
        now = time.monotonic()
        if now - last_logged.get(kind, -_LOG_EVERY) >= _LOG_EVERY:
            last_logged[kind] = now
            log.warning("%s %s answered %s: %s", request.method, request.url.path, status,
                        exc)
        detail = exc.public_detail
        if status == 503:  # away (a restart) or busy: it comes back
            return JSONResponse({"detail": f"{detail}; retry in {RETRY_AFTER_SECONDS} seconds"},
                                503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return JSONResponse({"detail": detail}, status)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(GristmillError, refused)
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
