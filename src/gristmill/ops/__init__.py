"""Operations on a knowledge base as a whole: error reports, status snapshots (export,
verify, migrate later)."""

from gristmill.ops.error_report import ErrorGroup, group_problems, normalise
from gristmill.ops.snapshot import RunningJob, Snapshot

__all__ = ["ErrorGroup", "RunningJob", "Snapshot", "group_problems", "normalise"]
