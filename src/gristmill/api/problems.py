"""The API's one error shape, ``{"detail": "<one sentence>"}``, and its handlers."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

__all__ = ["ApiError", "install_handlers"]


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
        return JSONResponse({"detail": f"{where}: {first['msg']}"}, 422)

    async def crashed(request: Request, exc: Exception) -> JSONResponse:
        # The traceback goes to the server's log (uvicorn logs it); the client gets the
        # same shape as every other error, and no internals.
        return JSONResponse({"detail": "internal server error; the server log has the "
                                       "traceback"}, 500)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(Exception, crashed)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
