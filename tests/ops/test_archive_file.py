"""The archive file: what it holds, and every kind of damage refused with one line."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest
from moving_kb import write_texts

from backends import query
from gristmill.ops.archive import (
    ArchiveReader,
    ArchiveRefused,
    ArchiveWriter,
    check_archive,
    table_member,
)
from gristmill.ops.moving import scrub_secrets
from process_tools import env_for, gristmill, gristmill_json


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export of a small knowledge base (keyword-only) with settings files."""
    work = tmp_path_factory.mktemp("archive")
    home = work / "home"
    env = {k: v for k, v in env_for(home).items() if k != "GRISTMILL_DATABASE_URL"}
    write_texts(work / "docs", 12)
    done = gristmill("ingest", str(work / "docs"), env=env)
    assert done.returncode == 0, done.stderr
    # Written after the ingest: the home's files are read by every command (the
    # database URL would be used).
    (home / "gristmill.toml").write_text('chunk_tokens = 120\napi_token = "s3cret"\n')
    (home / ".env").write_text("GRISTMILL_WORKERS=2\nOPENAI_API_KEY=sk-123\n"
                               "GRISTMILL_DATABASE_URL=postgresql://u:pw@h/db\n")
    path = work / "kb.gristmill"
    gristmill_json("export", str(path), "--database", "", env=env)
    return path


def test_include_secrets_keeps_them_and_says_so_loudly(archive: Path, tmp_path: Path) -> None:
    """--include-secrets keeps the credentials, warns on stderr, and marks the
    manifest; the import says so too."""
    home = archive.parent / "home"
    env = {k: v for k, v in env_for(home).items() if k != "GRISTMILL_DATABASE_URL"}
    path = tmp_path / "secret.gristmill"
    done = gristmill("export", str(path), "--include-secrets", "--database", "", env=env)
    assert done.returncode == 0, done.stderr
    assert "SECRETS INCLUDED" in done.stderr
    with ArchiveReader(path) as reader:
        assert reader.manifest["secrets_included"] is True
        assert "sk-123" in reader.read_file("config/env").decode()
    target = tmp_path / "target"
    report = gristmill_json("import", str(path), env=env_for(target))
    assert any("SECRETS INCLUDED" in note for note in report["notes"])
    assert (target / ".env").stat().st_mode & 0o077 == 0, "the env file is readable by others"


def _members(path: Path) -> list[str]:
    with tarfile.open(path, "r:") as tar:
        return tar.getnames()


def test_an_export_is_a_plain_tar_with_tables_then_settings_then_the_manifest(
        archive: Path) -> None:
    """`tar tf` lists one zstd member per table, the settings files, and the manifest
    last, which names every member with its size and sha256 and every table's rows."""
    listing = subprocess.run(["tar", "tf", str(archive)], capture_output=True, text=True,
                             check=True).stdout.split()
    assert listing == _members(archive)
    assert listing[-1] == "manifest.json"
    assert table_member("items") in listing and table_member("chunks") in listing
    assert "config/gristmill.toml" in listing and "config/env" in listing
    with ArchiveReader(archive) as reader:
        manifest = reader.manifest
        assert set(manifest["members"]) == set(listing[:-1])
        assert manifest["tables"]["items"]["rows"] == 12
        assert manifest["source"]["backend"] == "sqlite"
        assert manifest["secrets_included"] is False
        items = list(reader.rows("items"))
    assert len(items) == 12
    assert check_archive(archive) == []


def test_secrets_are_left_out_of_the_settings_files(archive: Path) -> None:
    """The API token, the database password and the API key are not in the archive;
    the other settings are."""
    with ArchiveReader(archive) as reader:
        toml = reader.read_file("config/gristmill.toml").decode()
        env = reader.read_file("config/env").decode()
    assert "chunk_tokens = 120" in toml and "s3cret" not in toml
    assert "GRISTMILL_WORKERS=2" in env
    assert "sk-123" not in env and "pw@" not in env


def test_scrubbing_keeps_names_that_only_look_like_secrets() -> None:
    """`embed_api_key_env` names a variable (kept); `*_key`, `*token*` and `*password*`
    values go."""
    text, removed = scrub_secrets("embed_api_key_env = 'MY_KEY'\nbedrock_key = 'x'\n"
                                  "export DB_PASSWORD=y\nworkers = 3\n")
    assert removed == ["bedrock_key", "DB_PASSWORD"]
    assert "embed_api_key_env" in text and "workers = 3" in text


def _flip_byte_in(archive: Path, member: str, target: Path) -> Path:
    with tarfile.open(archive, "r:") as tar:
        info = tar.getmember(member)
        offset = info.offset_data + info.size // 2
    data = bytearray(archive.read_bytes())
    data[offset] ^= 0x20
    target.write_bytes(bytes(data))
    return target


def _without(archive: Path, member: str, target: Path) -> Path:
    with tarfile.open(archive, "r:") as tar, tarfile.open(target, "w") as out:
        for info in tar.getmembers():
            if info.name != member:
                out.addfile(info, tar.extractfile(info))
    return target


def _truncated(archive: Path, target: Path) -> Path:
    data = archive.read_bytes()
    target.write_bytes(data[:len(data) * 2 // 3])
    return target


@pytest.mark.parametrize("damage", ["flipped byte", "flipped manifest byte", "truncated",
                                    "missing member"])
def test_a_damaged_archive_is_refused_with_one_line_and_nothing_imported(
        archive: Path, tmp_path: Path, damage: str) -> None:
    """check_archive names the problem, and import refuses with that one line (exit 2)
    before anything is visible in the target."""
    bad = tmp_path / "bad.gristmill"
    if damage == "flipped byte":
        _flip_byte_in(archive, table_member("chunks"), bad)
        expected = "member tables/chunks.jsonl.zst is damaged"
    elif damage == "flipped manifest byte":
        with tarfile.open(archive, "r:") as tar:
            info = tar.getmember("manifest.json")
            text = tar.extractfile(info).read()  # type: ignore[union-attr]
        # A digit of a row count: still valid JSON, so only the checksum can tell.
        at = text.index(b'"rows": 12') + len(b'"rows": 1')
        data = bytearray(archive.read_bytes())
        data[info.offset_data + at] = ord("3")
        bad.write_bytes(bytes(data))
        expected = "manifest.json is damaged"
    elif damage == "truncated":
        _truncated(archive, bad)
        expected = "truncated"
    else:
        _without(archive, table_member("jobs"), bad)
        expected = "member tables/jobs.jsonl.zst is missing"
    problems = check_archive(bad)
    assert problems and expected in problems[0].what
    assert all("\n" not in p.what and p.fix for p in problems)

    home = tmp_path / "target"
    done = gristmill("import", str(bad), env=env_for(home))
    assert done.returncode == 2, done.stderr
    # Progress lines (members staged) may come first; the refusal is one line, last.
    lines = done.stderr.strip().splitlines()
    assert [line for line in lines if line.startswith("error")] == lines[-1:]
    assert expected in lines[-1]
    assert query(home, "SELECT count(*) FROM items", missing_ok=True) in ([], [(0,)])


def test_an_archive_of_a_newer_format_is_refused_with_the_upgrade_command(
        tmp_path: Path) -> None:
    """format_version 2 is not read: the line names the gristmill that wrote it and
    says to upgrade."""
    path = tmp_path / "future.gristmill"
    with ArchiveWriter(path) as writer:
        writer.finish({"gristmill": "9.0.0"})
    with tarfile.open(path, "r:") as tar:
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    manifest["format_version"] = 2
    data = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        info = tarfile.TarInfo("manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    (problem,) = check_archive(path)
    assert "gristmill 9.0.0" in problem.what and "pip install -U gristmill" in problem.fix
    with pytest.raises(ArchiveRefused):
        ArchiveReader(path)


def test_a_table_with_a_column_this_version_lacks_is_refused(tmp_path: Path) -> None:
    """An archive from a newer schema (an unknown column) is refused with exit 2 and the
    upgrade command; nothing is imported."""
    path = tmp_path / "newer.gristmill"
    with ArchiveWriter(path) as writer:
        writer.add_table("jobs", [("id", "integer"), ("collection", "text"),
                                  ("sources", "text"), ("state", "text"),
                                  ("started_at", "real"), ("priority", "integer")],
                         [[1, "default", "[]", "succeeded", 1.0, 5]])
        writer.finish({"gristmill": "9.0.0", "source": {"backend": "sqlite",
                                                         "schema_version": 99}})
    assert check_archive(path) == []  # sound as a file: the refusal is the schema's
    home = tmp_path / "target"
    done = gristmill("import", str(path), env=env_for(home))
    assert done.returncode == 2
    assert "written by gristmill 9.0.0, schema 99" in done.stderr
    assert "pip install -U gristmill" in done.stderr
    assert query(home, "SELECT count(*) FROM jobs", missing_ok=True) in ([], [(0,)])


def test_an_interrupted_export_leaves_no_archive_under_its_name(tmp_path: Path) -> None:
    """Leaving the writer without finishing (an error mid-export) leaves nothing."""
    path = tmp_path / "kb.gristmill"

    def rows() -> object:
        yield [1]
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError), ArchiveWriter(path) as writer:
        writer.add_table("t", [("id", "integer")], rows())  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []
