"""Executors run extraction work items somewhere: local processes now, a cluster later."""

from gristmill.runtime.executors.base import Executor
from gristmill.runtime.executors.local import LocalExecutor

__all__ = ["Executor", "LocalExecutor"]
