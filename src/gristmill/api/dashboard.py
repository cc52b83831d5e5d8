"""``/``: the dashboard, plain HTML and JavaScript from ``static/`` with no build step.

Its files are public (they hold no data); every call it makes to the API carries the
token the user types into it.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["router", "static_files"]

_STATIC = Path(__file__).parent / "static"

router = APIRouter()


@router.get("/", include_in_schema=False)
def dashboard() -> FileResponse:
    """The dashboard's page."""
    return FileResponse(_STATIC / "index.html")


def static_files() -> StaticFiles:
    """The dashboard's scripts and styles, to mount at ``/static``."""
    return StaticFiles(directory=_STATIC)
