"""What every ``gristmill`` command shares: the app, its error handling, the consoles,
the common options, and opening the knowledge base.

Every command takes ``--home`` (or ``GRISTMILL_HOME``), ``--embedder`` (or
``GRISTMILL_EMBEDDER``) and ``--database`` (or ``GRISTMILL_DATABASE_URL``); ``--json``
gives machine-readable output."""

from __future__ import annotations

import errno
import json
import logging
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.text import Text
from typer.exceptions import TyperException

from gristmill.errors import GristmillError
from gristmill.runtime.fork_server import start_fork_server

if TYPE_CHECKING:
    # typer vendors click; a group's invoke gets that click's Context, which
    # typer.Context extends (typer does not re-export the base).
    from typer._click import Context as ClickContext

    from gristmill.knowledge_base import KnowledgeBase

log = logging.getLogger(__name__)


class _Commands(typer.core.TyperGroup):
    """The app's commands (sub-apps included), with the one place where what they raise
    becomes a line on stderr and an exit status: a user's mistake (a bad setting, a
    home that cannot be written, a missing knowledge base) or the machine's (an OS
    error) is one sentence saying what to do; anything else is a bug, whose traceback
    goes to the log. No traceback reaches the terminal while the log can be written."""

    def invoke(self, ctx: ClickContext) -> Any:
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, TyperException):  # usage errors, --help, exits
            raise
        except GristmillError as exc:
            _log_traceback(exc, logging.INFO)  # the user's to fix: the line says how
            _fail(exc)
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                raise  # output piped into `head`: click ends quietly
            where = _log_traceback(exc)
            what = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            _say(err, ("error:", "red"), f" {what}" + (f" (details in {where})" if where
                                                         else ""))
            raise typer.Exit(1) from None
        except Exception as exc:
            where = _log_traceback(exc)
            first = (str(exc).strip().splitlines() or [""])[0]
            _say(err, ("error:", "red"), f" unexpected {type(exc).__name__}: {first}. This "
                 "is a bug in gristmill; please report it with the traceback, which is in "
                 f"{where or 'the lines below'}.")
            if where is None:  # no log to hold it: the report needs it all the same
                traceback.print_exc(file=sys.stderr)
            raise typer.Exit(1) from None


def _log_traceback(exc: BaseException, level: int = logging.ERROR) -> str | None:
    """Log ``exc`` with its traceback; the log file's path, or None when no log file is
    open (the knowledge base was not opened, or its home cannot be written: then
    nothing is logged, lest Python's last-resort handler print it on stderr)."""
    files = [getattr(h, "baseFilename", None) for h in logging.getLogger("gristmill").handlers]
    where = next((f for f in files if f), None)
    if where is not None:
        log.log(level, "command failed: %s: %s", type(exc).__name__, exc, exc_info=exc)
    return where


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("gristmill")
        except PackageNotFoundError:  # run from a source tree that is not installed
            from gristmill import __version__ as number
        sys.stdout.write(f"gristmill {number}\n")
        raise typer.Exit()


app = typer.Typer(
    name="gristmill",
    cls=_Commands,
    help="Turn a pile of files into a searchable knowledge base.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Help texts are plain: "[default: all cores]" must not be read as Rich markup.
    rich_markup_mode=None,
)
# One line per message: greppable when piped. No emoji codes: `:smile:` in a file name
# is text (markup is kept out of user text by _say).
out = Console(soft_wrap=True, emoji=False)
err = Console(stderr=True, soft_wrap=True, emoji=False)

Home = Annotated[Path | None, typer.Option(
    "--home", help="Knowledge-base folder [env: GRISTMILL_HOME; default ./.gristmill].",
    show_default=False)]
DatabaseOpt = Annotated[str | None, typer.Option(
    "--database", help="postgresql://user:password@host/dbname: the catalog in PostgreSQL "
    "[env: GRISTMILL_DATABASE_URL; default: the SQLite file in the home folder].",
    show_default=False)]
# Typer reads no envvar for it: Settings.load looks at GRISTMILL_ENV_FILE itself, below
# the flag, so that the library and the CLI find the same file.
EnvFileOpt = Annotated[Path | None, typer.Option(
    "--env-file", help="Env file to read GRISTMILL_* settings from [env: "
    "GRISTMILL_ENV_FILE; default: ./.env, else HOME/.env].", show_default=False)]
EmbedderOpt = Annotated[str | None, typer.Option(
    "--embedder", help="minilm (default) or none (keyword-only) [env: GRISTMILL_EMBEDDER].",
    show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
# Shared by ingest and watch.
TargetCollection = Annotated[str, typer.Option("--collection", "-c",
                                               help="Collection to put the items in.")]
IncludeOpt = Annotated[list[str] | None, typer.Option(
    "--include", help="Only files matching this glob (repeatable).")]
ExcludeOpt = Annotated[list[str] | None, typer.Option(
    "--exclude", help="Skip files matching this glob (repeatable).")]
WorkersOpt = Annotated[int | None, typer.Option(
    "--workers", min=1, help="Worker processes [default: all cores].")]
CollectionOpt = Annotated[str | None, typer.Option(
    "--collection", "-c", help="Limit to one collection.", show_default=False)]


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_version, is_eager=True,
        help="Print gristmill's version and exit.")] = False) -> None:
    """Turn a pile of files into a searchable knowledge base."""


@contextmanager
def _kb(home: Path | None, embedder: str | None, database: str | None, *,
        create: bool = False, **settings: Any) -> Iterator[KnowledgeBase]:
    """Open the knowledge base for one command, and close it after. Only commands that
    write (``create=True``: ingest, watch) make a home where there is none; the others
    say that there is no knowledge base there. Errors become one line in ``_Commands``."""
    # Imported here, not at the top: the library is most of the CLI's start-up time
    # (~0.2 s), and commands that run workers start their fork server first (see
    # _start_workers_early) so that the two imports run side by side.
    from gristmill.knowledge_base import KnowledgeBase

    kb = KnowledgeBase.open(home, create=create, embedder=embedder, database_url=database,
                            **settings)
    try:
        yield kb
    finally:
        kb.close()


def _start_workers_early() -> None:
    """Start the fork server that workers are made from, before the library is imported:
    its own imports (~0.1 s of a core) then run beside this process's instead of after
    them, and the first file reaches a worker that much sooner."""
    start_fork_server()


def _say(console: Console, *parts: str | tuple[str, str]) -> None:
    """Print one line of ``parts``, each taken literally (a ``(text, style)`` part is
    styled): file names, reasons, queries, collections and settings are never read as
    Rich markup, which a file named ``x[/y]z.pdf`` would break and ``[red]x`` restyle."""
    console.print(Text.assemble(*parts), highlight=False)


def _fail(exc: GristmillError) -> None:
    _say(err, ("error:", "red"), f" {exc}")
    raise typer.Exit(exc.exit_code)  # 2: the user's to fix (ConfigError); 1: otherwise


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")

