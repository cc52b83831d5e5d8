"""Running work: the runner (window, leases, retries), its workers and executors.

Nothing is imported here: worker processes import :mod:`gristmill.runtime.worker` and
should not pay for the runner's catalog, index and embedding imports.
"""
