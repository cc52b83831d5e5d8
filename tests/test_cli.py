"""The CLI contract that scripts depend on (DESIGN.md, "Contract")."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from backends import ON_POSTGRES
from process_tools import env_for, gristmill, gristmill_json

STATUSES = {"pending", "processing", "extracted", "indexed", "skipped", "failed"}


def _pile(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("mike the lighthouse keeper\n", encoding="utf-8")
    (src / "b.md").write_text("# Harbour\n\nnovember boats in the harbour\n", encoding="utf-8")
    (src / "c.pdf").write_bytes(b"%PDF-1.4 broken")
    (src / "d.xyz").write_text("unknown type", encoding="utf-8")
    return src


def test_ingest_search_status_errors_json_shapes(tmp_path: Path) -> None:
    """--json output has the documented keys for ingest, search, status and errors."""
    env = env_for(tmp_path / "home")
    src = _pile(tmp_path)
    report = gristmill_json("ingest", str(src), "--collection", "docs", env=env)
    assert report["collection"] == "docs" and report["discovered"]["new"] == 4

    hits = gristmill_json("search", "lighthouse", env=env)
    assert hits and {"source", "score", "text"} <= set(hits[0])
    assert hits[0]["source"].endswith("a.txt") and isinstance(hits[0]["score"], float)

    status = gristmill_json("status", env=env)
    assert set(status["items"]) == STATUSES
    assert status["items"]["indexed"] == 2 and status["items"]["failed"] == 1
    assert status["items"]["skipped"] == 1 and isinstance(status["chunks"], int)
    assert set(status["collections"]["docs"]["items"]) == STATUSES

    groups = gristmill_json("errors", env=env)
    assert all({"pattern", "count", "examples"} <= set(g) for g in groups)
    assert {Path(e["source"]).name for g in groups for e in g["examples"]} == {"c.pdf",
                                                                              "d.xyz"}


def test_human_output_and_exit_codes(tmp_path: Path) -> None:
    """Plain output names what happened; bad input is exit 0, a bad path exit 1,
    a bad setting exit 2."""
    env = env_for(tmp_path / "home")
    src = _pile(tmp_path)
    done = gristmill("ingest", str(src), env=env)
    assert done.returncode == 0
    assert "2 indexed" in done.stdout and "1 failed" in done.stdout
    assert "gristmill errors" in done.stdout

    missing = gristmill("ingest", str(tmp_path / "missing"), env=env)
    assert missing.returncode == 1 and "does not exist" in missing.stderr

    bad = gristmill("status", env={**env, "GRISTMILL_WORKERS": "zero"})
    assert bad.returncode == 2 and "workers" in bad.stderr and "Traceback" not in bad.stderr

    found = gristmill("search", "harbour boats", "--mode", "keyword", env=env)
    assert found.returncode == 0 and "b.md" in found.stdout


def test_dry_run_changes_nothing(tmp_path: Path) -> None:
    """--dry-run reports new files without recording or processing them."""
    env = env_for(tmp_path / "home")
    src = _pile(tmp_path)
    report = gristmill_json("ingest", str(src), "--dry-run", env=env)
    assert report["dry_run"] and report["discovered"]["new"] == 4
    assert sum(gristmill_json("status", env=env)["items"].values()) == 0


def test_reset_failed_and_retry_failed(tmp_path: Path) -> None:
    """Items that failed for a fixable reason (a timeout set too low) are tried again by
    `reset --failed` or `ingest --retry-failed`, without touching the files."""
    env = env_for(tmp_path / "home")
    src = tmp_path / "src"
    src.mkdir()
    # About 20 MB of prose: takes over a second to chunk, far over the hasty timeout.
    paragraph = "oscar waits patiently for the ferry to arrive at noon. " * 20 + "\n\n"
    (src / "a.txt").write_text(paragraph * 20_000, encoding="utf-8")
    hasty = {**env, "GRISTMILL_ITEM_TIMEOUT": "0.05"}
    first = gristmill_json("ingest", str(src), env=hasty)
    assert first["items"]["failed"] == 1
    assert "timed out" in gristmill_json("errors", env=env)[0]["pattern"]

    assert gristmill_json("ingest", str(src), env=env)["items"]["failed"] == 1  # not retried
    done = gristmill("reset", "--failed", env=env)
    assert done.returncode == 0 and "Re-queued 1" in done.stdout
    assert gristmill_json("ingest", str(src), env=env)["items"]["indexed"] == 1

    gristmill_json("ingest", str(src), "--collection", "other", env=hasty)
    again = gristmill_json("ingest", str(src), "--collection", "other", "--retry-failed",
                           env=env)
    assert again["items"]["indexed"] == 1


@pytest.mark.skipif(shutil.which("soffice") is None and not os.environ.get("CI"),
                    reason="LibreOffice is not installed (CI installs it)")
def test_reset_skipped_after_installing_a_missing_tool(tmp_path: Path) -> None:
    """An RTF skipped because LibreOffice was missing is read after `reset --skipped`."""
    env = env_for(tmp_path / "home")
    src = tmp_path / "src"
    src.mkdir()
    (src / "memo.rtf").write_text(r"{\rtf1\ansi {\b Tidal} mill memo about weirs.}\par}",
                                  encoding="ascii")
    without = {**env, "PATH": str(tmp_path / "no-tools")}
    first = gristmill_json("ingest", str(src), env=without)
    assert first["items"]["skipped"] == 1
    assert "LibreOffice is not installed" in gristmill_json("errors", env=env)[0]["pattern"]
    done = gristmill("reset", "--skipped", env=env)
    assert done.returncode == 0 and "Re-queued 1 skipped" in done.stdout
    assert gristmill_json("ingest", str(src), env=env)["items"]["indexed"] == 1
    hits = gristmill_json("search", "weirs", "--mode", "keyword", env=env)
    assert [Path(h["source"]).name for h in hits] == ["memo.rtf"]


def test_help_lists_the_commands_with_examples() -> None:
    """`gristmill --help` lists every command, and each command's help has an example."""
    env = env_for(Path("unused"))
    top = gristmill("--help", env=env)
    for command in ("ingest", "search", "status", "errors", "reset", "doctor", "jobs"):
        assert command in top.stdout
        assert "Example:" in gristmill(command, "--help", env=env).stdout


def test_doctor_names_what_is_missing_and_fails_only_on_required_parts(tmp_path: Path) -> None:
    """Without Tesseract or LibreOffice on PATH, doctor warns and names the packages but
    exits 0; a model file that is not the pinned one is an error (exit 1)."""
    env = {**env_for(tmp_path / "home", embedder="minilm"), "PATH": str(tmp_path / "none")}
    done = gristmill("doctor", "--json", env=env)
    assert done.returncode == 0, done.stderr
    checks = {c["name"]: c for c in json.loads(done.stdout)}
    levels = [c["level"] for c in checks.values()]
    if ON_POSTGRES:  # the server's check: a warning where it lacks pgvector
        assert list(checks)[1] == "postgresql" and levels[1] in ("ok", "warning")
        assert "PostgreSQL" in checks["postgresql"]["detail"]
        levels[1] = "ok"
    # The move checklist after them (settings, python, services...): all fine here.
    assert levels[:5] == ["ok", "ok", "ok", "warning", "warning"]
    assert set(levels[5:]) == {"ok"}, checks
    assert "apt-get install tesseract-ocr tesseract-ocr-eng" in checks["ocr"]["detail"]
    assert "libreoffice-writer-nogui" in checks["libreoffice"]["detail"]
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"not a model")
    broken = gristmill("doctor", env={**env, "GRISTMILL_MODEL_PATH": str(fake)})
    assert broken.returncode == 1
    assert "error  embedder:" in broken.stdout and "not the pinned" in broken.stdout


@pytest.mark.skipif(shutil.which("tesseract") is None and not os.environ.get("CI"),
                    reason="Tesseract is not installed (CI installs it)")
def test_doctor_checks_the_ocr_languages_asked_for(tmp_path: Path) -> None:
    env = env_for(tmp_path / "home")
    ok = {c["name"]: c for c in gristmill_json("doctor", "--ocr-lang", "eng+deu", env=env)}
    assert ok["ocr"]["level"] == "ok" and "eng+deu" in ok["ocr"]["detail"]
    missing = {c["name"]: c for c in gristmill_json("doctor", "--ocr-lang", "zzz", env=env)}
    assert missing["ocr"]["level"] == "warning"
    assert "apt-get install tesseract-ocr-zzz" in missing["ocr"]["detail"]


def test_every_command_reads_the_env_file_it_is_given(tmp_path: Path) -> None:
    """--env-file on ingest, search, status, errors and jobs: the home (and the rest)
    come from the file, not from the environment or the current directory."""
    home = tmp_path / "moved-home"
    env = env_for(home)
    del env["GRISTMILL_HOME"]  # only the file names the home
    env_file = tmp_path / "gristmill.env"
    env_file.write_text(f"GRISTMILL_HOME={home}\nGRISTMILL_EMBEDDER=none\n", encoding="utf-8")
    src = _pile(tmp_path)
    flag = ("--env-file", str(env_file))
    report = gristmill_json("ingest", str(src), *flag, env=env)
    assert report["discovered"]["new"] == 4
    assert (home / "logs").is_dir()
    hits = gristmill_json("search", "lighthouse", *flag, env=env)
    assert hits[0]["source"].endswith("a.txt")
    assert gristmill_json("status", *flag, env=env)["items"]["indexed"] == 2
    assert gristmill_json("errors", *flag, env=env)
    assert gristmill_json("jobs", "list", *flag, env=env)[0]["state"] == "succeeded"
    # A named file that is not there is the user's mistake, said in one line.
    missing = gristmill("status", "--env-file", str(tmp_path / "nope.env"), env=env)
    assert missing.returncode == 2 and "nope.env" in missing.stderr
