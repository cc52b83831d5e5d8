"""Attachments and archive members become items of their own, under their container:
searchable as ``container!/name``, replaced when the container changes, removed with it,
limited against bombs and nesting, and safe under kill -9."""

from __future__ import annotations

import io
import time
import zipfile
from pathlib import Path

from backends import query
from crashes import crash_by_progress
from docs import make_docx, make_eml, make_pdf, make_zip_bomb
from gate import Gate
from gristmill.knowledge_base import KnowledgeBase
from process_tools import env_for, gristmill


def _kb(tmp_path: Path, **settings: object) -> KnowledgeBase:
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    return KnowledgeBase.open(tmp_path / "home", **settings)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _hits(kb: KnowledgeBase, query: str) -> list[tuple[str, int | None]]:
    return sorted((h.source.rsplit("/src/", 1)[-1], h.page)
                  for h in kb.search(query, mode="keyword", k=50))


def _statuses(kb: KnowledgeBase) -> dict[str, str]:
    rows = kb.catalog.db.conn.execute("SELECT source, status FROM items").fetchall()
    return {source.rsplit("/src/", 1)[-1]: status for source, status in rows}


def test_zip_members_are_items_with_their_own_provenance(tmp_path: Path) -> None:
    """Each member of a zip (in folders, of any supported type) is extracted by its own
    extractor and found as archive.zip!/path, with its page numbers."""
    src = tmp_path / "src"
    src.mkdir()
    pdf = make_pdf(tmp_path / "p.pdf", ["cover", "the kestrel hovers"]).read_bytes()
    docx = make_docx(tmp_path / "d.docx", ["Report", "kestrel nests"], headings={0: "Report"})
    _zip(src / "bundle.zip", {"docs/paper.pdf": pdf, "notes/readme.txt": b"kestrel notes",
                              "report.docx": docx.read_bytes(), "tool.exe": b"MZ\x90\x00"})
    with _kb(tmp_path) as kb:
        report = kb.ingest([src])
        assert _hits(kb, "kestrel") == [("bundle.zip!/docs/paper.pdf", 2),
                                        ("bundle.zip!/notes/readme.txt", None),
                                        ("bundle.zip!/report.docx", None)]
        statuses = _statuses(kb)
        assert statuses["bundle.zip"] == "indexed"
        assert statuses["bundle.zip!/tool.exe"] == "skipped"
        assert report.items["indexed"] == 4 and report.items["skipped"] == 1


def test_email_attachments_and_a_zip_inside_them_are_items(tmp_path: Path) -> None:
    """message -> attachment -> archive member: each level is searchable, with the
    message body as the message's own text."""
    src = tmp_path / "src"
    src.mkdir()
    inner = _zip_bytes({"minutes.txt": b"the heron committee met"})
    make_eml(src / "mail.eml", "Weekly", "see the attached plover report",
             attachments={"report.txt": b"plover counts rose", "archive.zip": inner})
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        assert _hits(kb, "plover") == [("mail.eml", None), ("mail.eml!/report.txt", None)]
        assert _hits(kb, "heron") == [("mail.eml!/archive.zip!/minutes.txt", None)]
        assert _statuses(kb)["mail.eml!/archive.zip"] == "indexed"


def test_changed_container_replaces_its_children_and_removal_drops_them(
        tmp_path: Path) -> None:
    """A member gone from a changed zip leaves search; a deleted zip takes every child
    (and grandchild) with it."""
    src = tmp_path / "src"
    src.mkdir()
    archive = _zip(src / "a.zip", {"old.txt": b"lapwing", "kept.txt": b"curlew"})
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        assert _hits(kb, "lapwing") == [("a.zip!/old.txt", None)]
        time.sleep(0.01)
        _zip(archive, {"kept.txt": b"curlew", "new.txt": b"dunlin"})
        kb.ingest([src])
        assert _hits(kb, "lapwing") == []
        assert _hits(kb, "dunlin") == [("a.zip!/new.txt", None)]
        archive.unlink()
        kb.ingest([src])
        assert _statuses(kb) == {}
        assert kb.catalog.db.conn.execute("SELECT count(*) FROM chunks").fetchone()[0] == 0


def test_bombs_encryption_and_nesting_limits(tmp_path: Path) -> None:
    """A zip bomb is refused whole; an encrypted member fails alone with its reason; a
    zip nested past the depth limit is not opened; the good members are indexed."""
    src = tmp_path / "src"
    src.mkdir()
    make_zip_bomb(src / "bomb.zip", megabytes=300, member="zeros.txt")
    deep = _zip_bytes({"bottom.txt": b"too deep to read"})
    for level in range(3):
        deep = _zip_bytes({f"level{level}.zip": deep})
    (src / "deep.zip").write_bytes(deep)
    encrypted = bytearray(_zip_bytes({"secret.txt": b"hidden", "open.txt": b"avocet"}))
    # Set the encryption flag of the first member in both headers, as zip tools do.
    encrypted[6] |= 1
    central = encrypted.rfind(b"PK\x01\x02", 0, encrypted.rfind(b"PK\x01\x02"))
    encrypted[central + 8] |= 1
    (src / "locked.zip").write_bytes(bytes(encrypted))
    with _kb(tmp_path) as kb:
        kb.ingest([src])
        statuses = _statuses(kb)
        errors = {ex["source"].rsplit("/src/", 1)[-1]: ex["error"]
                  for group in kb.errors() for ex in group.examples}
    assert statuses["bomb.zip"] == "failed" and "zip bomb" in errors["bomb.zip"]
    assert not any(name.startswith("bomb.zip!/") for name in statuses)
    assert statuses["locked.zip!/secret.txt"] == "failed"
    assert "encrypted zip member" in errors["locked.zip!/secret.txt"]
    assert statuses["locked.zip!/open.txt"] == "indexed"
    deepest = "deep.zip!/level2.zip!/level1.zip!/level0.zip"
    assert statuses[deepest] == "skipped"
    assert "nested 3 containers deep" in errors[deepest]
    assert f"{deepest}!/bottom.txt" not in statuses


def test_kill_9_while_children_are_processed_loses_and_duplicates_nothing(
        tmp_path: Path) -> None:
    """Runs killed part way while a zip's 300 members are worked through (members
    held mid-extraction) end, once re-run to completion, with exactly the chunks of an
    uninterrupted run."""
    src = tmp_path / "src"
    src.mkdir()
    members = {f"part{i:03d}/note.txt": f"member {i} mentions godwit{i % 7}".encode()
               for i in range(300)}
    members.update({f"pdf{i:02d}.pdf": make_pdf(tmp_path / f"{i}.pdf", [f"page {i}"] * 3)
                    .read_bytes() for i in range(20)})
    _zip(src / "many.zip", members)
    ref = env_for(tmp_path / "ref", workers="2")
    assert gristmill("ingest", str(src), env=ref).returncode == 0
    crash = env_for(tmp_path / "crash", workers="2", flush_seconds="0.2")
    kills = crash_by_progress(["ingest", str(src)], crash, tmp_path / "crash",
                              Gate(tmp_path / "gate"), kills=2, step=20, seed=3)
    assert kills >= 2

    def snapshot(home: Path) -> list[tuple[str, str, int, str]]:
        return query(home, "SELECT i.source, i.status, c.seq, c.text FROM items i "
                     "LEFT JOIN chunks c ON c.item_id = i.id ORDER BY i.source, c.seq")

    reference = snapshot(tmp_path / "ref")
    crashed = snapshot(tmp_path / "crash")
    assert [(s.rsplit("/src/", 1)[-1], *rest) for s, *rest in crashed] == \
        [(s.rsplit("/src/", 1)[-1], *rest) for s, *rest in reference]
    assert len(reference) >= 321
