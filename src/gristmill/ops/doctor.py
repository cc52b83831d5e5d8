"""``gristmill doctor``: whether this machine can do everything the settings ask, and
the checklist after a move.

Each check names what it looked at and, when something is missing, the command that
fixes it. Optional parts (OCR, LibreOffice, pgvector) only cost the formats or the speed
that need them, so a missing one is a warning; a broken required part (the home folder,
the embedding model the settings name, SQLite without FTS5, an unreachable PostgreSQL, a
schema newer than this gristmill, a configured source root that cannot be read, an
installed service whose program is gone) is an error. Remote sources are checked as
far as can be without reading them: an ``s3://`` root's credentials, endpoint and
bucket (one listing of at most one key, with short timeouts and no retries, so doctor
answers in seconds when the store is down); a ``gdrive://`` root's credentials file,
loaded as ingest loads it but offline (no call to Google). Audio is checked only where an
audio model is configured (``audio_model``); then the model and the packages a scan
needs are required.

The move checklist, in the order a person fixes things after copying a home: which env
file and toml files were read and every setting that is not a default (with where it
came from); Python; the home's permissions and free disk against its size; the
database and its schema; the folders and remote sources the configured roots and the
catalog's jobs name; inotify room for watched folders; the services ``gristmill
deploy`` installs (systemd units, crontab lines).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
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
    database = _checked("database", _sqlite if settings.database_url is None
                        else _postgres, settings)
    checks: list[Check | None] = [_checked("home", _home, settings), database,
                                  _embedder(settings), _ocr(settings), _libreoffice()]
    if settings.audio_model is not None:
        model = settings.audio_model.expanduser()  # as the scan reads it
        checks += [_audio_packages(model), _audio_model(settings, model)]
    checks += [_settings(settings), _python(), _checked("disk", _disk, settings),
               *_sources(settings), *_store(settings)]
    units = list(_installed_units())
    checks += [_inotify(units), _services(settings, units)]
    return [check for check in checks if check is not None]


def _checked(name: str, check: Callable[[Settings], Check | None],
             settings: Settings) -> Check | None:
    """``check(settings)``, or an error line where the home's file system refuses it
    (a folder above the home this user cannot enter): a checklist reports, never crashes."""
    try:
        return check(settings)
    except OSError as exc:
        where = exc.filename or settings.home
        return Check(name, "error", f"{where}: {exc.strerror or exc}. Check the owner and "
                     "permissions of it and the folders above it (ls -ld)")


def _home(settings: Settings) -> Check:
    from gristmill.home import nearest_existing, unwritable_reason

    home = settings.home.absolute()
    reason = unwritable_reason(home)
    if reason is not None:  # the very sentence every other command says
        return Check("home", "error", str(HomeUnwritable(home, reason)))
    free = shutil.disk_usage(nearest_existing(home)).free
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
    try:
        exists = path.is_file()
    except OSError as exc:  # a folder above it the user cannot enter
        return Check("sqlite", "error", f"{path} cannot be looked at: {exc.strerror}. Check "
                     "the owner and permissions of the folders above it (ls -ld)")
    if not exists:
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
    """The configured source roots (required where set) and the sources the catalog's
    jobs read (a warning: they are what a move most often leaves behind): folders
    first, then the remote ones."""
    checks: list[Check] = []
    user = _user()
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
    read = _job_sources(settings)
    known = [Path(source) for source in read if not is_url(source)]
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
    required = [str(root) for root in settings.source_roots if is_url(root)]
    remote = dict.fromkeys([*required, *(source for source in read if is_url(source))])
    drive = [url for url in remote if _scheme(url) == "gdrive"]
    s3 = [url for url in remote if _scheme(url) == "s3"]
    checks += _s3(settings, s3, set(required))
    checks += _gdrive(settings, drive, set(required))
    checks += _fsspec([url for url in remote if url not in drive and url not in s3],
                      set(required))
    return checks


def _why_unreadable(path: Path) -> str | None:
    if not path.exists():
        return "missing"
    mode = os.R_OK | (os.X_OK if path.is_dir() else 0)
    return None if os.access(path, mode) else "permission denied"


def _job_sources(settings: Settings) -> list[str]:
    # Folders and URLs, read from the catalog without creating or migrating it.
    from gristmill.catalog import catalog_exists
    from gristmill.catalog.backend import open_database
    from gristmill.catalog.jobs import JobStore

    try:
        if not catalog_exists(settings):
            return []
        db = open_database(settings, readonly=True)
    except (GristmillError, OSError):
        return []  # the database check says why
    try:
        jobs = JobStore(db).recent(limit=_JOBS_READ)
    except GristmillError:
        return []
    finally:
        db.close()
    return list(dict.fromkeys(source for job in jobs for source in job.spec.sources))


def _scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def _level(required: bool) -> Level:
    # A configured root that cannot be read fails every job under it; a job's source
    # that is gone only fails a re-run of that job.
    return "error" if required else "warning"


# One listing of one key answers in milliseconds; a store that takes longer than this is
# as good as down for a check. No retries: doctor reports, the next ingest retries.
_S3_TIMEOUTS = {"connect_timeout": 3, "read_timeout": 5}
_S3_EXTRA = "pip install 'gristmill[s3]'"


def _s3(settings: Settings, urls: list[str], required: set[str]) -> list[Check]:
    """The S3 (and any other non-Drive URL) sources: credentials, endpoint, bucket.

    A line for each root that fails and one ``ok`` line for those that list. What all
    roots share (boto3, the credentials, the client) is checked once and, failing, is
    one line for all; an endpoint found down is not asked again for the next root.
    """
    from gristmill.sources.s3 import parse_url  # boto3 is imported by its functions

    checks: list[Check] = []
    valid: list[str] = []
    for url in urls:
        try:
            parse_url(url)
        except GristmillError as exc:  # a scheme gristmill does not read, a bad bucket
            checks.append(Check("s3", _level(url in required), str(exc), {"root": url}))
        else:
            valid.append(url)
    urls = valid
    if not urls:
        return checks
    worst = _level(any(url in required for url in urls))
    named = ", ".join(urls)
    try:
        import boto3
        from botocore.config import Config
        from botocore.exceptions import BotoCoreError, NoCredentialsError
        from botocore.exceptions import ConnectionError as Unreachable
        from botocore.exceptions import ReadTimeoutError as SlowAnswer

        from gristmill.sources.s3 import item_error, listing_error
    except ImportError:
        return [*checks, Check("s3", worst, f"boto3 is not installed, which reading "
                               f"{named} needs: {_S3_EXTRA}")]
    try:
        session = boto3.session.Session()  # reads AWS_PROFILE's section: it may be missing
        credentials = session.get_credentials()
        # Loaded now, not at the first request: an expired SSO login or a role that
        # cannot be assumed is a credentials problem, not an unreachable store.
        if credentials is not None:
            credentials.get_frozen_credentials()
    except BotoCoreError as exc:
        return [*checks, Check("s3", worst, f"the AWS credentials for {named} cannot be "
                               f"loaded: {exc}. Fix AWS_PROFILE or ~/.aws/config, log in "
                               "again (aws sso login), or set AWS_ACCESS_KEY_ID and "
                               "AWS_SECRET_ACCESS_KEY")]
    if credentials is None:
        return [*checks, Check("s3", worst, str(item_error(NoCredentialsError(), named)))]
    # Built here rather than taken from the s3 source: that client waits a minute for an
    # answer and retries, which is right for an ingest and too long for a checklist.
    try:
        client = session.client("s3", endpoint_url=settings.s3_endpoint_url or None,
                                config=Config(**_S3_TIMEOUTS,
                                              retries={"total_max_attempts": 1}))
    except (BotoCoreError, ValueError) as exc:  # an endpoint that is no URL
        return [*checks, Check("s3", worst, f"no S3 client for {named}: {exc}; correct "
                               "s3_endpoint_url, AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL")]
    endpoint = str(client.meta.endpoint_url)
    facts: dict[str, Any] = {"endpoint": endpoint, "credentials": credentials.method}
    readable: list[str] = []
    down: str | None = None
    for url in urls:
        # Once the endpoint is found down, the other roots there are not tried again.
        problem = f"cannot list {url}: {down}" if down else None
        if problem is None:
            bucket, prefix = parse_url(url)
            try:
                client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1)
            except (Unreachable, SlowAnswer) as exc:
                down = (f"the S3 endpoint {endpoint} is unreachable ({_why_down(exc)}): "
                        "start it, or correct s3_endpoint_url, AWS_ENDPOINT_URL_S3 or "
                        "AWS_ENDPOINT_URL")
                problem = f"cannot list {url}: {down}"
            except Exception as exc:  # refused, no such bucket: listing_error says which
                problem = str(listing_error(exc, url))
        if problem is None:
            readable.append(url)
        else:
            checks.append(Check("s3", _level(url in required), problem,
                                {**facts, "root": url}))
    if readable:
        checks.append(Check("s3", "ok", f"{', '.join(readable)}: listed at {endpoint} "
                            f"(credentials: {credentials.method})",
                            {**facts, "roots": readable}))
    return checks


def _why_down(exc: BaseException) -> str:
    """The reason the OS gave ("Connection refused", "Name or service not known"), from
    under botocore's and urllib3's wrappers (whose text repeats the request's URL)."""
    from botocore.exceptions import ConnectTimeoutError, ReadTimeoutError

    if isinstance(exc, ConnectTimeoutError):
        return f"no connection within {_S3_TIMEOUTS['connect_timeout']} s"
    if isinstance(exc, ReadTimeoutError):
        return f"connected, but no answer within {_S3_TIMEOUTS['read_timeout']} s"
    cause: BaseException = exc
    while (inner := cause.__cause__ or cause.__context__) is not None:
        cause = inner
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror
    return str(cause)


def _store(settings: Settings) -> list[Check]:
    """The store of originals (the ``store`` setting), where one is set: a folder that
    exists (gristmill never creates it: an unmounted NAS must not fill its mount point)
    and can be written; an ``s3://`` prefix checked as an S3 source is."""
    if settings.store is None:
        return []
    if is_url(settings.store):
        found = _s3(settings, [settings.store], {settings.store})
        return [Check("store", check.level, f"store {check.detail}", check.facts)
                for check in found]
    folder = Path(settings.store).expanduser().absolute()
    facts = {"store": str(folder)}
    try:
        if not folder.is_dir():
            return [Check("store", "error", f"the store folder {folder} does not exist (an "
                          "unmounted share?): mount it or create it, or correct the store "
                          "setting", facts)]
    except OSError as exc:
        return [Check("store", "error", f"the store folder {folder} cannot be looked at: "
                      f"{exc.strerror}. Check the permissions of the folders above it",
                      facts)]
    if not os.access(folder, os.W_OK | os.X_OK, effective_ids=True):
        return [Check("store", "error", f"{_user()} cannot write to the store folder "
                      f"{folder}: sudo chown -R {_user()} {shlex.quote(str(folder))}", facts)]
    free = shutil.disk_usage(folder).free
    return [Check("store", "ok", f"originals are kept in {folder} ({free / 2**30:.1f} GiB "
                  "free)", facts)]


# A filesystem that takes longer than this to say whether a root exists is reported as
# not answering; its listing goes on in a daemon thread, abandoned.
_FSSPEC_TIMEOUT = 10.0


def _fsspec(urls: list[str], required: set[str]) -> list[Check]:
    """The roots of other filesystems (ftp://, sftp://, gcs://... through fsspec): the
    scheme known and its package installed, then the root looked up once (the lookup an
    ingest starts with), in a thread given ``_FSSPEC_TIMEOUT`` seconds."""
    import threading

    from gristmill.sources.base import open_source

    checks: list[Check] = []
    for url in urls:
        answer: list[BaseException | str] = []

        def look(url: str = url, answer: list[BaseException | str] = answer) -> None:
            try:
                answer.append(open_source(url).canonical_root())
            except BaseException as exc:  # reported below, in the checklist's thread
                answer.append(exc)

        try:
            open_source(url)  # the scheme and its package: no network
        except GristmillError as exc:
            checks.append(Check("fsspec", _level(url in required), str(exc), {"root": url}))
            continue
        looking = threading.Thread(target=look, name="gristmill-doctor-fsspec", daemon=True)
        looking.start()
        looking.join(_FSSPEC_TIMEOUT)
        if not answer:
            checks.append(Check("fsspec", _level(url in required), f"{url}: no answer "
                                f"within {_FSSPEC_TIMEOUT:.0f} s: check the server and "
                                "the network", {"root": url}))
        elif isinstance(answer[0], BaseException):
            checks.append(Check("fsspec", _level(url in required), str(answer[0]),
                                {"root": url}))
        else:
            checks.append(Check("fsspec", "ok", f"{answer[0]} can be read", {"root": url}))
    return checks


_GDRIVE_EXTRA = "pip install 'gristmill[gdrive]'"
_GDRIVE_FILE = ("set gdrive_credentials_file (GRISTMILL_GDRIVE_CREDENTIALS_FILE) to a "
                "service-account key or an authorized-user JSON file")


def _gdrive(settings: Settings, urls: list[str], required: set[str]) -> list[Check]:
    """The Drive sources: the client installed, each root an id, the credentials file
    there, private, and loadable as ingest loads it. Nothing is sent to Google: a
    checklist must work offline, and a revoked token shows at the first listing."""
    if not urls:
        return []
    worst = _level(any(url in required for url in urls))
    named = ", ".join(urls)
    try:
        from gristmill.sources.gdrive import load_credentials, parse_root
    except ImportError as exc:  # the module imports the Drive client at its top
        return [Check("gdrive", worst, f"the Google Drive client is not installed "
                      f"({exc.name or exc}), which reading {named} needs: {_GDRIVE_EXTRA}")]
    checks: list[Check] = []
    for url in urls:
        try:
            parse_root(url)
        except GristmillError as exc:
            checks.append(Check("gdrive", _level(url in required), str(exc), {"root": url}))
    given = settings.gdrive_credentials_file
    if given is None:
        return [*checks, Check("gdrive", worst, f"no Google credentials to read {named}: "
                               f"{_GDRIVE_FILE}")]
    path = given.expanduser().absolute()
    facts: dict[str, Any] = {"credentials_file": str(path)}
    if path.exists() and not path.is_file():  # a folder, or a FIFO that would hang a read
        return [*checks, Check("gdrive", worst, f"Google credentials {path} is not a file: "
                               f"{_GDRIVE_FILE}", facts)]
    try:
        loaded = load_credentials(path, settings.gdrive_token_uri)
    except GristmillError as exc:  # missing, unreadable, not JSON, another kind, a bad key
        return [*checks, Check("gdrive", worst, str(exc), facts)]
    who = getattr(loaded, "service_account_email", None)
    kind = (f"service account {who}" if who else
            f"authorized user (OAuth client {getattr(loaded, 'client_id', None)})")
    facts["kind"] = "service_account" if who else "authorized_user"
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        # As .pgpass and ssh keys: a key others can read lets them read the Drive.
        return [*checks, Check("gdrive", "warning", f"Google credentials {path} ({kind}) "
                               f"can be read by other users (mode {mode:04o}): chmod 600 "
                               f"{shlex.quote(str(path))}", facts)]
    return [*checks, Check("gdrive", "ok", f"{named}: credentials {path} load ({kind}; "
                           "not tried against Google: the first listing does that)", facts)]


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
