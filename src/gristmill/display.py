"""How the CLI shows records to a person: tables that fit the terminal, and dates,
durations, sizes and lists in words rather than Python's reprs.

A table on a terminal (or with ``COLUMNS`` set) fits its width: columns that may wrap
(a list of sources) wrap, never a state or a collection name, and columns marked
optional are left out when the rest would not fit otherwise. Without a terminal (piped
into grep, a file, a script) a table is printed at its natural width, each row on one
line, nothing cut.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from gristmill.progress import format_duration

__all__ = ["Column", "format_bytes", "format_when", "job_lines", "print_table"]

# Narrowest a wrapping column is squeezed to before optional columns are dropped.
_WRAP_MIN = 10

# The colour system names rich's Console() takes.
_ColorSystem = Literal["auto", "standard", "256", "truecolor", "windows"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a table.

    Attributes:
        header: its title.
        justify: ``right`` for numbers.
        wraps: may wrap onto several lines to fit (a list of paths); other columns
            always show their values whole.
        optional: 0 for a column always shown; else the table leaves it out when it
            would not fit the terminal otherwise, those marked 1 first, then 2, ...
    """

    header: str
    justify: Literal["left", "right"] = "left"
    wraps: bool = False
    optional: int = 0


def print_table(console: Console, columns: Sequence[Column],
                rows: Sequence[Sequence[str | Text]]) -> None:
    """Print ``rows`` under ``columns`` (see the module docstring for the width)."""
    cells = [[value if isinstance(value, Text) else Text(value) for value in row]
             for row in rows]
    width = console.width if console.is_terminal or os.environ.get("COLUMNS") else None
    keep = list(range(len(columns)))
    table = _table(columns, cells, keep)
    for level in sorted({c.optional for c in columns} - {0}):
        if width is None or _measure(console, table).minimum <= width:
            break
        keep = [i for i in keep if columns[i].optional not in range(1, level + 1)]
        table = _table(columns, cells, keep)
    if width is None:
        # Natural width: a wider console of our own, on the same output.
        natural = _measure(console, table).maximum
        # Console.color_system is typed str, but it is always a name Console() accepts.
        color_system = cast(_ColorSystem | None, console.color_system)
        console = Console(file=console.file, width=max(natural, 20), emoji=False,
                          highlight=False, color_system=color_system)
    console.print(table)


def _table(columns: Sequence[Column], cells: list[list[Text]], keep: list[int]) -> Table:
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                  collapse_padding=True)
    for i in keep:
        column = columns[i]
        longest = max((row[i].cell_len for row in cells), default=0)
        natural = max(longest, len(column.header))
        # A column that does not wrap is never narrower than its longest value, so
        # Rich can only fold the wrapping ones: no "succe..." or "defau...".
        table.add_column(column.header, justify=column.justify, overflow="fold",
                         no_wrap=not column.wraps,
                         min_width=min(natural, _WRAP_MIN) if column.wraps else natural)
    for row in cells:
        table.add_row(*(row[i] for i in keep))
    return table


def _measure(console: Console, table: Table) -> Measurement:
    return Measurement.get(console, console.options.update_width(100_000), table)


def format_when(timestamp: float | None, *, seconds: bool = True) -> str:
    """A Unix time as local time, ``2026-12-04 22:32:05`` (``seconds=False``:
    ``2026-12-04 22:32``); ``-`` when unknown."""
    if timestamp is None:
        return "-"
    moment = dt.datetime.fromtimestamp(timestamp)
    return moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def format_bytes(size: int) -> str:
    """``512 B``, ``1.5 KiB``, ``12.3 MiB``, ``2.0 GiB``."""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


# Item statuses in pipeline order, for counts read as a sentence.
_STATUSES = ("pending", "processing", "extracted", "indexed", "skipped", "failed")


def job_lines(job: Mapping[str, Any]) -> list[str]:
    """``gristmill jobs show``: a job's fields (``Job.to_dict()``) as ``name: value``
    lines in words: local dates, durations, plain lists and counts."""
    data = dict(job)
    started, finished = data.pop("started_at", None), data.pop("finished_at", None)
    heartbeat = data.pop("heartbeat_at", None)
    items: dict[str, int] = data.pop("items", None) or {}
    done = data.pop("done", None)
    lines = [f"job {data.pop('id', '?')}: {data.pop('state', '?')}"]
    lines.append(f"collection: {data.pop('collection', '-')}")
    lines.append(f"sources: {_plain(data.pop('sources', ()))}")
    for key in ("include", "exclude", "max_files"):
        value = data.pop(key, None)
        if value:  # patterns and limits only when the job has them
            lines.append(f"{key.replace('_', ' ')}: {_plain(value)}")
    lines.append(f"started: {format_when(started)}")
    if finished is not None:
        lines.append(f"finished: {format_when(finished)} "
                     f"({format_duration(max(0.0, finished - (started or finished)))} after "
                     "it started)")
    elif heartbeat is not None:
        lines.append(f"last heartbeat: {format_when(heartbeat)}")
    total = sum(items.values())
    order = [s for s in _STATUSES if s in items] + sorted(set(items) - set(_STATUSES))
    counts = ", ".join(f"{items[s]:,} {s}" for s in order) or "none yet"
    lines.append(f"items: {done if done is not None else '?'} of {total:,} done ({counts})")
    size = data.pop("bytes", None)
    for key in ("pages", "chunks"):
        if key in data:
            lines.append(f"{key}: {data.pop(key):,}")
    if size is not None:
        lines.append(f"size: {format_bytes(size)}")
    if "rate" in data:
        lines.append(f"rate: {data.pop('rate'):.1f} items/s")
    if "runs" in data:
        lines.append(f"runs: {data.pop('runs')}")
    # Fields added later are shown too, in the same plain words.
    lines.extend(f"{key.replace('_', ' ')}: {_plain(value)}" for key, value in data.items())
    return lines


def _plain(value: Any) -> str:
    """A value in words: lists joined by commas, mappings as ``name value``, no reprs."""
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.1f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    if isinstance(value, Mapping):
        return ", ".join(f"{k.replace('_', ' ')} {_plain(v)}" for k, v in value.items()
                         ) or "-"
    if isinstance(value, list | tuple | set | frozenset):
        return ", ".join(_plain(v) for v in value) or "-"
    return str(value)
