"""Extraction: one module per format family, chosen through a registry.

Built-in extractors register themselves the same way a plugin would, with
:func:`register`; later families (OCR, code, audio) plug in without touching the runner.
"""

from __future__ import annotations

from pathlib import Path

from gristmill.extract.base import Extractor, Limits, Segment

__all__ = ["Extractor", "Limits", "Segment", "extractor_for", "register", "registered"]

_BY_EXTENSION: dict[str, Extractor] = {}
_LOADED = False


def register(extractor: Extractor) -> None:
    """Make ``extractor`` handle its extensions, replacing any earlier claim."""
    for ext in extractor.extensions:
        _BY_EXTENSION[ext.lower()] = extractor


def registered() -> dict[str, Extractor]:
    """A copy of the extension -> extractor table."""
    _load_builtins()
    return dict(_BY_EXTENSION)


def extractor_for(path: Path) -> Extractor | None:
    """The extractor for ``path``, chosen by suffix (``.tar.gz``-style double suffixes
    first), or ``None`` when no family reads it."""
    _load_builtins()
    name = path.name.lower()
    suffixes = Path(name).suffixes
    for i in range(len(suffixes)):
        ext = "".join(suffixes[i:])
        if ext in _BY_EXTENSION:
            return _BY_EXTENSION[ext]
    return None


def _load_builtins() -> None:
    # Imported lazily: each family pulls in a heavy library (pdfium, lxml, ...), and
    # the driver process never needs them, only the workers do.
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from gristmill.extract import email, epub, html, office, pdf, text

    for module in (pdf, office, epub, html, text, email):
        for extractor in module.EXTRACTORS:
            register(extractor)
