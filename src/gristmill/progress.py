"""Progress on the terminal: a Rich live view of a run, or plain log lines when piped."""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn
from rich.progress import Progress as Bar
from rich.text import Text

from gristmill.runtime.runner import Progress

__all__ = ["TerminalProgress", "format_duration"]

_PLAIN_EVERY = 10.0  # seconds between lines when stderr is not a terminal


def format_duration(seconds: float | None) -> str:
    """``1h02m``, ``3m05s`` or ``12.3s``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    if seconds >= 3600:
        return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"
    if seconds >= 60:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{seconds:.1f}s"


class TerminalProgress:
    """Callable that renders :class:`Progress` snapshots; use as a context manager."""

    def __init__(self, console: Console | None = None, *, embedding: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.embedding = embedding
        self._live: Live | None = None
        self._bar = Bar(TextColumn("[bold]items"), BarColumn(), MofNCompleteColumn(),
                        TaskProgressColumn(), console=self.console)
        self._task = self._bar.add_task("items", total=None)
        self._last_plain = 0.0

    def __enter__(self) -> TerminalProgress:
        if self.console.is_terminal:
            self._live = Live(self._render(Progress()), console=self.console,
                              refresh_per_second=4, transient=True)
            self._live.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._live is not None:
            self._live.__exit__(exc_type, exc, tb)
            self._live = None

    def __call__(self, snapshot: Progress) -> None:
        if self._live is not None:
            self._live.update(self._render(snapshot))
        elif time.monotonic() - self._last_plain >= _PLAIN_EVERY or snapshot.finished:
            self._last_plain = time.monotonic()
            print(self._line(snapshot), file=sys.stderr, flush=True)

    def _line(self, p: Progress) -> str:
        embedded = f" embedded {p.chunks_embedded}" if self.embedding else ""
        return (f"items {p.done}/{p.total} ({p.rate:.1f}/s, eta {format_duration(p.eta)}) "
                f"pages {p.pages} chunks {p.chunks}{embedded} failed {p.failed} "
                f"rss {p.rss_bytes / 2**20:.0f} MB")

    def _render(self, p: Progress) -> Group:
        self._bar.update(self._task, completed=p.done, total=p.total or None)
        stats = Text.assemble(
            ("pages ", "dim"), f"{p.pages:,}  ", ("chunks ", "dim"), f"{p.chunks:,}  ",
            *((("embedded ", "dim"), f"{p.chunks_embedded:,}  ") if self.embedding else ()),
            ("rate ", "dim"), f"{p.rate:.1f} items/s  ", ("eta ", "dim"),
            f"{format_duration(p.eta)}  ", ("failed ", "dim"),
            (f"{p.failed}", "red" if p.failed else ""), "  ", ("skipped ", "dim"),
            f"{p.skipped}  ", ("memory ", "dim"), f"{p.rss_bytes / 2**20:,.0f} MB",
        )
        lines: list[Text | Bar] = [self._bar, stats]
        if p.stopping:
            lines.append(Text("stopping: finishing in-flight items (Ctrl-C again to abort)",
                              style="yellow"))
        for failure in p.recent_failures[-3:]:
            lines.append(Text(f"  failed: {failure}", style="red", overflow="ellipsis",
                              no_wrap=True))
        return Group(*lines)
