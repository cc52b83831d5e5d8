"""Running work: the runner (window, leases, retries), its workers and executors."""

from gristmill.runtime.runner import Progress, Runner, tree_rss

__all__ = ["Progress", "Runner", "tree_rss"]
