"""``gristmill audio scan``: each user's recordings scanned for sound events, one job each.

::

    report = kb.scan_audio("/srv/uploads", per_user=True, clips=True)
    for user in report.users:
        print(user.user, user.events, user.rss_before, user.rss_after)

Users are scanned one after another, each as a job of its own (:func:`audio_job_spec`)
with its own worker pool: the workers hold the model, and the pool ends with the user's
job, so what the model and the decoders took goes back to the system before the next
user starts. The memory of the driver and its pool (:func:`~gristmill.runtime.progress.tree_rss`)
is measured before and after each user, and reported. A user's recordings are scanned
side by side, ``workers`` at a time; each recording is an item of the collection (default
``audio``), so leases, statuses, retries, resume after ``kill -9`` and ``gristmill jobs``
hold as for documents.

One scan runs per home at a time (:func:`scan_lock`, an ``flock`` that dies with its
process): a second one raises :class:`~gristmill.errors.ScanBusy` naming the first one's
pid, or waits for it (``wait=True``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import importlib.util
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from gristmill.audio.recording import AUDIO_SUFFIXES, AudioOptions, is_clip_name
from gristmill.catalog.audio import AudioStore
from gristmill.catalog.jobs import JobSpec
from gristmill.errors import ConfigError, ModelError, ScanBusy, SourceError
from gristmill.runtime.progress import Progress, tree_rss
from gristmill.sources.roots import check_root, real_roots

if TYPE_CHECKING:
    from gristmill.catalog import CatalogDatabase, DiscoveryCounts
    from gristmill.config import Settings

__all__ = [
    "AUDIO_PATTERNS",
    "MAX_SINCE",
    "AudioScanParts",
    "AudioScanReport",
    "UserScan",
    "audio_job_spec",
    "parse_since",
    "plan_users",
    "scan_audio",
    "scan_lock",
    "sweep_clips",
]


class JobReport(Protocol):
    """What a scan reads of one user's job when it ends (an ``IngestReport`` is one)."""

    @property
    def job_id(self) -> int: ...
    @property
    def state(self) -> str: ...
    @property
    def processed(self) -> int: ...
    @property
    def discovered(self) -> DiscoveryCounts: ...
    @property
    def progress(self) -> dict[str, Any]: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def stopped(self) -> bool: ...


class AudioScanParts(Protocol):
    """What a scan needs of a knowledge base (a :class:`gristmill.KnowledgeBase` is
    one): its settings, its catalog, and a job run to its end."""

    @property
    def settings(self) -> Settings: ...
    @property
    def db(self) -> CatalogDatabase: ...
    def run_job(self, spec: JobSpec, *, embed: bool = ...,
                on_progress: Callable[[Progress], None] | None = ...) -> JobReport: ...


def _any_case(pattern: str) -> str:
    """A glob matching ``pattern`` in any letter case (``*.WAV`` as ``*.wav``)."""
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in pattern)


#: The include patterns of an audio scan's discovery: the recordings' suffixes.
AUDIO_PATTERNS = tuple(_any_case(f"*{suffix}") for suffix in AUDIO_SUFFIXES)


@dataclass(slots=True)
class UserScan:
    """One user's job: what it scanned, found, and the memory before and after."""

    user: str
    root: str
    job_id: int
    state: str
    recordings: int  # scanned (or failed, skipped) by this run
    unchanged: int  # found unchanged, scanned before with this model and settings
    #: Unchanged files scanned again: an earlier scan used another model or settings.
    rescanned: int
    failed: int
    skipped: int
    removed: int  # recordings gone from the folder (their events and clips with them)
    audio_seconds: float
    events: int  # found by this run
    seconds: float
    #: Resident memory of this process and its workers (bytes) before the user's job,
    #: after it (its pool gone), and the most seen while it ran.
    rss_before: int
    rss_after: int
    rss_peak: int
    #: Why the job paused itself (the model or a class asked for is wrong), if it did.
    reason: str | None = None
    stopped: bool = False  # by a signal: the scan stops with this user

    @property
    def realtime_factor(self) -> float:
        """Seconds of audio scanned per second of the user's job."""
        return self.audio_seconds / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {**asdict(self), "audio_seconds": round(self.audio_seconds, 3),
                "seconds": round(self.seconds, 3),
                "realtime_factor": round(self.realtime_factor, 1)}


@dataclass(slots=True)
class AudioScanReport:
    """What one ``audio scan`` did, user by user."""

    collection: str
    model: str
    model_sha256: str
    users: list[UserScan] = field(default_factory=list)
    seconds: float = 0.0
    waited: float = 0.0  # seconds spent waiting for another scan to end (``wait``)

    @property
    def state(self) -> str:
        """``succeeded`` when every user's job did, else the first other state."""
        return next((u.state for u in self.users if u.state != "succeeded"), "succeeded")

    @property
    def stopped(self) -> bool:
        """Whether a signal stopped the scan before its last user."""
        return any(u.stopped for u in self.users)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``audio scan --json``)."""
        return {"collection": self.collection, "model": self.model,
                "model_sha256": self.model_sha256, "state": self.state,
                "users": [u.to_dict() for u in self.users],
                "recordings": sum(u.recordings for u in self.users),
                "events": sum(u.events for u in self.users),
                "audio_seconds": round(sum(u.audio_seconds for u in self.users), 3),
                "seconds": round(self.seconds, 3), "waited": round(self.waited, 3)}


def plan_users(root: str | Path, *, per_user: bool = False,
               user: str | None = None) -> list[tuple[str, str]]:
    """``(user, folder)`` pairs to scan, in order: each first-level folder of ``root``
    (``per_user``; hidden folders and symlinks left out), or ``root`` as ``user``'s
    folder, or ``root`` as the folder of the user it is named for.

    Raises:
        ConfigError: both ``per_user`` and ``user`` are given.
        SourceError: ``root`` is not a folder.
    """
    if per_user and user is not None:
        raise ConfigError("give --per-user (each folder of ROOT is a user) or --user NAME "
                          "(ROOT is that user's folder), not both")
    folder = os.path.abspath(os.path.expanduser(str(root)))
    if not os.path.isdir(folder):
        raise SourceError(f"{folder} is not a folder of recordings; check the path")
    if not per_user:
        return [(user or os.path.basename(folder.rstrip(os.sep)) or "default", folder)]
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        raise SourceError(f"cannot list {folder}: {exc.strerror or exc}") from None
    return [(entry.name, entry.path) for entry in entries
            if not entry.name.startswith(".") and entry.is_dir(follow_symlinks=False)]


def audio_job_spec(options: AudioOptions, collection: str, folder: str) -> JobSpec:
    """The job that scans ``folder``'s recordings with ``options`` (one user's)."""
    return JobSpec(collection, (folder,), AUDIO_PATTERNS, kind="audio",
                   audio=options.to_spec())


#: Seconds since the epoch past which a time no longer fits the catalog's nanoseconds
#: (a signed 64-bit integer): the year 2262.
MAX_SINCE = (2**63 - 1) / 1e9


def parse_since(text: str) -> float:
    """``2024-05-01`` or ``2024-05-01T18:30`` (local time, unless it has an offset) as
    seconds since the epoch.

    Raises:
        ConfigError: not a date.
    """
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(f"--since {text!r} is not a date: write it as 2024-05-01 or "
                          "2024-05-01T18:30") from None
    seconds = when.timestamp()  # a naive time is taken as local time
    if not 0 <= seconds < MAX_SINCE:
        raise ConfigError(f"--since {text!r} is out of range: give a date between 1970 "
                          "and 2262")
    return seconds


@contextlib.contextmanager
def scan_lock(home: Path, *, wait: bool = False,
              on_wait: Callable[[int | None], None] | None = None) -> Iterator[float]:
    """Hold ``<home>/run/audio-scan.lock`` (yields the seconds waited for it).

    An ``flock``: the kernel drops it when its process ends, ``kill -9`` included, so
    a crashed scan never blocks the next one. The holder's pid is written in the file
    for the message of the scan that finds it taken.

    Raises:
        ScanBusy: another process holds it and ``wait`` is False.
    """
    path = Path(home) / "run" / "audio-scan.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    started = time.monotonic()
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            if not wait:
                raise ScanBusy(holder, str(path)) from None
            if on_wait is not None:
                on_wait(holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield time.monotonic() - started
    finally:
        os.close(fd)  # releases the lock (the pid left behind names no holder)


def scan_audio(kb: AudioScanParts, root: str | Path, *, per_user: bool = False,
               user: str | None = None, collection: str = "audio", clips: bool = False,
               since: float | None = None, wait: bool = False,
               on_progress: Callable[[Progress], None] | None = None,
               on_user: Callable[[UserScan], None] | None = None,
               on_wait: Callable[[int | None], None] | None = None) -> AudioScanReport:
    """Scan the recordings under ``root`` for sound events, one user after another
    (see the module docstring and :func:`plan_users`).

    ``since`` (seconds since the epoch): only recordings modified then or later are
    looked at; older ones keep their events. ``on_user`` gets each user's figures as
    soon as the user is done; ``on_wait`` is called once when another scan holds the
    lock and ``wait`` waits for it.

    Raises:
        ModelError: no audio model is configured or its file cannot be read; the model
            or a class asked for proved wrong (the user's job is left paused).
        ScanBusy: another scan of this home is running (and ``wait`` is False).
        SourceError: ``root`` is not a readable folder, or lies outside the source
            roots.
    """
    if not collection or not collection.strip():
        raise ConfigError("the collection name must not be empty")
    if importlib.util.find_spec("av") is None:  # else every recording would fail alike
        raise ConfigError("audio scans need PyAV: pip install 'gristmill[audio]'")
    started = time.monotonic()
    users = plan_users(root, per_user=per_user, user=user)
    allowed = real_roots(kb.settings.source_roots)
    for _, folder in users:
        check_root(folder, allowed)
    base = AudioOptions.from_settings(kb.settings, users[0][0] if users else "default",
                                      clips=clips, since=since)
    report = AudioScanReport(collection, base.model, base.model_sha256)
    with scan_lock(kb.settings.home, wait=wait, on_wait=on_wait) as waited:
        report.waited = waited
        for name, folder in users:
            options = _for_user(base, name, kb.settings)
            scanned = _scan_user(kb, options, collection, folder, on_progress)
            report.users.append(scanned)
            if on_user is not None:
                on_user(scanned)
            if scanned.reason is not None:
                raise ModelError(f"the scan of {name}'s recordings stopped (job "
                                 f"{scanned.job_id} is paused): {scanned.reason}; fix the "
                                 f"setting, then run the scan again")
            if scanned.state != "succeeded":
                break  # paused, cancelled or stopped: the next users wait for a re-run
    report.seconds = time.monotonic() - started
    return report


def _for_user(base: AudioOptions, user: str, settings: Settings) -> AudioOptions:
    """``base`` for another user (its clips in that user's folder): the model file is
    not read again for its sha256."""
    return AudioOptions.from_spec({**base.to_spec(), "user": user}, settings.home)


def _scan_user(kb: AudioScanParts, options: AudioOptions, collection: str, folder: str,
               on_progress: Callable[[Progress], None] | None) -> UserScan:
    """One user's job, with the memory of the process tree before and after it."""
    peak = 0

    def progress(snapshot: Progress) -> None:
        nonlocal peak
        peak = max(peak, snapshot.rss_bytes)
        if on_progress is not None:
            on_progress(snapshot)

    before = tree_rss()
    started = time.monotonic()
    report = kb.run_job(audio_job_spec(options, collection, folder), embed=False,
                        on_progress=progress)
    seconds = time.monotonic() - started
    # Measured once the user's pool is gone: what stays is what the next user starts
    # from.
    after = tree_rss()
    sweep_clips(kb, options)
    audio = report.progress.get("audio") or {}
    return UserScan(
        user=options.user, root=folder, job_id=report.job_id, state=report.state,
        recordings=report.processed,
        unchanged=max(0, report.discovered.unchanged - report.discovered.outdated),
        rescanned=report.discovered.outdated,
        failed=report.progress["extract"]["failed"],
        skipped=report.progress["extract"]["skipped"], removed=report.discovered.removed,
        audio_seconds=float(audio.get("audio_seconds", 0.0)),
        events=int(audio.get("events", 0)), seconds=seconds, rss_before=before,
        rss_after=after, rss_peak=max(peak, before, after),
        reason=report.reason, stopped=report.stopped)


def sweep_clips(kb: AudioScanParts, options: AudioOptions) -> None:
    """Delete the clip files in the user's folder that no stored event names: those of
    recordings deleted from the source, those a crash left between writing a clip and
    committing its event, and half-written ones (``.NAME.xxxx``) of a killed worker. Run
    under the scan lock, with no worker running."""
    folder = Path(kb.settings.home).absolute() / "clips" / options.user
    if not folder.is_dir():
        return
    named = AudioStore(kb.db).clips(options.user)
    for entry in os.scandir(folder):
        if not entry.is_file(follow_symlinks=False):
            continue
        unfinished = entry.name.startswith(".") and is_clip_name(
            entry.name[1:].rpartition(".")[0])
        if unfinished or (is_clip_name(entry.name)
                          and os.path.abspath(entry.path) not in named):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _holder(fd: int) -> int | None:
    """The pid the lock's holder wrote into the lock file, if it did."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
