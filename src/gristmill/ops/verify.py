"""``gristmill verify``: a knowledge base's catalog (see
:mod:`gristmill.catalog.integrity`, which owns the checks and their SQL) or an archive of
one (see :func:`gristmill.ops.archive.check_archive`), each problem one line with its fix.
"""

from __future__ import annotations

from pathlib import Path

from gristmill.catalog.integrity import (
    Finding,
    Verification,
    rebuild_keyword_index,
    repair_database,
    verify_database,
)

__all__ = ["Finding", "Verification", "rebuild_keyword_index", "repair_database",
           "verify_archive", "verify_database"]


def verify_archive(path: Path) -> Verification:
    """Check an archive from ``gristmill export``: its manifest, every member's size and
    sha256, each table's row count (see :func:`gristmill.ops.archive.check_archive`)."""
    from gristmill.ops.archive import check_archive

    problems = check_archive(path)
    return Verification([Finding("archive", p.what, p.fix) for p in problems],
                        {"archives": 1})
