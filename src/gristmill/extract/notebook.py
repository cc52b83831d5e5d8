"""Jupyter notebooks (``.ipynb``): the prose, the code, and the text the code printed.

A notebook is JSON, but read as data (``path: value`` lines, as :mod:`.data` does) its
prose would drown in metadata and base64 images. Read as a document instead, Markdown
cells keep their text and headings, code cells become fenced blocks in the kernel's
language, and outputs keep only what a reader would read: streams, ``text/plain``
results and the name and message of errors (tracebacks repeat the code; images are not
text). nbformat 4 is the format; nbformat 3 (``worksheets``) is read too.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Limits, Segment
from gristmill.extract.data import load_json

__all__ = ["EXTRACTORS", "NotebookExtractor"]

_MAX_SEGMENT_CHARS = 1024 * 1024
_MAX_HEADING_CHARS = 200
_ATX = re.compile(r"^ {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"^ {0,3}(```|~~~)")
# Terminal colours and cursor moves, as printed by progress bars and test runners.
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Images pasted into Markdown or printed into outputs as data URIs.
_DATA_URI = re.compile(r"data:[\w.+/-]*;base64,[A-Za-z0-9+/=\s]+")
_RESULT_TYPES = frozenset({"execute_result", "display_data", "update_display_data", "pyout"})
_ERROR_TYPES = frozenset({"error", "pyerr"})


class NotebookExtractor:
    """Jupyter notebooks; Markdown headings set ``heading`` for the cells that follow."""

    name = "ipynb"
    version = 1
    extensions = frozenset({".ipynb"})

    def extract(self, path: Path, limits: Limits) -> Iterator[Segment]:
        """Yield Markdown text, fenced code and text outputs in cell order.

        Raises:
            ExtractionError: the file is not JSON or not a notebook.
            LimitExceeded: more text than ``limits.max_text_chars``.
            Unsupported: the notebook is empty.
        """
        notebook = load_json(path, limits, "notebook")
        cells, language = _cells_and_language(notebook)
        total = 0
        for segment in _segments(cells, language):
            total += len(segment.text)
            if total > limits.max_text_chars:
                raise LimitExceeded(
                    f"notebook text exceeds {limits.max_text_chars:,} characters "
                    "(max_text_chars)"
                )
            yield segment
        if not total:
            raise Unsupported("no text in notebook")


def _cells_and_language(notebook: Any) -> tuple[list[Any], str]:
    if not isinstance(notebook, dict):
        raise ExtractionError("invalid notebook: the top level is not a JSON object")
    metadata = _dict(notebook.get("metadata"))
    language = (
        _dict(metadata.get("kernelspec")).get("language")
        or _dict(metadata.get("language_info")).get("name")
        or metadata.get("language")  # nbformat 3
        or ""
    )
    cells = notebook.get("cells")
    if isinstance(cells, list):
        return cells, _fence_language(language)
    worksheets = notebook.get("worksheets")  # nbformat 3
    if isinstance(worksheets, list):
        cells = [
            cell
            for sheet in worksheets
            if isinstance(sheet, dict) and isinstance(sheet.get("cells"), list)
            for cell in sheet["cells"]
        ]
        return cells, _fence_language(language)
    raise ExtractionError("invalid notebook: no 'cells' list (is this a Jupyter notebook?)")


def _segments(cells: list[Any], language: str) -> Iterator[Segment]:
    heading: str | None = None
    blocks: list[str] = []
    size = 0
    for cell in cells:
        if not isinstance(cell, dict):
            continue  # a damaged cell; the others are still worth reading
        for block, new_heading in _cell_blocks(cell, language):
            if new_heading is not None or size >= _MAX_SEGMENT_CHARS:
                if blocks:
                    yield Segment("\n\n".join(blocks), heading=heading)
                blocks, size = [], 0
                heading = new_heading or heading
            blocks.append(block)
            size += len(block) + 2
    if blocks:
        yield Segment("\n\n".join(blocks), heading=heading)


def _cell_blocks(cell: dict[str, Any], language: str) -> Iterator[tuple[str, str | None]]:
    """``(text, heading)`` pairs; ``heading`` is set when ``text`` starts a new section."""
    kind = cell.get("cell_type")
    if kind == "code":
        source = _text(cell.get("source", cell.get("input")))  # "input" in nbformat 3
        if source.strip():
            fence = "```"
            while fence in source:
                fence += "`"
            cell_language = _fence_language(cell.get("language")) or language
            yield f"{fence}{cell_language}\n{source.strip(chr(10))}\n{fence}", None
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else ():
            if isinstance(output, dict) and (text := _output_text(output)):
                yield text, None
    elif kind == "heading":  # nbformat 3: a cell holding one heading
        if title := " ".join(_text(cell.get("source")).split()):
            level = str(cell.get("level"))
            marks = "#" * int(level) if level.isdigit() and 1 <= int(level) <= 6 else "#"
            yield f"{marks} {title}", title[:_MAX_HEADING_CHARS]
    elif kind in ("markdown", "raw"):
        yield from _markdown_blocks(_DATA_URI.sub("", _text(cell.get("source"))))


def _markdown_blocks(text: str) -> Iterator[tuple[str, str | None]]:
    """The cell cut before each ATX heading (``# Title``) outside fenced code."""
    lines: list[str] = []
    heading: str | None = None
    fence: str | None = None
    for line in text.splitlines():
        if match := _FENCE.match(line):
            fence = None if fence == match.group(1) else fence or match.group(1)
        elif fence is None and (match := _ATX.match(line)) and match.group(1).strip():
            if body := "\n".join(lines).strip():
                yield body, heading
            lines, heading = [], match.group(1).strip()[:_MAX_HEADING_CHARS]
        lines.append(line)
    if body := "\n".join(lines).strip():
        yield body, heading


def _output_text(output: dict[str, Any]) -> str:
    kind = output.get("output_type")
    if kind == "stream":
        text = _text(output.get("text"))
    elif kind in _RESULT_TYPES:
        data = output.get("data")
        # nbformat 3 keeps text/plain as "text" on the output itself.
        text = _text(data.get("text/plain") if isinstance(data, dict) else output.get("text"))
    elif kind in _ERROR_TYPES:
        name, value = _text(output.get("ename")), _text(output.get("evalue"))
        text = f"{name}: {value}" if name and value else name or value
    else:
        return ""
    return _terminal_text(text)


def _terminal_text(text: str) -> str:
    """What a terminal would show: colours dropped, a line redrawn with ``\\r`` (progress
    bars) reduced to its last state."""
    text = _DATA_URI.sub("", _ANSI.sub("", text)).replace("\r\n", "\n")
    return "\n".join(line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")).strip()


def _text(value: Any) -> str:
    """A notebook string: one string, or a list of lines (newlines included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "".join(item for item in value if isinstance(item, str))
    return ""


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _fence_language(value: Any) -> str:
    # An info string is one word; a kernel name like "Python 3" is not one.
    return value.split()[0].lower() if isinstance(value, str) and value.strip() else ""


EXTRACTORS = [NotebookExtractor()]
