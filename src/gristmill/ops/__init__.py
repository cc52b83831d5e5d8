"""Operations on a knowledge base as a whole: the doctor's checks, error reports and
status snapshots."""

from gristmill.ops.error_report import ErrorGroup, group_problems, normalise
from gristmill.ops.snapshot import RunningJob, Snapshot

__all__ = ["ErrorGroup", "RunningJob", "Snapshot", "group_problems", "normalise"]
