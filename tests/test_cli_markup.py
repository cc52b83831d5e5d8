"""What users name things (files, folders, collections, homes, queries) is printed by
the CLI as it is: never read as Rich markup (``x[/y]z.pdf`` once crashed ``gristmill
errors``; ``[bold red]evil.pdf`` was restyled) nor as emoji codes."""

from __future__ import annotations

import re
from pathlib import Path

from process_tools import env_for, gristmill

COLLECTION = "[red]birds[/y]"
BROKEN = ("x[/y]z.pdf", "[bold red]evil.pdf")
GOOD = "[italic]good.txt"
TEXT = "the osprey [/bold] [red]dives[/red] :smile: here"
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _corpus(tmp_path: Path) -> Path:
    src = tmp_path / "[bold]src"
    (src / "x[").mkdir(parents=True)  # x[/y]z.pdf: the file y]z.pdf in the folder x[
    for name in BROKEN:
        (src / name).write_bytes(b"%PDF-1.4 broken")
    (src / GOOD).write_text(TEXT + "\n", encoding="utf-8")
    return src


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    # Wide enough that no table cell or failure line is cut.
    return {**env_for(tmp_path / "[red]home"), "COLUMNS": "1000", **extra}


def _run(*args: str, env: dict[str, str], code: int | None = 0) -> str:
    """stdout and stderr of ``gristmill ARGS`` (exit status ``code``, unless None),
    without colour codes."""
    done = gristmill(*args, env=env, timeout=120)
    output = _ANSI.sub("", done.stdout + done.stderr)
    assert "Traceback" not in output, output
    assert code is None or done.returncode == code, output
    return output


def test_ingest_status_errors_search_and_jobs_print_names_literally(tmp_path: Path) -> None:
    """Every command prints file, folder and collection names, reasons and text as
    they are, and none crashes on them."""
    src = _corpus(tmp_path)
    env = _env(tmp_path)
    summary = _run("ingest", str(src), "--collection", COLLECTION, env=env)
    assert f"Collection {COLLECTION}: discovered 3" in summary
    assert COLLECTION in _run("status", env=env)

    errors = _run("errors", env=env)
    for name in BROKEN:
        assert f"{src}/{name}: " in errors

    found = _run("search", "osprey", env=env)
    assert f"{src}/{GOOD}" in found and TEXT in found
    _run("search", "[/y] [bold]", env=env)  # a query of markup is only text
    failed = _run("search", "osprey", "--mode", "[bold]x[/y]", env=env, code=2)
    assert "[bold]x[/y]" in failed

    jobs = _run("jobs", "list", env=env)
    assert COLLECTION in jobs and str(src) in jobs
    shown = _run("jobs", "show", "1", env=env)
    assert COLLECTION in shown and str(src) in shown
    assert str(tmp_path / "[red]home") in _run("doctor", env=env, code=None)


def test_live_progress_shows_failing_names_literally(tmp_path: Path) -> None:
    """The live progress view (on a terminal) lists recent failures by their names."""
    src = _corpus(tmp_path)
    env = _env(tmp_path, FORCE_COLOR="1", TTY_COMPATIBLE="1")
    shown = _run("ingest", str(src), "--collection", COLLECTION, env=env)
    for name in BROKEN:
        assert f"failed: {src}/{name}: " in shown


def test_serve_refusal_names_the_tokens_table(tmp_path: Path) -> None:
    """Refusing to listen beyond loopback without a token, serve tells the user to add
    ``[[api_tokens]]`` to gristmill.toml, brackets and all."""
    refusal = _run("serve", "--host", "0.0.0.0", "--port", "0", env=_env(tmp_path), code=2)
    assert "add [[api_tokens]] to gristmill.toml" in " ".join(refusal.split())
