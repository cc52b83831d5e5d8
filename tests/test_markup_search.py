"""XML in a git repository is source: a web.xml's servlets are element entities found by
name, with lines; the same file in an ordinary folder stays a data document."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from backends import query
from gristmill.config import Settings
from gristmill.extract import Limits
from gristmill.knowledge_base import KnowledgeBase
from gristmill.runtime.worker import Outcome, WorkOptions, process_item

pytestmark = pytest.mark.skipif(
    subprocess.run(["git", "--version"], capture_output=True).returncode != 0,
    reason="needs git")

SERVLETS = "".join(f"""\
  <servlet>
    <servlet-name>{name}</servlet-name>
    <servlet-class>org.acme.web.{name}</servlet-class>
    <load-on-startup>{i}</load-on-startup>
  </servlet>
""" for i, name in enumerate(["HelloWorldExample", "RequestInfoExample", "CookieExample",
                              "SessionExample", "RequestHeaderExample"]))

WEB_XML = f"""\
<?xml version="1.0" encoding="UTF-8"?>
<web-app version="2.4">
  <display-name>Examples</display-name>
{SERVLETS}  <servlet-mapping>
    <servlet-name>HelloWorldExample</servlet-name>
    <url-pattern>/hello</url-pattern>
  </servlet-mapping>
</web-app>
"""

JAVA = """\
package org.acme.web;

public class HelloWorldExample extends javax.servlet.http.HttpServlet {
}
"""


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def _repository(root: Path) -> Path:
    (root / "src/main/webapp/WEB-INF").mkdir(parents=True)
    (root / "src/main/webapp/WEB-INF/web.xml").write_text(WEB_XML)
    (root / "src/main/java/org/acme/web").mkdir(parents=True)
    (root / "src/main/java/org/acme/web/HelloWorldExample.java").write_text(JAVA)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_web_xml_in_a_repository_is_found_as_elements_and_in_a_folder_as_data(
        tmp_path: Path) -> None:
    """In the repository, the servlet's name finds the web.xml element (kind, language,
    lines) recorded by the markup extractor; in a plain folder the same file is read by
    the XML data extractor, without kind or lines."""
    repo = _repository(tmp_path / "repo")
    plain = tmp_path / "plain"
    plain.mkdir()
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=1) as kb:
        assert kb.ingest([repo]).failed == 0
        hits = kb.search("HelloWorldExample", mode="keyword", k=10, kind="element")
        assert hits and all(h.kind == "element" for h in hits)
        best = hits[0]
        assert best.source.endswith("WEB-INF/web.xml")
        assert best.language == "xml"
        assert best.entity == "web-app/servlet[HelloWorldExample]"
        assert best.lines == (4, 8)
        shown = WEB_XML.splitlines()[best.lines[0] - 1:best.lines[1]]
        assert shown[1].strip() == "<servlet-name>HelloWorldExample</servlet-name>"
        [extractor] = query(kb.settings.home, "SELECT extractor FROM items "
                            "WHERE source LIKE '%web.xml'")
        assert extractor == ("markup",)
        # The same web.xml in a plain folder, one comment apart: identical bytes would
        # reuse the extraction above (the catalog's twins), which is not what is tested.
        (plain / "web.xml").write_text(WEB_XML + "<!-- a copy -->\n")
        assert kb.ingest([plain], collection="plain").failed == 0
        data = kb.search("HelloWorldExample", mode="keyword", k=10, collection="plain")
        assert data and {(h.kind, h.lines, h.language) for h in data} == {(None, None, None)}
        assert not kb.search("HelloWorldExample", mode="keyword", kind="element",
                             collection="plain")
        [extractor] = query(kb.settings.home, "SELECT extractor FROM items "
                            "WHERE collection = 'plain'")
        assert extractor == ("xml",)


def test_the_worker_reads_markup_as_source_only_under_a_repository(tmp_path: Path) -> None:
    """`WorkOptions.repositories` holds the sources that are work trees; an XML file
    under one goes to the markup extractor, the size limit still applies; outside,
    XML (a .tld too) is read as data."""
    repo = _repository(tmp_path / "repo")
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "web.xml").write_text(WEB_XML)
    options = WorkOptions(chunk_tokens=200, max_file_bytes=1 << 20, limits=Limits(),
                          repositories=(os.path.realpath(repo),))
    inside = process_item(str(repo / "src/main/webapp/WEB-INF/web.xml"), options)
    outside = process_item(str(plain / "web.xml"), options)
    assert (inside.outcome, inside.extractor, inside.extractor_version) == (
        Outcome.EXTRACTED, "markup", 1)
    assert {c.kind for c in inside.chunks} == {"element"}
    assert (outside.outcome, outside.extractor) == (Outcome.EXTRACTED, "xml")
    (plain / "hello.tld").write_text("<taglib><tag><name>hello</name></tag></taglib>\n")
    tld = process_item(str(plain / "hello.tld"), options)
    assert (tld.outcome, tld.extractor) == (Outcome.EXTRACTED, "xml")  # a folder: data
    tiny = WorkOptions(chunk_tokens=200, max_file_bytes=10, limits=Limits(),
                       repositories=(os.path.realpath(repo),))
    too_big = process_item(str(repo / "src/main/webapp/WEB-INF/web.xml"), tiny)
    assert (too_big.outcome, too_big.extractor) == (Outcome.SKIPPED, "markup")


def test_the_work_options_name_the_sources_that_are_git_work_trees(tmp_path: Path) -> None:
    """A run's options list the sources git says are work trees (a folder inside one
    too), as real paths; an ordinary folder is not one."""
    repo = _repository(tmp_path / "repo")
    plain = tmp_path / "plain"
    plain.mkdir()
    settings = Settings.load(home=tmp_path / "home", embedder="none")
    options = WorkOptions.from_settings(settings, [str(repo / "src"), str(plain)])
    assert options.repositories == (os.path.realpath(repo / "src"),)
    assert WorkOptions.from_settings(settings).repositories == ()
