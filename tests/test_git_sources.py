"""Git work trees as sources: listed by git (.gitignore, vendored folders), re-read by
what git says changed (renames as renames), and walked whole when history was rewritten
or the tree has uncommitted changes. Real repositories, made by the tests."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backends import query
from gristmill.knowledge_base import KnowledgeBase

pytestmark = pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
    reason="needs git")


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True,
                          text=True, env=env).stdout.strip()


def write(repo: Path, relative: str, text: str) -> None:
    path = repo / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def commit(repo: Path, message: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    write(root, "src/Invoice.java", "class Invoice { int totalCents; }\n")
    write(root, "src/Ledger.java", "class Ledger { void post() {} }\n")
    write(root, "src/Tax.java", "class Tax { double vatRate; }\n")
    write(root, "docs/notes.md", "Heron notes about billing.\n")
    write(root, ".gitignore", "*.log\ngenerated/\n")
    write(root, "debug.log", "ignored heron log\n")
    write(root, "generated/Big.java", "class Big { int ignoredByGitignore; }\n")
    write(root, "node_modules/lib/index.js", "function vendoredHeron() {}\n")
    commit(root, "first")
    return root


def items(kb: KnowledgeBase) -> dict[str, tuple[int, str | None]]:
    """source relative to the repo -> (item id, git_commit)."""
    rows = query(kb.settings.home,
                 "SELECT source, id, git_commit FROM items WHERE parent_id IS NULL")
    repo = kb.settings.home.parent / "repo"
    return {Path(source).relative_to(repo).as_posix(): (i, c) for source, i, c in rows}


def open_kb(tmp_path: Path, **settings: object) -> KnowledgeBase:
    return KnowledgeBase.open(tmp_path / "home", embedder="none", workers=2, **settings)


def test_a_repository_is_listed_by_git_with_the_commit_of_each_item(
        repo: Path, tmp_path: Path) -> None:
    """Ignored files and vendored folders are left out (vendored ones can be asked for);
    an untracked file that is not ignored is read; every item records the commit its
    text is from, none for a file with uncommitted changes."""
    head = git(repo, "rev-parse", "HEAD")
    write(repo, "src/Draft.java", "class Draft { int untrackedHeron; }\n")
    write(repo, "src/Tax.java", "class Tax { double vatRate; double dirtyHeron; }\n")
    with open_kb(tmp_path) as kb:
        assert kb.ingest([repo]).failed == 0
        found = items(kb)
        assert set(found) == {"src/Invoice.java", "src/Ledger.java", "src/Tax.java",
                              "src/Draft.java", "docs/notes.md", ".gitignore"}
        assert found["src/Invoice.java"][1] == head
        assert found["src/Tax.java"][1] is None and found["src/Draft.java"][1] is None
        assert kb.search("dirtyHeron", mode="keyword")  # uncommitted changes are indexed
        assert not kb.search("vendoredHeron", mode="keyword")
    with open_kb(tmp_path, include_vendored=True) as kb:
        kb.ingest([repo])
        assert "node_modules/lib/index.js" in items(kb)
        assert kb.search("vendoredHeron", mode="keyword")


def test_new_commits_are_read_from_the_diff_and_renames_keep_their_item(
        repo: Path, tmp_path: Path) -> None:
    """After commits, only what git names is looked at: a modified file is re-read, a
    deleted one removed, an added one read, a renamed one keeps its item (and text)
    under its new path; a file merely touched is not even looked at."""
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
        before = items(kb)
        mtime = query(kb.settings.home, "SELECT mtime_ns FROM items WHERE source LIKE ?",
                      ("%docs/notes.md",))[0][0]
    write(repo, "src/Invoice.java", "class Invoice { int totalCents; int discountCents; }\n")
    (repo / "src/Ledger.java").unlink()
    git(repo, "mv", "src/Tax.java", "src/VatTax.java")
    write(repo, "src/Refund.java", "class Refund { void issueRefund() {} }\n")
    head = commit(repo, "second")
    os.utime(repo / "docs/notes.md")  # touched, not changed: git does not name it
    with open_kb(tmp_path) as kb:
        report = kb.ingest([repo])
        assert report.failed == 0
        after = items(kb)
        assert set(after) == {"src/Invoice.java", "src/VatTax.java", "src/Refund.java",
                              "docs/notes.md", ".gitignore"}
        assert after["src/VatTax.java"][0] == before["src/Tax.java"][0]  # the same item
        assert all(commit_ == head for _, commit_ in after.values())
        assert (report.discovered.new, report.discovered.removed) == (1, 1)
        assert query(kb.settings.home, "SELECT mtime_ns FROM items WHERE source LIKE ?",
                     ("%docs/notes.md",))[0][0] == mtime
        hits = kb.search("vatRate", mode="keyword")
        assert hits and all(hit.source.endswith("src/VatTax.java") for hit in hits)
        assert kb.search("discountCents", mode="keyword")
        assert not kb.search("post", mode="keyword", path="*Ledger*")


def test_rewritten_history_and_dirty_trees_fall_back_to_a_full_listing(
        repo: Path, tmp_path: Path) -> None:
    """A reset to an older commit and a new one (the recorded commit is gone from the
    history) and a dirty tree both make the next run list every file; the catalog then
    matches the work tree exactly."""
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
    write(repo, "src/Temp.java", "class Temp { int temporaryHeron; }\n")
    commit(repo, "temporary")
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
        assert "src/Temp.java" in items(kb)
    git(repo, "reset", "-q", "--hard", "HEAD~1")  # history rewritten: Temp never was
    write(repo, "src/Other.java", "class Other { int otherHeron; }\n")
    commit(repo, "rewritten")
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
        found = items(kb)
        assert "src/Temp.java" not in found and "src/Other.java" in found
        assert not kb.search("temporaryHeron", mode="keyword")
    write(repo, "src/Other.java", "class Other { int editedHeron; }\n")  # dirty
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
        assert kb.search("editedHeron", mode="keyword")
        assert items(kb)["src/Other.java"][1] is None
    git(repo, "checkout", "--", "src/Other.java")  # the edit is dropped, never committed
    with open_kb(tmp_path) as kb:
        kb.ingest([repo])
        assert not kb.search("editedHeron", mode="keyword")
        assert kb.search("otherHeron", mode="keyword")


def test_a_dry_run_counts_what_git_lists_not_the_whole_folder(
        repo: Path, tmp_path: Path) -> None:
    """Ignored and vendored files are not counted as new: the dry run's figures are the
    run's."""
    write(repo, "src/Draft.java", "class Draft { int untrackedHeron; }\n")
    with open_kb(tmp_path) as kb:
        before = kb.ingest([repo], dry_run=True).discovered
        done = kb.ingest([repo]).discovered
        assert (before.new, before.changed) == (done.new, done.changed) == (6, 0)
        write(repo, "src/Ledger.java", "class Ledger { void post() {} void undo() {} }\n")
        again = kb.ingest([repo], dry_run=True).discovered
        assert (again.new, again.changed, again.unchanged) == (0, 1, 5)
