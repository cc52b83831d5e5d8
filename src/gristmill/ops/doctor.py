"""``gristmill doctor``: whether this machine can do everything the settings ask.

Each check names what it looked at and, when something is missing, the command that
fixes it. Optional parts (OCR, LibreOffice, pgvector) only cost the formats or the speed
that need them, so a missing one is a warning; a broken required part (the home folder,
the embedding model the settings name, SQLite without FTS5, an unreachable PostgreSQL)
is an error. Audio is checked only where an audio model is configured (``audio_model``);
then the model and the packages a scan needs are required.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gristmill.errors import GristmillError, HomeUnwritable

if TYPE_CHECKING:
    from gristmill.config import Settings

__all__ = ["Check", "run_checks"]

Level = Literal["ok", "warning", "error"]


@dataclass(frozen=True, slots=True)
class Check:
    """One finding.

    Attributes:
        name: what was checked (``"ocr"``).
        level: ``ok``, ``warning`` (some formats will be skipped) or ``error``.
        detail: what was found, and what to do when it is not ``ok``.
        facts: the detail's figures for scripts (the audio model's sha256 and
            shapes), in ``--json`` only where there are some.
    """

    name: str
    level: Level
    detail: str
    facts: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """For ``--json``."""
        found: dict[str, Any] = {"name": self.name, "level": self.level,
                                 "detail": self.detail}
        if self.facts:
            found["facts"] = self.facts
        return found


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a person would fix them."""
    database = _sqlite() if settings.database_url is None else _postgres(settings)
    checks = [_home(settings), database, _embedder(settings), _ocr(settings), _libreoffice()]
    if settings.audio_model is not None:
        model = settings.audio_model.expanduser()  # as the scan reads it
        checks += [_audio_packages(model), _audio_model(settings, model)]
    return checks


def _home(settings: Settings) -> Check:
    from gristmill.home import unwritable_reason

    home = settings.home.absolute()
    reason = unwritable_reason(home)
    if reason is not None:  # the very sentence every other command says
        return Check("home", "error", str(HomeUnwritable(home, reason)))
    existing = next(p for p in (home, *home.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    state = "exists" if home.exists() else "will be created"
    return Check("home", "ok", f"{home} ({state}; {free / 2**30:.1f} GiB free)")


def _sqlite() -> Check:
    from gristmill.catalog.sqlite import sqlite_has_fts5

    if not sqlite_has_fts5():
        return Check("sqlite", "error", f"SQLite {sqlite3.sqlite_version} has no FTS5: use a "
                     "Python built with a standard SQLite (python.org, Debian, conda)")
    return Check("sqlite", "ok", f"SQLite {sqlite3.sqlite_version} with FTS5")


def _postgres(settings: Settings) -> Check:
    from gristmill.catalog.postgres import PostgresDatabase
    from gristmill.index.postgres import NO_PGVECTOR, vector_search_check

    assert settings.database_url is not None
    try:
        # Read-only: a check neither creates the schema nor migrates it (ingest does).
        db = PostgresDatabase(settings.database_url.get_secret_value(), pool_size=1,
                              readonly=True)
    except GristmillError as exc:
        return Check("postgresql", "error", f"PostgreSQL: {exc}")
    try:
        version = db.server_version()
        level, vectors = vector_search_check(db)
        schema = db.schema_version
        where = f"PostgreSQL {version} at {db.display_name} " + (
            f"(schema {schema})" if schema else "(no knowledge base yet: the first ingest "
            "creates its tables)")
    except GristmillError as exc:
        return Check("postgresql", "error", f"PostgreSQL: {exc}")
    finally:
        db.close()
    if level != "ok":
        hint = (" (Debian: postgresql-NN-pgvector, NN the server's major version)"
                if vectors == NO_PGVECTOR else "")
        return Check("postgresql", "warning", f"{where}; {vectors}{hint}")
    return Check("postgresql", "ok", f"{where}; {vectors}")


def _embedder(settings: Settings) -> Check:
    if settings.embedder == "none":
        return Check("embedder", "ok", "none: keyword search only")
    from gristmill.embed.minilm import model_file

    try:
        path = model_file(settings.model_path)
    except GristmillError as exc:
        return Check("embedder", "error", str(exc))
    return Check("embedder", "ok", f"{settings.embedder}: {path} (sha256 verified)")


def _ocr(settings: Settings) -> Check:
    from gristmill.extract.ocr import doctor, engine

    if settings.ocr_engine != "tesseract":
        try:
            engine(settings.ocr_engine)  # loads its models: the real test
        except GristmillError as exc:
            return Check("ocr", "warning", f"{exc} (until then images and scanned PDF "
                         "pages are skipped)")
        return Check("ocr", "ok", f"{settings.ocr_engine}: models loaded")

    found = doctor(settings.ocr_lang)
    if found.ok:
        # osd is Tesseract's page-orientation model, not a language anyone reads.
        languages = [lang for lang in found.languages if lang != "osd"]
        osd = "; osd is the orientation model" if "osd" in found.languages else ""
        return Check("ocr", "ok", f"Tesseract {found.version or '(unknown version)'} at "
                     f"{found.binary}; OCR languages: using {settings.ocr_lang} (installed: "
                     f"{', '.join(languages) or 'none'}{osd})")
    return Check("ocr", "warning", f"{found.problem} (until then images and scanned PDF "
                 "pages are skipped)")


def _libreoffice() -> Check:
    from gristmill.extract.legacy import PACKAGES

    for program in ("soffice", "libreoffice"):
        if found := shutil.which(program):
            return Check("libreoffice", "ok", f"{found} (reads .doc .xls .ppt .rtf .odt .ods "
                         ".odp)")
    return Check("libreoffice", "warning", f"LibreOffice is not installed: install "
                 f"{PACKAGES} (until then .doc .xls .ppt .rtf .odt .ods .odp are skipped)")


_AUDIO_EXTRA = "pip install 'gristmill[audio]'"


def _audio_packages(model: Path) -> Check:
    # PyAV decodes every recording; the model's own runtime runs it (chosen by suffix,
    # as AudioModel.load chooses; any other suffix is the model check's to report).
    wanted = [("av", "av", "PyAV")]
    if model.suffix.lower() == ".tflite":
        wanted.append(("ai_edge_litert.interpreter", "ai-edge-litert", "ai-edge-litert"))
    elif model.suffix.lower() == ".onnx":
        wanted.append(("onnxruntime", "onnxruntime", "onnxruntime"))
    found: list[str] = []
    missing: list[str] = []
    facts: dict[str, Any] = {}
    for module, distribution, name in wanted:
        try:
            importlib.import_module(module)
            version = importlib.metadata.version(distribution)
        except (ImportError, importlib.metadata.PackageNotFoundError, OSError) as exc:
            # OSError: installed, but a shared library it bundles does not load here.
            missing.append(f"{name} ({exc})" if isinstance(exc, OSError) else name)
            continue
        facts[distribution] = version
        found.append(f"{name} {version}" + (f" (FFmpeg {_ffmpeg()})" if module == "av" else ""))
    if missing:
        # ai-edge-litert has wheels for Linux, Windows and Apple-silicon macOS only.
        elsewhere = ("; where ai-edge-litert has no wheel (Intel macOS), use an ONNX "
                     "conversion of the model" if "ai-edge-litert" in missing else "")
        return Check("audio", "error", f"{' and '.join(missing)} not installed, which audio "
                     f"scans need: {_AUDIO_EXTRA}{elsewhere}", facts)
    return Check("audio", "ok", ", ".join(found), facts)


def _ffmpeg() -> str:
    import av

    return str(getattr(av, "ffmpeg_version_info", "") or "bundled")


def _audio_model(settings: Settings, model: Path) -> Check:
    from gristmill.audio.events import EventDetector
    from gristmill.audio.model import AudioModel

    given = settings.audio_class_map
    class_map = given.expanduser() if given is not None else None
    try:
        loaded = AudioModel.load(model, class_map)
    except GristmillError as exc:
        return Check("audio model", "error", str(exc), {"path": str(model.absolute())})
    # Converted models name their outputs Identity, Identity_1...: say which is scores.
    outputs = ", ".join(
        f"{name} {_shape(shape)}" + (" (scores)" if name == loaded.scores_output != "scores"
                                     else "")
        for name, shape in loaded.output_shapes.items())
    facts: dict[str, Any] = {
        "path": str(loaded.path.absolute()), "runtime": loaded.runtime,
        "sha256": loaded.sha256, "input_shape": list(loaded.input_shape),
        "output_shapes": {name: list(shape) for name, shape in loaded.output_shapes.items()},
        "scores_output": loaded.scores_output, "classes": len(loaded.labels),
        "class_map": str(class_map.absolute()) if class_map else None}
    where = (f"the class map {class_map}" if class_map else "the class map beside it")
    detail = (f"{facts['path']}: {loaded.runtime}, sha256 {loaded.sha256}; input "
              f"{_shape(loaded.input_shape)}, outputs {outputs}; {len(loaded.labels)} "
              f"classes, as in {where}")
    # Read as the scan reads them (gristmill.audio.recording): "13" is class 13.
    classes = [int(c) if c.strip().isdigit() else c for c in settings.audio_classes]
    try:
        # The detector resolves class names against the labels, as a scan's does.
        EventDetector(loaded.labels, classes)
    except GristmillError as exc:
        return Check("audio model", "error", f"{detail}; but {exc} (setting audio_classes)",
                     facts)
    names = [loaded.labels[c] if isinstance(c, int) else c for c in classes]
    facts["detecting"] = names
    # Separated as GRISTMILL_AUDIO_CLASSES separates them: names hold commas.
    return Check("audio model", "ok", f"{detail}; detecting {'; '.join(names)}", facts)


def _shape(shape: tuple[int | None, ...]) -> str:
    return "[" + ", ".join("N" if d is None else str(d) for d in shape) + "]"
