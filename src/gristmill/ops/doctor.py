"""``gristmill doctor``: whether this machine can do everything the settings ask, and
the checklist after a move.

Each check names what it looked at and, when something is missing, the command that
fixes it. Optional parts (OCR, LibreOffice, pgvector) only cost the formats or the speed
that need them, so a missing one is a warning; a broken required part (the home folder,
the embedding model the settings name, SQLite without FTS5, an unreachable PostgreSQL, a
schema newer than this gristmill, a configured source root that cannot be read, an
installed service whose program is gone) is an error. Audio is checked only where an
audio model is configured (``audio_model``); then the model and the packages a scan
needs are required.

The move checklist, in the order a person fixes things after copying a home: which env
file and toml files were read and every setting that is not a default (with where it
came from); Python; the home's permissions and free disk against its size; the
database and its schema; the folders the catalog's jobs read; inotify room for watched
folders; the services ``gristmill deploy`` installs (systemd units, crontab lines).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from gristmill.errors import GristmillError, HomeUnwritable
from gristmill.sources.roots import is_url

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
    """Every check: first the five every version printed, in the same places (scripts
    read them by position), then the audio checks, then the move checklist."""
    database = _sqlite(settings) if settings.database_url is None else _postgres(settings)
    checks: list[Check | None] = [_home(settings), database, _embedder(settings),
                                  _ocr(settings), _libreoffice()]
    if settings.audio_model is not None:
        model = settings.audio_model.expanduser()  # as the scan reads it
        checks += [_audio_packages(model), _audio_model(settings, model)]
    checks += [_settings(settings), _python(), _disk(settings), *_sources(settings)]
    units = list(_installed_units())
    checks += [_inotify(units), _services(settings, units)]
    return [check for check in checks if check is not None]


def _home(settings: Settings) -> Check:
    from gristmill.home import unwritable_reason

    home = settings.home.absolute()
    reason = unwritable_reason(home)
    if reason is not None:  # the very sentence every other command says
        return Check("home", "error", str(HomeUnwritable(home, reason)))
    existing = next(p for p in (home, *home.parents) if p.exists())
    free = shutil.disk_usage(existing).free
    state = "exists" if home.exists() else "will be created"
    # A home copied as another user (rsync as root, a restored backup) is writable as a
    # folder while its database and logs are not: each is named.
    blocked = [str(p) for p, mode in _owned_files(home) if not os.access(p, mode)]
    if blocked:
        user = _user()
        return Check("home", "error", f"{home}: {user} cannot read and write "
                     f"{', '.join(blocked[:5])}{' ...' if len(blocked) > 5 else ''}: "
                     f"sudo chown -R {user} {shlex.quote(str(home))}",
                     {"unwritable": blocked})
    return Check("home", "ok", f"{home} ({state}, readable and writable by {_user()}; "
                 f"{free / 2**30:.1f} GiB free)")


def _owned_files(home: Path) -> Iterator[tuple[Path, int]]:
    # What gristmill writes in place (never the whole tree: clips may be millions), and
    # the settings it only reads.
    both = os.R_OK | os.W_OK
    for name, mode in (("gristmill.db", both), ("gristmill.db-wal", both),
                       ("gristmill.db-shm", both), ("logs", both | os.X_OK),
                       ("run", both | os.X_OK), (".env", os.R_OK),
                       ("gristmill.toml", os.R_OK)):
        if (home / name).exists():
            yield home / name, mode
    logs = home / "logs"
    if logs.is_dir() and os.access(logs, os.R_OK | os.X_OK):
        yield from ((p, both) for p in logs.iterdir() if p.is_file())


def _sqlite(settings: Settings) -> Check:
    from gristmill.catalog.migrations.sqlite import MIGRATIONS
    from gristmill.catalog.sqlite import SqliteDatabase, sqlite_has_fts5

    if not sqlite_has_fts5():
        return Check("sqlite", "error", f"SQLite {sqlite3.sqlite_version} has no FTS5: use a "
                     "Python built with a standard SQLite (python.org, Debian, conda)")
    where = f"SQLite {sqlite3.sqlite_version} with FTS5"
    path = settings.database_path.absolute()
    if not path.is_file():
        return Check("sqlite", "ok", f"{where}; no knowledge base at {path} yet (the first "
                     "ingest or import creates it)", {"schema": 0, "current": len(MIGRATIONS)})
    try:
        # Read-only, and no migration: a check changes nothing.
        db = SqliteDatabase(path, readonly=True)
        try:
            schema = db.schema_version
        finally:
            db.close()
    except (GristmillError, sqlite3.Error) as exc:
        return Check("sqlite", "error", f"{path} cannot be read: {exc}. Check its owner and "
                     "permissions (ls -l), or restore it from an export")
    return _schema("sqlite", f"{where}; {path}", schema, len(MIGRATIONS))


def _schema(name: str, where: str, schema: int, current: int) -> Check:
    facts = {"schema": schema, "current": current}
    if schema > current:
        return Check(name, "error", f"{where}: schema {schema} was written by a newer "
                     f"gristmill (this one knows {current}): pip install -U gristmill", facts)
    if schema < current:
        return Check(name, "warning", f"{where}: schema {schema}, this gristmill's is "
                     f"{current}; the next ingest (or import) migrates it", facts)
    return Check(name, "ok", f"{where} (schema {schema}, current)", facts)


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
    if schema:
        from gristmill.catalog.migrations.postgres import MIGRATIONS

        found = _schema("postgresql", where, schema, len(MIGRATIONS))
        if found.level != "ok":
            return found
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


# --- the move checklist ------------------------------------------------------------

#: Free space wanted on the home's file system, as a multiple of the knowledge base's
#: size: room for the WAL, a migration's copy, or an export beside it.
FREE_FACTOR = 2
# Directories counted under watched folders at most (one inotify watch each).
_WALK_LIMIT = 2_000_000
_SYSTEMCTL_TIMEOUT = 10
# The latest jobs whose folders are checked (older ones were most likely re-run since).
_JOBS_READ = 200
_INOTIFY = Path("/proc/sys/fs/inotify/max_user_watches")


def _settings(settings: Settings) -> Check:
    looked = settings.env_file_candidates
    if settings.env_file is not None:
        env = f"env file {settings.env_file}"
    else:
        env = "no env file (looked for " + (", ".join(map(str, looked)) or "none") + ")"
    tomls = ", ".join(map(str, settings.toml_files)) or "no gristmill.toml"
    changed = [o for o in settings.origins() if not o.is_default]
    listed = "; ".join(f"{o.name}={_short(o.value)} ({o.source})" for o in changed)
    facts: dict[str, Any] = {
        "env_file": str(settings.env_file) if settings.env_file else None,
        "env_file_candidates": [str(p) for p in looked],
        "toml_files": [str(p) for p in settings.toml_files],
        "settings": {o.name: {"value": o.value, "source": o.source} for o in changed}}
    return Check("settings", "ok", f"{env}; {tomls}; " + (
        f"{len(changed)} not default: {listed}" if changed else "all defaults"), facts)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _python() -> Check:
    from gristmill import __version__

    try:
        version = importlib.metadata.version("gristmill")
    except importlib.metadata.PackageNotFoundError:  # a source tree, not installed
        version = __version__
    venv = sys.prefix != sys.base_prefix
    facts = {"python": platform.python_version(), "executable": sys.executable,
             "virtualenv": sys.prefix if venv else None, "gristmill": version}
    where = f"in the virtual environment {sys.prefix}" if venv else "(no virtual environment)"
    return Check("python", "ok", f"Python {platform.python_version()} at {sys.executable} "
                 f"{where}; gristmill {version}", facts)


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:  # a uid without a passwd entry (containers)
        return str(os.getuid())


def _disk(settings: Settings) -> Check | None:
    home = settings.home.absolute()
    if not home.is_dir():
        return None  # nothing there yet: the home check says so
    size = _folder_size(home)
    free = shutil.disk_usage(home).free
    facts = {"home_bytes": size, "free_bytes": free}
    where = f"{free / 2**30:.1f} GiB free for a home of {size / 2**30:.2f} GiB"
    if free < FREE_FACTOR * size:
        return Check("disk", "warning", f"{where}: less than {FREE_FACTOR} times its size "
                     "(room for its write-ahead log, a migration or an export): free space "
                     f"on {home}'s file system, or move the home (gristmill export)", facts)
    return Check("disk", "ok", where, facts)


def _folder_size(folder: Path) -> int:
    total = 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_blocks * 512
        except OSError:
            continue  # an unreadable folder: the home check names it
    return total


def _sources(settings: Settings) -> list[Check]:
    """The configured source roots (required where set) and the local folders the
    catalog's jobs read (a warning: they are what a move most often leaves behind)."""
    checks: list[Check] = []
    user = _user()
    # A URL prefix is no folder to read here: the store says what it holds at ingest.
    roots = [Path(root).expanduser().absolute() for root in settings.source_roots
             if not is_url(root)]
    bad = [f"{root} ({_why_unreadable(root)})" for root in roots if _why_unreadable(root)]
    if bad:
        checks.append(Check("source roots", "error", f"{user} cannot read "
                            f"{'; '.join(bad)}: create them or fix their permissions "
                            "(chmod, chown), or correct source_roots", {"unreadable": bad}))
    elif roots:
        checks.append(Check("source roots", "ok", f"{user} can read "
                            f"{', '.join(map(str, roots))}"))
    known = _job_folders(settings)
    if known:
        bad = [f"{folder} ({_why_unreadable(folder)})" for folder in known
               if _why_unreadable(folder)]
        if bad:
            checks.append(Check("sources", "warning", f"{user} cannot read {len(bad)} of "
                                f"the {len(known)} folders this knowledge base's jobs read: "
                                f"{'; '.join(bad[:5])}{' ...' if len(bad) > 5 else ''}. Copy "
                                "them here, fix their permissions, or ingest from their new "
                                "paths", {"unreadable": bad}))
        else:
            checks.append(Check("sources", "ok", f"{user} can read the {len(known)} "
                                "folders this knowledge base's jobs read"))
    return checks


def _why_unreadable(path: Path) -> str | None:
    if not path.exists():
        return "missing"
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    return None if os.access(path, mode) else "permission denied"


def _job_folders(settings: Settings) -> list[Path]:
    # Local sources only (s3://, gdrive:// are checked by their own credentials), read
    # from the catalog without creating or migrating it.
    from gristmill.catalog import catalog_exists
    from gristmill.catalog.backend import open_database
    from gristmill.catalog.jobs import JobStore

    try:
        if not catalog_exists(settings):
            return []
        db = open_database(settings, readonly=True)
    except GristmillError:
        return []  # the database check says why
    try:
        jobs = JobStore(db).recent(limit=_JOBS_READ)
    except GristmillError:
        return []
    finally:
        db.close()
    folders = dict.fromkeys(source for job in jobs for source in job.spec.sources
                            if "://" not in source)
    return [Path(folder) for folder in folders]


@dataclass(frozen=True, slots=True)
class _Unit:
    path: Path
    system: bool
    words: tuple[str, ...]  # ExecStart, split; () for a timer

    @property
    def name(self) -> str:
        return self.path.name


def _installed_units() -> Iterator[_Unit]:
    from gristmill.ops.deploy import unit_folder

    for system in (False, True):
        folder = unit_folder(system)
        try:
            paths = sorted(folder.glob("gristmill-*"))
        except OSError:
            continue
        for path in paths:
            if path.suffix in (".service", ".timer") and path.is_file():
                yield _Unit(path, system, _exec_start(path))


def _exec_start(path: Path) -> tuple[str, ...]:
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ()
    for line in lines:
        if line.startswith("ExecStart="):
            value = line.removeprefix("ExecStart=").lstrip("-@:+!")
            try:
                words = shlex.split(value)
            except ValueError:
                return ()
            return tuple(w.replace("$$", "$").replace("%%", "%") for w in words)
    return ()


def _watched_folders(units: list[_Unit]) -> list[Path]:
    folders: list[Path] = []
    for unit in units:
        words = list(unit.words)
        if "watch" not in words:
            continue
        for word in words[words.index("watch") + 1:]:
            if word.startswith("-"):
                break
            folders.append(Path(word))
    return folders


def _inotify(units: list[_Unit]) -> Check | None:
    folders = _watched_folders(units)
    if not folders or not _INOTIFY.is_file():
        return None  # nothing watched, or not Linux: no inotify limit to meet
    limit = int(_INOTIFY.read_text().strip())
    needed = sum(_count_folders(f, _WALK_LIMIT) for f in folders)
    facts = {"max_user_watches": limit, "folders": needed}
    where = (f"{needed} folders watched under {', '.join(map(str, folders))}; "
             f"fs.inotify.max_user_watches is {limit}")
    if needed * 2 > limit:  # every other program of this user shares the limit
        wanted = max(524_288, needed * 4)
        return Check("inotify", "warning", f"{where}: watch will miss changes (and "
                     f"rescan) once it runs out. Raise it: sudo sysctl "
                     f"fs.inotify.max_user_watches={wanted} && echo "
                     f"fs.inotify.max_user_watches={wanted} | sudo tee "
                     "/etc/sysctl.d/60-gristmill.conf", facts)
    return Check("inotify", "ok", where, facts)


def _count_folders(root: Path, limit: int) -> int:
    count, stack = 0, [root]
    while stack and count < limit:
        try:
            with os.scandir(stack.pop()) as entries:
                count += 1
                stack += [Path(e.path) for e in entries if e.is_dir(follow_symlinks=False)]
        except OSError:
            continue
    return count


def _services(settings: Settings, units: list[_Unit]) -> Check:
    """The units ``gristmill deploy`` writes, whether systemd runs them and whether they
    run this installation and this home; crontab lines naming gristmill."""
    home = os.path.abspath(settings.home.expanduser())  # as deploy writes it
    systemctl = shutil.which("systemctl")
    timed = {u.path.stem for u in units if u.path.suffix == ".timer"}
    found: list[str] = []
    problems: list[str] = []
    broken: list[str] = []
    states: dict[str, str] = {}
    for unit in units:
        scope = "system" if unit.system else "user"
        if unit.words:
            program = unit.words[0]
            if not os.access(program, os.X_OK):
                broken.append(f"{unit.path} runs {program}, which is not here: "
                              f"gristmill deploy systemd --install{' --system' * unit.system}")
            if "--home" in unit.words and unit.words.index("--home") + 1 < len(unit.words):
                theirs = unit.words[unit.words.index("--home") + 1]
                if theirs != home:
                    problems.append(f"{unit.name} ({scope}) runs the home {theirs}, not "
                                    f"{home}")
        if unit.path.suffix == ".service" and unit.path.stem in timed:
            continue  # started by its timer: its own state is "inactive" between runs
        state = _is_active(systemctl, unit) if systemctl else "unknown"
        states[unit.name] = state
        found.append(f"{unit.name} ({scope}, {state})")
        if state not in ("active", "unknown"):
            manage = "sudo systemctl" if unit.system else "systemctl --user"
            problems.append(f"{unit.name} is {state}: {manage} enable --now {unit.name}")
    crons = _cron_lines()
    found += [f"{len(crons)} crontab line(s)"] if crons else []
    facts: dict[str, Any] = {"units": {str(u.path): states.get(u.name) for u in units},
                             "cron": crons}
    if broken:
        return Check("services", "error", "; ".join(broken + problems), facts)
    if problems:
        return Check("services", "warning", "; ".join(problems), facts)
    if not found:
        return Check("services", "ok", "none installed (gristmill deploy systemd "
                     "--install, or gristmill deploy cron)", facts)
    note = "" if systemctl else " (no systemctl here)"
    return Check("services", "ok", ", ".join(found) + note, facts)


def _is_active(systemctl: str, unit: _Unit) -> str:
    scope = [] if unit.system else ["--user"]
    try:
        done = subprocess.run([systemctl, *scope, "is-active", unit.name],
                              capture_output=True, text=True, timeout=_SYSTEMCTL_TIMEOUT,
                              check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    # No systemd running (a container, no user session): not this unit's fault.
    answer = done.stdout.strip()
    if not answer or "failed to connect" in done.stderr.lower():
        return "unknown"
    return answer


def _cron_lines() -> list[str]:
    crontab = shutil.which("crontab")
    if crontab is None:
        return []
    try:
        done = subprocess.run([crontab, "-l"], capture_output=True, text=True,
                              timeout=_SYSTEMCTL_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line for line in done.stdout.splitlines()
            if "gristmill" in line and not line.lstrip().startswith("#")]
