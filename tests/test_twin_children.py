"""A file whose bytes are already indexed (a copy, in another folder or collection) is
not extracted again: it gets a copy of its twin's chunks, and of its twin's attachments
and archive members with theirs, down to the last level, on both catalog backends."""

from __future__ import annotations

import email.message
import shutil
import socket
import struct
import time
import zipfile
from io import BytesIO
from pathlib import Path

import pytest

from cfb import Tree, write_cfb
from docs import make_eml
from gristmill.knowledge_base import KnowledgeBase

# Outlook property tags ([MS-OXPROPS]): id << 16 | type.
_MESSAGE_CLASS, _SUBJECT, _BODY = 0x001A001F, 0x0037001F, 0x1000001F
_ATTACH_DATA, _ATTACH_METHOD, _ATTACH_NAME = 0x37010102, 0x37050003, 0x3707001F


def _props(props: dict[int, str | bytes | int], header: bytes) -> Tree:
    """A property storage: variable-size values as streams, the rest inline."""
    tree: Tree = {}
    entries = bytearray(header)
    for tag, value in props.items():
        if isinstance(value, int):
            entries += struct.pack("<IIQ", tag, 6, value)
            continue
        data = value.encode("utf-16-le") if isinstance(value, str) else value
        tree[f"__substg1.0_{tag:08X}"] = data
        entries += struct.pack("<IIII", tag, 6, len(data) + 2 * isinstance(value, str), 0)
    tree["__properties_version1.0"] = bytes(entries)
    return tree


def _make_msg(path: Path, subject: str, body: str, attachments: dict[str, bytes]) -> Path:
    """An Outlook message with attached files, laid out as [MS-OXMSG] says."""
    count = len(attachments)
    tree = _props({_MESSAGE_CLASS: "IPM.Note", _SUBJECT: subject, _BODY: body},
                  struct.pack("<8xIIII8x", 0, count, 0, count))
    tree["__nameid_version1.0"] = {"__substg1.0_00020102": b"", "__substg1.0_00030102": b"",
                                   "__substg1.0_00040102": b""}
    for i, (name, data) in enumerate(attachments.items()):
        tree[f"__attach_version1.0_#{i:08X}"] = _props(
            {_ATTACH_NAME: name, _ATTACH_METHOD: 1, _ATTACH_DATA: data}, bytes(8))
    return write_cfb(path, tree)


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _forwarded() -> bytes:
    """A message with an attachment of its own, to attach to another (a forward)."""
    message = email.message.EmailMessage()
    message["Subject"] = "Fwd: avocets"
    message.set_content("forwarded about the avocet colony")
    message.add_attachment(b"avocet nest census", maintype="text", subtype="plain",
                           filename="census.txt")
    return bytes(message)


def _corpus(folder: Path) -> Path:
    """An .eml (a text, a zip, a forwarded message, a broken PDF attached) and an .msg."""
    folder.mkdir(parents=True)
    make_eml(folder / "mail.eml", "Weekly", "see the attached plover report",
             attachments={"report.txt": b"plover counts rose",
                          "archive.zip": _zip_bytes({"minutes.txt": b"the heron committee"}),
                          "fwd.eml": _forwarded(), "broken.pdf": b"%PDF-1.4 torn"})
    _make_msg(folder / "note.msg", "Survey", "lapwing survey attached",
              {"data.txt": b"lapwing tallies by field",
               "more.zip": _zip_bytes({"field.txt": b"curlew field notes"})})
    return folder


# Every item below a copy of the corpus, as the original had them.
_TREE = {
    "mail.eml", "mail.eml!/report.txt", "mail.eml!/archive.zip",
    "mail.eml!/archive.zip!/minutes.txt", "mail.eml!/fwd.eml",
    "mail.eml!/fwd.eml!/census.txt", "mail.eml!/broken.pdf",
    "note.msg", "note.msg!/data.txt", "note.msg!/more.zip", "note.msg!/more.zip!/field.txt",
}


def _kb(tmp_path: Path, **settings: object) -> KnowledgeBase:
    settings.setdefault("embedder", "none")
    settings.setdefault("workers", 2)
    return KnowledgeBase.open(tmp_path / "home", **settings)


def _tree(kb: KnowledgeBase, folder: Path, collection: str = "default"
          ) -> dict[str, tuple[object, ...]]:
    """Items under ``folder``: name -> (status, error, chunk count, their text)."""
    prefix = f"{folder}/"
    rows = kb.catalog.db.conn.execute(
        "SELECT id, source, status, error, chunk_count FROM items WHERE collection = ?",
        (collection,)).fetchall()
    tree = {}
    for item_id, source, status, error, count in rows:
        if source.startswith(prefix):
            texts = [text for (text,) in kb.catalog.db.conn.execute(
                "SELECT text FROM chunks WHERE item_id = ? ORDER BY seq", (item_id,))]
            tree[source[len(prefix):]] = (status, error, count or 0, tuple(texts))
    return tree


def _sources(kb: KnowledgeBase, query: str, collection: str = "default") -> set[str]:
    return {h.source for h in kb.search(query, mode="keyword", k=50, collection=collection)}


def _counts(kb: KnowledgeBase) -> tuple[int, int, int]:
    conn = kb.catalog.db.conn
    items = conn.execute("SELECT count(*) FROM items").fetchone()[0]
    distinct = conn.execute("SELECT count(DISTINCT collection || source) FROM items"
                            ).fetchone()[0]
    chunks = conn.execute("SELECT count(*) FROM chunks").fetchone()[0]
    return items, distinct, chunks


@pytest.mark.parametrize("collection", ["default", "other"])
def test_a_copied_mail_keeps_every_attachment_and_member(tmp_path: Path,
                                                         collection: str) -> None:
    """A copy of an .eml and an .msg, in another folder or collection, gets every child
    and grandchild of the original with its status, reason and chunks."""
    original = _corpus(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    with _kb(tmp_path) as kb:
        kb.ingest([original])
        kb.ingest([copy], collection=collection)
        expected = _tree(kb, original)
        assert set(expected) == _TREE
        assert expected["mail.eml!/broken.pdf"][0] == "failed"
        assert expected["mail.eml!/fwd.eml!/census.txt"][0] == "indexed"
        assert _tree(kb, copy, collection) == expected
        assert f"{copy}/mail.eml!/fwd.eml!/census.txt" in _sources(kb, "census", collection)
        assert f"{copy}/note.msg!/more.zip!/field.txt" in _sources(kb, "curlew", collection)
        problems = {source: reason for _, source, reason in kb.catalog.problems(collection)}
        assert problems[f"{copy}/mail.eml!/broken.pdf"] == \
            expected["mail.eml!/broken.pdf"][1]


def test_a_twin_of_a_twin_and_reruns_duplicate_nothing(tmp_path: Path) -> None:
    """A copy of a copy gets the whole tree too; re-running every folder adds no item
    and no chunk."""
    original = _corpus(tmp_path / "a")
    copies = [tmp_path / "b", tmp_path / "c"]
    with _kb(tmp_path) as kb:
        kb.ingest([original])
        for folder in copies:
            shutil.copytree(original, folder)
            kb.ingest([folder])
        expected = _tree(kb, original)
        assert _tree(kb, copies[0]) == expected and _tree(kb, copies[1]) == expected
        before = _counts(kb)
        assert before[0] == before[1] == 3 * len(_TREE)
        for folder in [original, *copies]:
            kb.ingest([folder])
        assert _counts(kb) == before
        assert _tree(kb, copies[1]) == expected


def test_a_copys_children_survive_the_original_changing_or_going(tmp_path: Path) -> None:
    """Once copied, a twin's children are its own: the original changing (losing its
    attachments) or being deleted leaves them, and their text, in place."""
    original = _corpus(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    with _kb(tmp_path) as kb:
        kb.ingest([original])
        kb.ingest([copy])
        expected = _tree(kb, copy)
        time.sleep(0.01)  # a new mtime for the rewritten file
        make_eml(original / "mail.eml", "Weekly", "nothing attached this week")
        (original / "note.msg").unlink()
        kb.ingest([original])
        assert set(_tree(kb, original)) == {"mail.eml"}
        assert _tree(kb, copy) == expected
        assert _sources(kb, "plover") == {f"{copy}/mail.eml",
                                          f"{copy}/mail.eml!/report.txt"}


def test_a_twins_children_still_in_process_elsewhere_are_extracted_here(
        tmp_path: Path) -> None:
    """Children of the original that another process still holds (or has yet to do)
    are copied as pending and extracted by the copy's own run."""
    original = _corpus(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    with _kb(tmp_path) as kb:
        kb.ingest([original])
        expected = _tree(kb, original)
        # Another machine's live lease on one child; another child back in the queue.
        busy, queued = f"{original}/mail.eml!/report.txt", f"{original}/note.msg!/more.zip"
        kb.catalog.transact(lambda txn: (
            txn.execute("UPDATE items SET status = 'processing', lease_owner = ?, "
                        "lease_expires = ? WHERE source = ?",
                        (f"not-{socket.gethostname()}:1:1.00", time.time() + 3600, busy)),
            txn.execute("DELETE FROM chunks WHERE item_id IN (SELECT id FROM items "
                        "WHERE source = ? OR parent_id IN (SELECT id FROM items "
                        "WHERE source = ?))", (busy, queued)),
            txn.execute("DELETE FROM items WHERE parent_id = (SELECT id FROM items "
                        "WHERE source = ?)", (queued,)),
            txn.execute("UPDATE items SET status = 'pending' WHERE source = ?", (queued,))))
        kb.ingest([copy])
        assert _tree(kb, copy) == expected
        assert _tree(kb, original)["mail.eml!/report.txt"][0] == "processing"


def test_copied_children_have_their_vectors(tmp_path: Path) -> None:
    """With an embedder, a copy's children end indexed, every chunk with its vector."""
    original = _corpus(tmp_path / "a")
    copy = tmp_path / "b"
    shutil.copytree(original, copy)
    with _kb(tmp_path, embedder="minilm") as kb:
        kb.ingest([original])
        kb.ingest([copy])
        statuses = {name: row[0] for name, row in _tree(kb, copy).items()}
        assert statuses == {name: row[0] for name, row in _tree(kb, original).items()}
        assert statuses["mail.eml!/archive.zip!/minutes.txt"] == "indexed"
        assert set(statuses.values()) == {"indexed", "failed"}
        missing = kb.catalog.db.conn.execute(
            "SELECT count(*) FROM chunks c WHERE NOT EXISTS (SELECT 1 FROM embeddings e "
            "WHERE e.text_hash = c.text_hash AND e.model = ?)", (kb.embedder.model_id,)
        ).fetchone()[0]
        assert missing == 0
        hits = [h.source for h in kb.search("heron committee minutes", mode="vector", k=20)]
        assert f"{copy}/mail.eml!/archive.zip!/minutes.txt" in hits
