"""Error types: every kind of problem an item can be stored with is an ``ErrorType``,
and each formats as the text stored in the ``error_type`` column."""

from __future__ import annotations

import ast
from pathlib import Path

import gristmill
from gristmill.catalog import ErrorType, Status
from gristmill.errors import ExtractionError, LimitExceeded

PACKAGE = Path(gristmill.__file__).parent


def _literal_error_types() -> dict[str, str]:
    """Each string literal given as an ``error_type`` (a keyword argument or a dict
    entry) in the package, with where it is."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            values: list[ast.expr] = []
            if isinstance(node, ast.keyword) and node.arg == "error_type":
                values = [node.value]
            elif isinstance(node, ast.Dict):
                values = [v for k, v in zip(node.keys, node.values, strict=True)
                          if isinstance(k, ast.Constant) and k.value == "error_type"]
            for value in values:
                if isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[value.value] = f"{path.relative_to(PACKAGE)}:{value.lineno}"
    return found


def test_every_literal_error_type_is_a_member() -> None:
    """A kind written as a bare string (as the worker does) is one of the enum's values,
    so the enum is the whole list of what the column holds."""
    strays = {text: where for text, where in _literal_error_types().items()
              if text not in set(ErrorType)}
    assert not strays


def test_class_named_members_follow_the_exception_classes() -> None:
    """An extraction error is stored under its class name: renaming the class must
    rename the member's value."""
    assert ExtractionError.__name__ == ErrorType.EXTRACTION_ERROR
    assert LimitExceeded.__name__ == ErrorType.LIMIT_EXCEEDED


def test_stored_enums_format_as_their_stored_text() -> None:
    """``str()`` and f-strings give the value, as JSON and the database do."""
    assert str(ErrorType.TOO_LARGE) == f"{ErrorType.TOO_LARGE}" == "too large"
    assert str(Status.FAILED) == f"{Status.FAILED}" == "failed"
