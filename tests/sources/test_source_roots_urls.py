"""Source roots as an allow-list of folders and URL prefixes (issue 17): a URL is read
only under a listed prefix, at a ``/`` boundary, and a URL prefix never admits a folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.api.problems import ApiError
from gristmill.api.security import resolve_source
from gristmill.config import Settings
from gristmill.errors import ConfigError, SourceError
from gristmill.sources.roots import check_root, inside_url, real_roots

ROOTS = ["s3://bucket/", "s3://library/docs/", "gdrive://folder1/"]


@pytest.mark.parametrize("url", [
    "s3://bucket/", "s3://bucket", "s3://bucket/a.pdf", "s3://bucket/deep/er/a.pdf",
    "S3://bucket/a.pdf", "s3://library/docs/", "s3://library/docs/a/b.txt",
    "gdrive://folder1/Reports/q1.docx",
])
def test_a_url_under_a_listed_prefix_is_allowed(url: str) -> None:
    """Everything below a listed prefix, the prefix itself and a bare bucket root."""
    assert inside_url(url, ROOTS)


@pytest.mark.parametrize("url", [
    "s3://bucket-evil/a.pdf",          # a longer bucket name is another bucket
    "s3://bucketx",
    "s3://library/docs-old/a.txt",     # a longer prefix is another prefix
    "s3://library/docs",               # the object "docs" is not under "docs/"
    "s3://library/",                   # above the prefix
    "s3://library/docs/../secret/a",   # no climbing, even if the store kept it literal
    "s3://library/docs/./a",
    "s3://library/docs//a",
    "s3://bucket/a.pdf?versionId=1",
    "s3://bucket/a.pdf#x",
    "gdrive://bucket/a.pdf",           # same text, another scheme
    "s3://folder1/a",
    "s3:/bucket/a.pdf",
    "/bucket/a.pdf",
])
def test_a_url_outside_every_prefix_or_not_in_normal_form_is_refused(url: str) -> None:
    """Prefix tricks, climbs and another scheme do not get in."""
    assert not inside_url(url, ROOTS)


def test_check_root_reads_a_listed_url_and_refuses_another() -> None:
    """The check every run makes: a URL under a prefix passes, any other is a clear error."""
    roots = real_roots(["/nonexistent-root", "s3://bucket/docs/"])
    check_root("s3://bucket/docs/2024/", roots)
    with pytest.raises(SourceError, match="not under a URL prefix listed in source_roots"):
        check_root("s3://bucket/other/", roots)


def test_a_url_prefix_never_admits_a_local_folder(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Roots holding only URL prefixes confine local reads to nothing, even a folder
    whose name spells the prefix relative to the current directory."""
    monkeypatch.chdir(tmp_path)
    lookalike = tmp_path / "s3:" / "bucket"
    lookalike.mkdir(parents=True)
    (lookalike / "secret.txt").write_text("zqsecret")
    roots = real_roots(["s3://bucket/"])
    for source in (str(lookalike), str(lookalike / "secret.txt"), str(tmp_path)):
        with pytest.raises(SourceError, match="outside the source roots"):
            check_root(source, roots)
    with pytest.raises(ApiError) as refused:
        resolve_source(str(lookalike), ["s3://bucket/"])
    assert refused.value.status == 403


def test_the_api_checks_urls_against_the_prefixes(tmp_path: Path) -> None:
    """A job's URL source: allowed in its canonical spelling under a prefix; 403 outside
    (before the store is asked anything); 400 where the job reads folders only."""
    roots: list[str | Path] = [tmp_path, "s3://bucket/docs/"]
    assert resolve_source("s3://bucket/docs/2024/", roots, remote=True) == \
        "s3://bucket/docs/2024/"
    assert resolve_source("S3://bucket/docs/", roots, remote=True) == "s3://bucket/docs/"
    for source in ("s3://bucket-evil/docs/", "s3://bucket/docsx/", "s3://nobody/x/"):
        with pytest.raises(ApiError) as refused:
            resolve_source(source, roots, remote=True)
        assert refused.value.status == 403, source
        assert "not under a URL prefix" in refused.value.detail
    with pytest.raises(ApiError) as folders_only:
        resolve_source("s3://bucket/docs/", roots)
    assert folders_only.value.status == 400
    assert resolve_source(str(tmp_path), roots) == str(tmp_path.resolve())


def test_the_environment_lists_folders_and_url_prefixes(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch
                                                        ) -> None:
    """``GRISTMILL_SOURCE_ROOTS`` is split at ``:`` without cutting a URL's ``://``; a
    prefix is kept as text, ending in ``/``; a folder is a path."""
    monkeypatch.setenv("GRISTMILL_SOURCE_ROOTS",
                       f"{tmp_path}:s3://bucket/docs:S3://other/:gdrive://f1/")
    settings = Settings.load(home=tmp_path / "home")
    assert settings.source_roots == [tmp_path, "s3://bucket/docs/", "s3://other/",
                                     "gdrive://f1/"]


def test_a_url_prefix_in_the_homes_file_is_not_made_relative_to_the_home(
        tmp_path: Path) -> None:
    """A relative folder in gristmill.toml is below the home; a URL prefix is kept."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "gristmill.toml").write_text(
        'source_roots = ["docs", "s3://bucket/docs/"]\n')
    settings = Settings.load(home=home)
    assert settings.source_roots == [home / "docs", "s3://bucket/docs/"]


@pytest.mark.parametrize("bad", ["s3://bucket/../etc/", "s3:///x/", "s3://bucket/a?b"])
def test_a_malformed_url_prefix_is_a_config_error_naming_the_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    """A prefix that could not be compared safely is refused at start-up."""
    monkeypatch.setenv("GRISTMILL_SOURCE_ROOTS", bad)
    with pytest.raises(ConfigError, match="source_roots"):
        Settings.load(home=tmp_path / "home")


def test_doctor_checks_the_folders_and_passes_over_url_prefixes(tmp_path: Path) -> None:
    """The "source roots" line of ``gristmill doctor`` is about folders: a URL prefix is
    no folder of this machine to be found missing (its own "s3" line checks the store:
    tests/ops/test_doctor_remote.py)."""
    from gristmill.ops.doctor import run_checks

    docs = tmp_path / "docs"
    docs.mkdir()
    settings = Settings.load(home=tmp_path / "home", embedder="none",
                             source_roots=[docs, "s3://bucket/docs/"])
    [check] = [c for c in run_checks(settings) if c.name == "source roots"]
    assert check.level == "ok" and str(docs) in check.detail and "s3:" not in check.detail
