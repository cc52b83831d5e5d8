"""``gristmill serve`` and its API tokens."""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer

from gristmill.cli._shared import (
    DatabaseOpt,
    EmbedderOpt,
    EnvFileOpt,
    Home,
    _say,
    app,
    err,
)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535,
                                      help="Port to listen on (0: any free one).")] = 8000,
    home: Home = None, env_file: EnvFileOpt = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Serve the HTTP API (jobs, live events, search, health) until interrupted.

    Jobs run in processes of their own and survive a restart of the server. Set
    GRISTMILL_SOURCE_ROOTS to the folders jobs may read, and GRISTMILL_API_TOKEN to
    require a bearer token (needed to listen on anything but loopback).

    Example: GRISTMILL_SOURCE_ROOTS=~/docs gristmill serve --port 8000
    """
    from gristmill.api.security import is_loopback
    from gristmill.config import Settings

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             env_file=env_file)
    if not settings.has_api_tokens and not is_loopback(host):
        _say(err, ("error:", "red"), f" refusing to listen on {host} without a token: "
             "anyone who can reach it could read and ingest files. Set GRISTMILL_API_TOKEN "
             "(or add [[api_tokens]] to gristmill.toml: `gristmill token new`), or listen "
             "on 127.0.0.1.")
        raise typer.Exit(2)
    from gristmill.api import create_app
    from gristmill.api.server import serve as serve_api

    api = create_app(settings)
    serve_api(api, host, port, settings)  # uvicorn, with connection limits and timeouts


token_app = typer.Typer(help="API tokens for `gristmill serve`.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("new")
def token_new(
    name: Annotated[str, typer.Option("--name", help="Who will hold it (shown in logs).")],
    scope: Annotated[str, typer.Option(
        "--scope", help="read (GET routes) or admin (also starts and steers jobs).")
    ] = "read",
) -> None:
    """Make a random API token; print it once, and the gristmill.toml entry that lets
    the server accept it (only its SHA-256 is stored).

    Example: gristmill token new --name grafana --scope read
    """
    from gristmill.api.security import new_token

    if scope not in ("read", "admin"):
        _say(err, ("error:", "red"), f" --scope must be read or admin, not {scope!r}")
        raise typer.Exit(2)
    token, digest = new_token()
    err.print("Give this token to its holder; it is not stored anywhere:", highlight=False)
    sys.stdout.write(token + "\n")
    err.print(f"\nAdd to gristmill.toml (restart `gristmill serve` to apply):\n\n"
              f"[[api_tokens]]\nname = {json.dumps(name)}\nsha256 = \"{digest}\"\n"
              f"scope = \"{scope}\"", highlight=False, markup=False)


