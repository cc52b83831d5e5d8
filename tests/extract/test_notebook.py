"""Jupyter notebooks: Markdown prose, fenced code and text outputs, never images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Extractor, Limits, Segment
from gristmill.extract.notebook import EXTRACTORS, NotebookExtractor

PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5"
       "ErkJggg==")


def extract(path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(NotebookExtractor().extract(path, limits or Limits()))


def parts(segments: list[Segment]) -> list[tuple[str | None, str]]:
    return [(s.heading, s.text) for s in segments]


def notebook(path: Path, cells: list[dict[str, Any]], **metadata: Any) -> Path:
    """Write an nbformat 4 notebook with ``cells``."""
    metadata = metadata or {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}}
    doc = {"nbformat": 4, "nbformat_minor": 5, "metadata": metadata, "cells": cells}
    path.write_text(json.dumps(doc, indent=1), encoding="utf-8")
    return path


def markdown(source: str | list[str]) -> dict[str, Any]:
    return {"cell_type": "markdown", "metadata": {}, "source": source}


def code(source: str | list[str], *outputs: dict[str, Any]) -> dict[str, Any]:
    return {"cell_type": "code", "metadata": {}, "execution_count": 1, "source": source,
            "outputs": list(outputs)}


def test_extractor_declares_the_protocol() -> None:
    """The extractor is named "ipynb", version 1, and claims .ipynb."""
    [extractor] = EXTRACTORS
    assert isinstance(extractor, Extractor)
    assert (extractor.name, extractor.version, extractor.extensions) == (
        "ipynb", 1, frozenset({".ipynb"})
    )


def test_cells_in_order_with_headings(tmp_path: Path) -> None:
    """Markdown headings start sections; code is fenced in the kernel's language and its
    text outputs follow it."""
    path = notebook(tmp_path / "a.ipynb", [
        markdown(["# Loading data\n", "We read the *sales* table.\n"]),
        code("df = load('sales')\ndf.total.sum()",
             {"output_type": "stream", "name": "stdout", "text": ["loaded 120 rows\n"]},
             {"output_type": "execute_result", "execution_count": 1, "metadata": {},
              "data": {"text/plain": ["4521.5"]}}),
        markdown("## Plot\nA chart of totals."),
        code("df.plot()",
             {"output_type": "display_data", "metadata": {},
              "data": {"image/png": PNG, "text/plain": ["<Figure size 640x480 with 1 Axes>"]}}),
    ])
    assert parts(extract(path)) == [
        ("Loading data", "# Loading data\nWe read the *sales* table.\n\n"
                         "```python\ndf = load('sales')\ndf.total.sum()\n```\n\n"
                         "loaded 120 rows\n\n4521.5"),
        ("Plot", "## Plot\nA chart of totals.\n\n```python\ndf.plot()\n```\n\n"
                 "<Figure size 640x480 with 1 Axes>"),
    ]


def test_images_and_tracebacks_are_left_out(tmp_path: Path) -> None:
    """Base64 images (outputs, data URIs in Markdown) never reach the text; an error
    keeps its name and message, not its traceback."""
    path = notebook(tmp_path / "a.ipynb", [
        markdown(f"Pasted: ![chart](data:image/png;base64,{PNG}) done."),
        code("1/0",
             {"output_type": "display_data", "metadata": {}, "data": {"image/png": PNG}},
             {"output_type": "error", "ename": "ZeroDivisionError",
              "evalue": "division by zero",
              "traceback": ["\x1b[0;31m---------\x1b[0m", "Traceback (most recent call last)"]}),
    ])
    text = "\n\n".join(s.text for s in extract(path))
    assert "iVBORw0KGgo" not in text
    assert "Traceback" not in text
    assert text == ("Pasted: ![chart]() done.\n\n```python\n1/0\n```\n\n"
                    "ZeroDivisionError: division by zero")


def test_terminal_output_is_cleaned(tmp_path: Path) -> None:
    """Colour codes are dropped and a progress bar redrawn with \\r keeps its last state."""
    path = notebook(tmp_path / "a.ipynb", [
        code("train()", {"output_type": "stream", "name": "stderr",
                         "text": "\x1b[32mepoch 1\x1b[0m\n 10%|#\r 50%|#####\r100%|##########\n"}),
    ])
    assert extract(path)[0].text == "```python\ntrain()\n```\n\nepoch 1\n100%|##########"


def test_hash_lines_in_fenced_markdown_code_are_not_headings(tmp_path: Path) -> None:
    """A ``# comment`` inside a fenced block in Markdown does not start a section."""
    path = notebook(tmp_path / "a.ipynb", [
        markdown("# Setup\nRun:\n```bash\n# install first\npip install x\n```\nThen go."),
    ])
    assert parts(extract(path)) == [
        ("Setup", "# Setup\nRun:\n```bash\n# install first\npip install x\n```\nThen go."),
    ]


def test_heading_carries_over_cells_until_the_next(tmp_path: Path) -> None:
    """Cells after a heading belong to it; text before any heading has none."""
    path = notebook(tmp_path / "a.ipynb", [
        markdown("Preamble."), markdown("# A\nalpha"), code("x = 1"), markdown("beta"),
        markdown("# B"), code("y = 2"),
    ])
    assert parts(extract(path)) == [
        (None, "Preamble."),
        ("A", "# A\nalpha\n\n```python\nx = 1\n```\n\nbeta"),
        ("B", "# B\n\n```python\ny = 2\n```"),
    ]


def test_code_containing_a_fence_gets_a_longer_one(tmp_path: Path) -> None:
    """Code holding ``` is wrapped in a longer fence so the block stays whole."""
    path = notebook(tmp_path / "a.ipynb", [code('s = """```x```"""')])
    assert extract(path)[0].text == '````python\ns = """```x```"""\n````'


@pytest.mark.parametrize("metadata,fence", [
    ({"language_info": {"name": "R"}}, "```r"),
    ({"kernelspec": {"name": "julia-1.9", "language": "julia"}}, "```julia"),
    ({"other": 1}, "```"),
])
def test_fence_language_comes_from_the_metadata(
    tmp_path: Path, metadata: dict[str, Any], fence: str
) -> None:
    """The kernelspec language, else language_info, else a bare fence."""
    path = notebook(tmp_path / "a.ipynb", [code("x <- 1")], **metadata)
    assert extract(path)[0].text == f"{fence}\nx <- 1\n```"


def test_nbformat_3_is_read(tmp_path: Path) -> None:
    """Worksheets, heading cells, ``input`` and pyout/pyerr outputs of nbformat 3."""
    doc = {
        "nbformat": 3, "nbformat_minor": 0, "metadata": {"name": "old"},
        "worksheets": [{"cells": [
            {"cell_type": "heading", "level": 2, "metadata": {}, "source": ["Old style"]},
            {"cell_type": "markdown", "metadata": {}, "source": ["Some prose."]},
            {"cell_type": "code", "language": "python", "collapsed": False, "metadata": {},
             "input": ["print(6 * 7)\n", "6 * 7"], "prompt_number": 1,
             "outputs": [
                 {"output_type": "stream", "stream": "stdout", "text": ["42\n"]},
                 {"output_type": "pyout", "prompt_number": 1, "metadata": {}, "text": ["42"]},
                 {"output_type": "display_data", "metadata": {}, "png": PNG},
                 {"output_type": "pyerr", "ename": "ValueError", "evalue": "bad",
                  "traceback": ["..."]},
             ]},
        ]}],
    }
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(doc), encoding="utf-8")
    assert parts(extract(path)) == [
        ("Old style", "## Old style\n\nSome prose.\n\n```python\nprint(6 * 7)\n6 * 7\n```\n\n"
                      "42\n\n42\n\nValueError: bad"),
    ]


def test_damaged_cells_are_skipped(tmp_path: Path) -> None:
    """A cell that is not an object, or has odd fields, does not stop the rest."""
    path = notebook(tmp_path / "a.ipynb", [
        "not a cell", {"cell_type": "code", "source": {"x": 1}, "outputs": [7, {"output_type": 1}]},
        {"cell_type": "code", "source": None, "outputs": True}, {"cell_type": None},
        markdown("still here"),
    ])
    assert parts(extract(path)) == [(None, "still here")]


def test_invalid_json_is_an_invalid_notebook(tmp_path: Path) -> None:
    """A truncated file fails with the JSON error and its position."""
    path = tmp_path / "a.ipynb"
    path.write_text('{"cells": [', encoding="utf-8")
    with pytest.raises(ExtractionError) as caught:
        extract(path)
    assert caught.value.reason == "invalid notebook: Expecting value at line 1, column 12"


@pytest.mark.parametrize("content", ['{"a": 1}', "[1, 2]", '{"cells": "none"}'])
def test_json_that_is_not_a_notebook_fails(tmp_path: Path, content: str) -> None:
    """Valid JSON without a cells list is refused with a reason saying so."""
    path = tmp_path / "a.ipynb"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ExtractionError, match=r"^invalid notebook: "):
        extract(path)


@pytest.mark.parametrize("cells", [[], [markdown(""), code("   ")]])
def test_notebook_without_text_is_unsupported(tmp_path: Path, cells: list[Any]) -> None:
    """A notebook with no cells, or only blank ones, is skipped."""
    with pytest.raises(Unsupported):
        extract(notebook(tmp_path / "a.ipynb", cells))


def test_empty_file_is_unsupported(tmp_path: Path) -> None:
    """A zero-byte .ipynb is skipped, not failed."""
    path = tmp_path / "a.ipynb"
    path.write_bytes(b"")
    with pytest.raises(Unsupported):
        extract(path)


def test_notebook_over_max_text_chars_is_refused(tmp_path: Path) -> None:
    """Text past max_text_chars raises LimitExceeded naming the setting."""
    path = notebook(tmp_path / "a.ipynb", [markdown("word " * 400)] * 3)
    with pytest.raises(LimitExceeded, match=r"notebook text exceeds 3,000 characters"):
        extract(path, Limits(max_text_chars=3000))
