"""``/api/v1/token``: who the caller's token says it is."""

from __future__ import annotations

from fastapi import APIRouter, Request

from gristmill.api.security import Caller

__all__ = ["router"]

router = APIRouter()


@router.get("/token")
def whoami(request: Request) -> dict[str, str]:
    """The caller's token: its name and scope (what a client may offer its user)."""
    who: Caller = request.state.caller
    return {"name": who.name, "scope": who.scope}
