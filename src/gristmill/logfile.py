"""The log file's handlers, for a full disk: the lines that matter still get written,
the rest are dropped quietly.

A full disk is exactly when the log matters and cannot be written. The standard
handlers then print a ``--- Logging error ---`` traceback to stderr for every line,
burying the one-line error the CLI prints. These keep a small reserve file beside the
log: the first write the disk refuses deletes it and is written into the room it frees
(so the line saying why the run stopped reaches the log). After that, lines that cannot
be written are dropped, with one note on stderr.
"""

from __future__ import annotations

import errno
import logging
import logging.handlers
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["RESERVE_BYTES", "QuietFileHandler", "QuietRotatingFileHandler"]

#: Room kept beside the log for the lines written once the disk is full.
RESERVE_BYTES = 64 * 1024


class _DropsUnwritable(logging.FileHandler):
    _warned = False
    _reserve: Path | None = None

    def keep_reserve(self, size: int) -> None:
        """Keep ``size`` bytes free for the log in a file beside it (if there is room)."""
        reserve = Path(self.baseFilename + ".reserve")
        try:
            if not reserve.exists() or reserve.stat().st_size < size:
                with open(reserve, "wb") as file:
                    file.write(b"\0" * size)
                    file.flush()
                    os.fsync(file.fileno())
        except OSError:
            reserve.unlink(missing_ok=True)
            return
        self._reserve = reserve

    def handleError(self, record: logging.LogRecord) -> None:
        """Write into the reserve's room, or drop a line the file system refused."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        if error.errno in (errno.ENOSPC, errno.EDQUOT) and self._reserve is not None:
            reserve, self._reserve = self._reserve, None
            try:
                reserve.unlink()
                # The line is still in the stream's buffer: flushing writes it.
                if self.stream is not None:
                    self.stream.flush()
                return
            except OSError:
                pass
        if not self._warned:
            self._warned = True
            try:
                sys.stderr.write(f"gristmill: cannot write {self.baseFilename} "
                                 f"({error.strerror or error}); log lines are dropped "
                                 "until it can be written again\n")
            except OSError:
                pass


class QuietFileHandler(_DropsUnwritable):
    """A :class:`logging.FileHandler` that drops lines it cannot write (see module)."""


class QuietRotatingFileHandler(_DropsUnwritable, logging.handlers.RotatingFileHandler):
    """A :class:`logging.handlers.RotatingFileHandler` that drops lines it cannot write,
    with a reserve of ``reserve`` bytes for the first ones (see module)."""

    def __init__(self, filename: str | Path, *args: Any, reserve: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(filename, *args, **kwargs)
        if reserve:
            self.keep_reserve(reserve)
