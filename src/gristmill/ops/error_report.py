"""Failures grouped by pattern, as a person triaging a 3,000-file run needs them.

Reasons that differ only in numbers, paths, quoted names or hex ids fall into one group:
"worker killed by SIGKILL (2 times)" and "(3 times)" are the same problem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ErrorGroup", "group_problems", "normalise"]

_RULES = [
    (re.compile(r"(?:[A-Za-z]:)?(?:/[^\s/:'\"]+)+/?"), "<path>"),
    (re.compile(r"'[^']*'|\"[^\"]*\""), "<quoted>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b|\b[0-9a-f]{12,}\b"), "<hex>"),
    # A number stands alone (``12``, ``1,024``, ``3.5``, ``2024-01-31``, ``-9``, ``50MB``),
    # not inside a name: the digits of ``.mp3``, ``.7z``, ``utf-8``, ``ISO-8859-1``,
    # ``h264`` or ``x86_64`` are part of what failed, not a count that varies.
    (re.compile(r"(?<![\w.])(?<!\w-)\d+(?:[.,:/-]\d+)*"), "<n>"),
]
_EXAMPLES = 3


@dataclass(slots=True)
class ErrorGroup:
    """One pattern of failure and where it happened."""

    pattern: str
    status: str
    count: int = 0
    examples: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        """The JSON shape: ``pattern``, ``status``, ``count``, ``examples``."""
        return {"pattern": self.pattern, "status": self.status, "count": self.count,
                "examples": self.examples}


def normalise(reason: str) -> str:
    """The pattern of a reason: variable parts replaced by placeholders."""
    pattern = reason
    for regex, placeholder in _RULES:
        pattern = regex.sub(placeholder, pattern)
    return pattern


def group_problems(problems: Iterable[tuple[str, str, str]]) -> list[ErrorGroup]:
    """Group ``(status, source, reason)`` rows; failures first, then most frequent."""
    groups: dict[tuple[str, str], ErrorGroup] = {}
    for status, source, reason in problems:
        key = (status, normalise(reason))
        group = groups.get(key)
        if group is None:
            group = groups[key] = ErrorGroup(pattern=key[1], status=status)
        group.count += 1
        if len(group.examples) < _EXAMPLES:
            group.examples.append({"source": source, "error": reason})
    return sorted(groups.values(),
                  key=lambda g: (g.status != "failed", -g.count, g.pattern))
