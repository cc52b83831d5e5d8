"""The HTTP API (``gristmill serve``): jobs, their events, search and health."""

from gristmill.api.app import create_app

__all__ = ["create_app"]
