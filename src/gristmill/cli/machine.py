"""The commands about the machine a knowledge base runs on: doctor."""

from __future__ import annotations

from typing import Annotated

import typer

from gristmill.cli._shared import (
    DatabaseOpt,
    EmbedderOpt,
    Home,
    JsonOpt,
    _print_json,
    _say,
    app,
    out,
)


@app.command()
def doctor(
    ocr_lang: Annotated[str | None, typer.Option(
        "--ocr-lang", help="OCR languages to check [env: GRISTMILL_OCR_LANG].",
        show_default=False)] = None,
    json_out: JsonOpt = False,
    home: Home = None, database: DatabaseOpt = None,
    embedder: EmbedderOpt = None,
) -> None:
    """Check this machine: home folder, database (SQLite or PostgreSQL), model, OCR,
    LibreOffice.

    Exits 1 when a required part is broken; a missing optional part (OCR, LibreOffice)
    is a warning naming the package to install.

    Example: gristmill doctor --ocr-lang eng+deu
    """
    from gristmill.config import Settings
    from gristmill.ops.doctor import run_checks

    settings = Settings.load(home=home, embedder=embedder, database_url=database,
                             ocr_lang=ocr_lang)
    checks = run_checks(settings)
    if json_out:
        _print_json([check.to_dict() for check in checks])
    else:
        colours = {"ok": "green", "warning": "yellow", "error": "red"}
        for check in checks:
            colour = colours[check.level]
            _say(out, (f"{check.level:>7}", colour), f"  {check.name}: {check.detail}")
    if any(check.level == "error" for check in checks):
        raise typer.Exit(1)


