"""Extraction: one module per format family, chosen through a registry.

Built-in extractors register themselves the same way a plugin would, with
:func:`register`; a new family (code, audio, say) plugs in the same way, without
touching the runner.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from gristmill.extract.base import Extractor, Limits, Segment

__all__ = ["Extractor", "Limits", "Segment", "current_versions", "extractor_for", "reads",
           "register", "registered", "sniff"]

_BY_EXTENSION: dict[str, Extractor] = {}
_PLUGINS: dict[str, Extractor] = {}  # registered with register(), by name
_LOADED: set[str] = set()

# Which built-in module reads which extensions. Modules are imported on the first file
# that needs them: each pulls in a heavy library (pdfium, lxml, openpyxl: ~0.3 s for the
# office family), and a worker that only meets PDFs should not pay for the others. A
# test checks this table against what each module declares.
_BUILTIN_HOMES: dict[str, str] = {
    ".pdf": "pdf",
    **dict.fromkeys([".docx", ".docm", ".pptx", ".pptm", ".xlsx", ".xlsm"], "office"),
    ".epub": "epub",
    **dict.fromkeys([".html", ".htm", ".xhtml"], "html"),
    **dict.fromkeys([".txt", ".text", ".md", ".markdown", ".rst", ".log", ".org",
                     ".toml", ".ini", ".cfg", ".csv", ".tsv"], "text"),
    # Source code (tree-sitter); YAML too, by top-level key. Not .jsp: jsp.py reads it.
    **dict.fromkeys([".java", ".py", ".pyi", ".js", ".jsx", ".mjs", ".cjs", ".ts", ".tsx",
                     ".go", ".cs", ".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh", ".kt",
                     ".kts", ".rb", ".php", ".rs", ".sql", ".sh", ".bash", ".properties",
                     ".yaml", ".yml"], "code"),
    # JSP and the Java in it; FreeMarker and Velocity templates (a scanner, no grammar).
    **dict.fromkeys([".jsp", ".jspx", ".jspf", ".tag", ".tagx", ".ftl", ".vm"], "jsp"),
    **dict.fromkeys([".eml", ".p7m", ".p7s"], "email"),
    ".zip": "archive",
    ".msg": "msg",
    **dict.fromkeys([".json", ".jsonl", ".ndjson", ".xml", ".tld"], "data"),
    ".ipynb": "notebook",
    **dict.fromkeys([".doc", ".rtf", ".odt", ".xls", ".ods", ".ppt", ".odp"], "legacy"),
    **dict.fromkeys([".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp"],
                    "image"),
}

# The version of each built-in extractor, known without importing it. Bumping one (in the
# class and here; a test checks they agree) makes the next run re-process exactly the
# items that extractor produced: see Catalog.requeue_outdated.
_BUILTIN_VERSIONS: dict[str, int] = {
    "pdf": 2, "image": 1, "docx": 1, "pptx": 1, "xlsx": 1, "epub": 1, "html": 1,
    "text": 1, "csv": 1, "email": 2, "zip": 1, "msg": 2, "json": 1, "jsonl": 1, "xml": 1,
    "ipynb": 1, "code": 2, "jsp": 1,
    # XML and HTML in git work trees: chosen by the worker by location, not by suffix.
    "markup": 1,
    # LibreOffice conversions, named for the application; bump with docx/xlsx/pptx.
    "writer": 1, "calc": 1, "impress": 1,
}


def register(extractor: Extractor) -> None:
    """Make ``extractor`` handle its extensions, replacing any earlier claim (built-in
    ones included, whether or not they have been loaded yet)."""
    for ext in extractor.extensions:
        _BY_EXTENSION[ext.lower()] = extractor
    _PLUGINS[extractor.name] = extractor


def registered() -> dict[str, Extractor]:
    """A copy of the extension -> extractor table."""
    for module in sorted(set(_BUILTIN_HOMES.values())):
        _load_builtin(module)
    return dict(_BY_EXTENSION)


def current_versions() -> dict[str, int]:
    """Extractor name -> version, for the built-ins and every registered extractor."""
    return {**_BUILTIN_VERSIONS, **{name: e.version for name, e in _PLUGINS.items()}}


def reads(path: Path) -> bool:
    """Whether some extractor reads ``path``, without importing any of them."""
    suffixes = Path(path.name.lower()).suffixes
    return any("".join(suffixes[i:]) in _BY_EXTENSION or "".join(suffixes[i:]) in
               _BUILTIN_HOMES for i in range(len(suffixes)))


def extractor_for(path: Path) -> Extractor | None:
    """The extractor for ``path``, chosen by suffix (``.tar.gz``-style double suffixes
    first), or ``None`` when no family reads it."""
    name = path.name.lower()
    suffixes = Path(name).suffixes
    for i in range(len(suffixes)):
        ext = "".join(suffixes[i:])
        if ext not in _BY_EXTENSION and ext in _BUILTIN_HOMES:
            _load_builtin(_BUILTIN_HOMES[ext])
        if ext in _BY_EXTENSION:
            return _BY_EXTENSION[ext]
    return None


def sniff(path: Path) -> Extractor | None:
    """For a file with no extension: the plain-text extractor when its first 8 KB are
    text (README, LICENSE, Makefile), else ``None``. Reads the file."""
    if Path(path.name).suffix:
        return None
    try:
        with path.open("rb") as fh:
            head = fh.read(8192)
    except OSError:
        return None
    from gristmill.extract.text import looks_like_text

    return extractor_for(Path("plain.txt")) if looks_like_text(head) else None


def _load_builtin(module_name: str) -> None:
    if module_name in _LOADED:
        return
    _LOADED.add(module_name)
    module = importlib.import_module(f"gristmill.extract.{module_name}")
    for extractor in module.EXTRACTORS:
        for ext in extractor.extensions:
            # A plugin registered earlier keeps its claim over the built-in.
            _BY_EXTENSION.setdefault(ext, extractor)
