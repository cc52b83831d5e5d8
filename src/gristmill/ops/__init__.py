"""Operations on a knowledge base as a whole: error reports (export, verify, migrate later)."""

from gristmill.ops.error_report import ErrorGroup, group_problems, normalise

__all__ = ["ErrorGroup", "group_problems", "normalise"]
