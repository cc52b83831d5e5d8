"""Hostile and broken files get a clear reason on their own item; the run finishes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from docs import make_docx, make_encrypted_pdf, make_html, make_pdf, make_zip_bomb
from process_tools import env_for, gristmill, gristmill_json

GOOD = {
    "good.pdf": "aardvarkpdf",
    "good.docx": "aardvarkdocx",
    "good.html": "aardvarkhtml",
    "good.txt": "aardvarktxt",
}


def _hostile_folder(folder: Path) -> dict[str, str | None]:
    """Write good files and bad ones; returns bad name -> expected words in its reason
    (None: the file may legitimately be indexed, but must not break anything)."""
    folder.mkdir()
    make_pdf(folder / "good.pdf", [f"{GOOD['good.pdf']} on the first page", "second page"])
    make_docx(folder / "good.docx", [f"{GOOD['good.docx']} in a paragraph"])
    make_html(folder / "good.html", "Good page", [f"{GOOD['good.html']} in a paragraph"])
    (folder / "good.txt").write_text(f"{GOOD['good.txt']} in plain text\n", encoding="utf-8")

    whole = make_pdf(folder / "whole.tmp", ["truncated document text " * 20] * 3).read_bytes()
    (folder / "truncated.pdf").write_bytes(whole[: len(whole) // 3])
    os.remove(folder / "whole.tmp")
    (folder / "random.pdf").write_bytes(os.urandom(50_000))
    make_encrypted_pdf(folder / "encrypted.pdf", "secret text behind a password")
    make_zip_bomb(folder / "bomb.docx", megabytes=300)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "invalid-utf8.txt").write_bytes(
        b"valid start aardvarkbadutf \xff\xfe\xc3\x28 more \x80\x81 text\n" * 50)
    (folder / "deep.html").write_text("<div>" * 200_000 + "deep text" + "</div>" * 200_000,
                                      encoding="utf-8")
    (folder / "oneline.txt").write_text("aardvarkoneline " + "x" * 30_000_000,
                                        encoding="utf-8")
    os.mkfifo(folder / "pipe.txt")
    os.symlink("/dev/zero", folder / "zero.txt")
    os.symlink(folder / "loop-b.txt", folder / "loop-a.txt")
    os.symlink(folder / "loop-a.txt", folder / "loop-b.txt")
    return {
        "truncated.pdf": "pdf",
        "random.pdf": "pdf",
        "encrypted.pdf": "password",
        "bomb.docx": "zip bomb",
        "empty.txt": "empty",
        "pipe.txt": "named pipe",
        "zero.txt": "character device",
        "loop-a.txt": "symlink loop",
        "loop-b.txt": "symlink loop",
        "invalid-utf8.txt": None,
        "deep.html": None,
        "oneline.txt": None,
    }


@pytest.mark.slow
def test_hostile_folder_finishes_with_clear_reasons(tmp_path: Path) -> None:
    """Every good file is searchable and every bad one has a one-line reason in `errors`."""
    folder = tmp_path / "pile"
    expected = _hostile_folder(folder)
    env = env_for(tmp_path / "home", item_timeout="120")

    done = gristmill("ingest", str(folder), env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr

    status = gristmill_json("status", env=env)
    assert status["items"]["pending"] == status["items"]["processing"] == 0
    assert status["items"]["extracted"] == 0

    for name, word in GOOD.items():
        hits = gristmill_json("search", word, "--mode", "keyword", env=env)
        assert hits and Path(hits[0]["source"]).name == name, f"{name} is not searchable"

    reasons = {}
    for group in gristmill_json("errors", env=env):
        assert group["count"] >= len(group["examples"])
        for example in group["examples"]:
            reasons[Path(example["source"]).name] = example["error"]
    for name, word in expected.items():
        if word is None:
            continue
        assert name in reasons, f"{name} has no reason in `gristmill errors`"
        reason = reasons[name]
        assert word in reason.lower(), f"{name}: unexpected reason {reason!r}"
        assert "\n" not in reason and "Traceback" not in reason and len(reason) < 300
    # The tolerable ones either ended indexed or have a reason of their own.
    for name in ("invalid-utf8.txt", "deep.html", "oneline.txt"):
        found = gristmill_json("search", "aardvarkbadutf aardvarkoneline deep",
                               "--mode", "keyword", "-k", "50", env=env)
        assert name in reasons or any(Path(h["source"]).name == name for h in found)
