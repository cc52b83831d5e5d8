"""Progress on the terminal: a Rich live view of a run, or plain log lines when piped.

An ingest shows its two phases (items extracted, texts embedded); an audio scan shows
recordings scanned, hours of audio, how many times real time, and events found.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, TaskProgressColumn, TextColumn
from rich.progress import Progress as Bar
from rich.text import Text

if TYPE_CHECKING:  # the runner (and the library under it) is imported by the command
    from gristmill.runtime.progress import Progress

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
    """Callable that renders :class:`Progress` snapshots; use as a context manager.

    Two phases, each with its own bar, rate and ETA: items extracted (keyword-searchable
    at once) and texts embedded (vectors, for hybrid search), which may run long after
    the last item is extracted. When every item is extracted it says that keyword search
    is complete. For an audio scan (``audio=True``) one bar of recordings, with the
    hours of audio, the real-time factor and the events found.
    """

    def __init__(self, console: Console | None = None, *, embedding: bool = True,
                 audio: bool = False) -> None:
        self.console = console or Console(stderr=True)
        self.embedding = embedding and not audio
        self.audio = audio
        self._live: Live | None = None
        self._bar = Bar(TextColumn("[bold]{task.description:<8}"), BarColumn(),
                        MofNCompleteColumn(), TextColumn("{task.fields[unit]}"),
                        TaskProgressColumn(), TextColumn("{task.fields[pace]}"),
                        console=self.console)
        self._items = self._bar.add_task("scan" if audio else "extract", total=None,
                                         unit="recordings" if audio else "items", pace="")
        self._texts = self._bar.add_task("vectors", total=None, unit="texts", pace="",
                                         visible=self.embedding)
        self._last_plain = 0.0

    def __enter__(self) -> TerminalProgress:
        if self.console.is_terminal:
            from gristmill.runtime.progress import Progress

            self._live = Live(self._render(Progress(embedding=self.embedding,
                                                    audio=self.audio)),
                              console=self.console, refresh_per_second=4, transient=True)
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
        if p.audio:
            return (f"scan {p.done}/{p.total} recordings ({_audio_pace(p)}, eta "
                    f"{format_duration(p.extract_eta)}) | {p.events} events, failed "
                    f"{p.failed}, skipped {p.skipped} | rss {p.rss_bytes / 2**20:.0f} MB")
        parts = [f"extract {p.done}/{p.total} items "
                 f"({p.extract_rate:.1f}/s, eta {format_duration(p.extract_eta)})"]
        if self.embedding and p.embedding:
            parts.append(f"vectors {p.chunks_embedded} texts embedded, {p.embed_backlog} "
                         f"waiting ({p.embed_rate:.1f}/s, eta {format_duration(p.embed_eta)})")
        searchable = _searchable(p)
        if searchable:
            parts.append(searchable)
        parts.append(f"pages {p.pages} chunks {p.chunks} failed {p.failed} "
                     f"rss {p.rss_bytes / 2**20:.0f} MB")
        return " | ".join(parts)

    def _render(self, p: Progress) -> Group:
        if p.audio:
            return self._render_audio(p)
        self._bar.update(self._items, completed=p.done, total=p.total or None,
                         pace=f"{p.extract_rate:.1f}/s  eta {format_duration(p.extract_eta)}")
        if self.embedding and p.embedding:
            embedded = p.chunks_embedded
            self._bar.update(self._texts, completed=embedded,
                             total=(embedded + p.embed_backlog) or None,
                             pace=f"{p.embed_rate:.1f}/s  eta {format_duration(p.embed_eta)}")
        stats = Text.assemble(
            ("pages ", "dim"), f"{p.pages:,}  ", ("chunks ", "dim"), f"{p.chunks:,}  ",
            ("failed ", "dim"), (f"{p.failed}", "red" if p.failed else ""), "  ",
            ("skipped ", "dim"), f"{p.skipped}  ", ("memory ", "dim"),
            f"{p.rss_bytes / 2**20:,.0f} MB",
        )
        lines: list[Text | Bar] = [self._bar, stats]
        searchable = _searchable(p)
        if searchable:
            lines.append(Text(searchable, style="green"))
        if p.stopping:
            lines.append(Text("stopping: finishing in-flight items (Ctrl-C again to abort)",
                              style="yellow"))
        for failure in p.recent_failures[-3:]:
            lines.append(Text(f"  failed: {failure}", style="red", overflow="ellipsis",
                              no_wrap=True))
        return Group(*lines)


    def _render_audio(self, p: Progress) -> Group:
        self._bar.update(self._items, completed=p.done, total=p.total or None,
                         pace=f"{_audio_pace(p)}  eta {format_duration(p.extract_eta)}")
        stats = Text.assemble(
            ("events ", "dim"), f"{p.events:,}  ", ("failed ", "dim"),
            (f"{p.failed}", "red" if p.failed else ""), "  ", ("skipped ", "dim"),
            f"{p.skipped}  ", ("memory ", "dim"), f"{p.rss_bytes / 2**20:,.0f} MB")
        lines: list[Text | Bar] = [self._bar, stats]
        if p.stopping:
            lines.append(Text("stopping: finishing in-flight recordings (Ctrl-C again to "
                              "abort)", style="yellow"))
        for failure in p.recent_failures[-3:]:
            lines.append(Text(f"  failed: {failure}", style="red", overflow="ellipsis",
                              no_wrap=True))
        return Group(*lines)


def _audio_pace(p: Progress) -> str:
    """Hours of audio scanned and how many times real time: ``1.25 h audio, 180x``."""
    return f"{p.audio_seconds / 3600:.2f} h audio, {p.realtime_factor:.0f}x real time"


def _searchable(p: Progress) -> str:
    """The line saying keyword search is complete, once every item is extracted."""
    if p.searchable_at is None:
        return ""
    if p.embedding and not p.finished and (p.embed_backlog or p.extracted):
        return (f"keyword search ready (every item extracted after "
                f"{format_duration(p.searchable_at)}); vectors still being computed")
    return f"keyword search ready (every item extracted after {format_duration(p.searchable_at)})"
