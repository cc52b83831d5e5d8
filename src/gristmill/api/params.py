"""What the API accepts as text and as ids: values that reach the file system and the
catalog without breaking either (a NUL or a lone surrogate cannot be a path or a database
string; an id beyond a 64-bit integer cannot be a row)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
from pydantic import AfterValidator

__all__ = ["MAX_ID", "JobId", "JobIdQuery", "Text"]

MAX_ID = 2**63 - 1  # the largest SQLite INTEGER and PostgreSQL bigint


def _plain_text(value: str) -> str:
    if "\x00" in value:
        raise ValueError("contains a NUL character (\\x00), which no path or database "
                         "text may hold; remove it")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("contains a lone surrogate (invalid Unicode); send valid UTF-8 "
                         "text") from None
    return value


#: A string from a client: no NUL, no lone surrogate.
Text = Annotated[str, AfterValidator(_plain_text)]
#: A job id in a path: 422 (not a database error) beyond what a row id can be.
JobId = Annotated[int, Path(ge=1, le=MAX_ID)]
#: A job id in a query string.
JobIdQuery = Annotated[int | None, Query(ge=1, le=MAX_ID)]
