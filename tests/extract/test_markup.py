"""XML and HTML as source: elements cut into entities named by their path and hint, with
exact line ranges, scripts parsed as JavaScript, nothing dropped, bad markup tolerated."""

from __future__ import annotations

from pathlib import Path

import pytest

from gristmill.chunking import chunk_segments, estimate_code_tokens
from gristmill.extract.base import Limits
from gristmill.extract.code import CodeEntity
from gristmill.extract.markup import MarkupExtractor, markup_entities, markup_language

WEB_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE web-app PUBLIC "-//Sun Microsystems, Inc.//DTD Web Application 2.3//EN"
  "http://java.sun.com/dtd/web-app_2_3.dtd">
<web-app id="WebApp_ID" version="2.4">
  <display-name>Servlet Examples</display-name>

  <!-- Says hello to whoever asks. -->
  <servlet>
    <servlet-name>HelloWorldExample</servlet-name>
    <servlet-class>HelloWorldExample</servlet-class>
  </servlet>
  <servlet>
    <servlet-name>RequestInfoExample</servlet-name>
    <servlet-class>RequestInfoExample</servlet-class>
  </servlet>

  <servlet-mapping>
    <servlet-name>HelloWorldExample</servlet-name>
    <url-pattern>/servlets/servlet/HelloWorldExample</url-pattern>
  </servlet-mapping>
  <filter-mapping>
    <filter-name>requestDumper</filter-name>
    <url-pattern>/*</url-pattern>
  </filter-mapping>
  <context-param>
    <param-name>contextConfigLocation</param-name>
    <param-value>/WEB-INF/app.xml</param-value>
  </context-param>
</web-app>
"""

POM_XML = """\
<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>org.acme</groupId>
  <artifactId>billing</artifactId>
  <version>1.0</version>
  <dependencies>
    <dependency>
      <groupId>commons-io</groupId>
      <artifactId>commons-io</artifactId>
      <version>2.16.1</version>
    </dependency>
    <dependency>
      <groupId>junit</groupId>
      <artifactId>junit</artifactId>
      <version>4.13.2</version>
      <scope>test</scope>
    </dependency>
    <dependency>
      <artifactId>lombok</artifactId>
    </dependency>
  </dependencies>
</project>
"""

BEANS_XML = """\
<beans xmlns="http://www.springframework.org/schema/beans">
  <bean id="dataSource" class="org.apache.commons.dbcp2.BasicDataSource">
    <property name="url" value="jdbc:h2:mem:billing"/>
    <property name="username" value="sa"/>
  </bean>
  <bean name="invoiceService" class="org.acme.billing.InvoiceService">
    <constructor-arg ref="dataSource"/>
  </bean>
</beans>
"""

HELLO_TLD = """\
<?xml version="1.0" encoding="UTF-8"?>
<taglib xmlns="http://java.sun.com/xml/ns/javaee" version="2.1">
  <tlib-version>1.0</tlib-version>
  <short-name>examples</short-name>
  <tag>
    <name>hello</name>
    <tag-class>org.acme.tags.HelloTag</tag-class>
    <body-content>empty</body-content>
    <attribute>
      <name>who</name>
      <required>false</required>
    </attribute>
  </tag>
</taglib>
"""

PAGE_HTML = """\
<!DOCTYPE html>
<html lang="en">
<head>
  <title>Sign in</title>
  <style>
    body { font-family: sans-serif; }
  </style>
</head>
<body>
  <div id="main" class="box">
    <h1>Sign in to <b>Acme</b></h1>
    <form id="login" action="/login" method="post">
      <label>User <input name="user"></label>
      <label>Password <input type="password" name="password"></label>
      <button type="submit">Sign in</button>
    </form>
  </div>
  <script>
    function validateLogin(form) {
      return form.user.value.length > 0;
    }

    function showError(message) {
      document.getElementById("main").textContent = message;
    }
  </script>
</body>
</html>
"""


def by_entity(parts: list[CodeEntity]) -> dict[str | None, CodeEntity]:
    """The first part of each entity."""
    found: dict[str | None, CodeEntity] = {}
    for part in parts:
        found.setdefault(part.entity, part)
    return found


def assert_covers(source: str, parts: list[CodeEntity]) -> None:
    """Every non-blank line of ``source`` is in a part whose range holds it; every part's
    text is its lines (after a repeated first line at its head, for a continuation)."""
    lines = source.split("\n")
    for number, line in enumerate(lines, 1):
        if line.strip():
            assert any(p.lines[0] <= number <= p.lines[1] and line in p.text.split("\n")
                       for p in parts), f"line {number} dropped: {line!r}"
    for part in parts:
        own = lines[part.lines[0] - 1:part.lines[1]]
        text = part.text.split("\n")
        assert text[-1] == own[-1] or part.language == "javascript", part
        assert set(text[1:]) <= set(own), part


def test_web_xml_servlets_and_mappings_are_entities_named_by_their_servlet() -> None:
    """Each servlet, mapping and parameter is an entity named by the path and its
    name-like child, with exact lines; the comment above a servlet and the prolog above
    the root go with them; the root has no hint (its display name would lead every
    name)."""
    parsed = markup_entities(WEB_XML, "xml", budget_tokens=100)
    assert parsed.note is None
    named = by_entity(parsed.entities)
    hello = named["web-app/servlet[HelloWorldExample]"]
    assert (hello.kind, hello.parent, hello.lines) == ("element", "web-app", (7, 11))
    assert hello.text.startswith("  <!-- Says hello to whoever asks. -->\n  <servlet>")
    assert named["web-app/servlet[RequestInfoExample]"].lines == (12, 15)
    assert named["web-app/servlet-mapping[HelloWorldExample]"].lines == (17, 20)
    assert named["web-app/filter-mapping[requestDumper]"].lines == (21, 24)
    assert named["web-app/context-param[contextConfigLocation]"].lines == (25, 28)
    root = [p for p in parsed.entities if p.entity == "web-app"]
    assert root[0].lines[0] == 1 and root[0].text.startswith("<?xml")
    assert root[-1].text.endswith("</web-app>") and root[-1].lines[1] == 29
    assert_covers(WEB_XML, parsed.entities)


def test_a_web_xml_that_fits_the_budget_is_one_part() -> None:
    """An element whose whole text fits is one part, prolog included."""
    [whole] = markup_entities(WEB_XML, "xml", budget_tokens=2000).entities
    assert (whole.entity, whole.kind, whole.lines) == ("web-app", "element", (1, 29))
    assert whole.text == WEB_XML.rstrip("\n")


def test_pom_dependencies_are_named_by_group_and_artifact() -> None:
    """`groupId:artifactId` names a dependency (the artifact alone without a group);
    every dependency is an entity of its own, never packed with its neighbours."""
    parsed = markup_entities(POM_XML, "xml", budget_tokens=60)
    named = by_entity(parsed.entities)
    io = named["project/dependencies/dependency[commons-io:commons-io]"]
    assert (io.parent, io.lines) == ("project/dependencies", (8, 12))
    assert named["project/dependencies/dependency[junit:junit]"].lines == (13, 18)
    assert named["project/dependencies/dependency[lombok]"].lines == (19, 21)
    # The project's own coordinates are small anonymous siblings: packed together.
    assert named["project/modelVersion,groupId,artifactId,version"].lines == (3, 6)
    assert_covers(POM_XML, parsed.entities)


def test_spring_beans_are_named_by_id_or_name_and_properties_by_name() -> None:
    """`id`, `name` attributes name beans and their properties."""
    parsed = markup_entities(BEANS_XML, "xml", budget_tokens=40)
    named = by_entity(parsed.entities)
    assert named["beans/bean[dataSource]"].lines[0] == 2
    url = named["beans/bean[dataSource]/property[url]"]
    assert (url.parent, url.lines) == ("beans/bean[dataSource]", (3, 3))
    assert named["beans/bean[invoiceService]"].lines == (6, 8)
    assert_covers(BEANS_XML, parsed.entities)


def test_tag_library_descriptor_tags_are_named_by_their_name() -> None:
    """A .tld is XML: each tag is named by its `<name>`, its attributes under it."""
    assert markup_language(Path("WEB-INF/hello.tld")) == "xml"
    parsed = markup_entities(HELLO_TLD, "xml", budget_tokens=60)
    named = by_entity(parsed.entities)
    assert named["taglib/tag[hello]"].lines == (5, 13)
    assert named["taglib/tag[hello]/attribute[who]"].lines == (9, 12)
    assert_covers(HELLO_TLD, parsed.entities)


def test_html_elements_are_named_by_id_and_scripts_parsed_as_javascript() -> None:
    """HTML names by `id` (`html/body/div#main/form#login`); a script's functions are
    JavaScript entities on the page's own lines, its tags a `script` part, and a style
    block a `style` part."""
    parsed = markup_entities(PAGE_HTML, "html", budget_tokens=40)
    assert parsed.note is None
    named = by_entity(parsed.entities)
    form = named["html/body/div#main/form#login"]
    assert (form.kind, form.parent, form.language) == ("element", "html/body/div#main", None)
    assert form.lines[0] == 12
    validate, show = named["validateLogin"], named["showError"]
    assert (validate.kind, validate.language, validate.lines) == ("function", "javascript",
                                                                   (19, 21))
    assert (show.kind, show.language, show.lines) == ("function", "javascript", (23, 25))
    assert validate.parent == "html/body/script"
    assert validate.text.strip().startswith("function validateLogin(form) {")
    script = named["html/body/script"]
    assert script.kind == "script" and "<script>" in script.text
    assert named["html/head/style"].kind == "style"
    assert_covers(PAGE_HTML, parsed.entities)


def test_a_page_that_fits_still_has_its_script_functions_as_entities() -> None:
    """Whatever the budget, an element holding a script is split so that the script's
    functions are entities; the rest stays whole."""
    parsed = markup_entities(PAGE_HTML, "html", budget_tokens=2000)
    named = by_entity(parsed.entities)
    assert named["validateLogin"].lines == (19, 21)
    assert named["html/body/div#main"].lines == (10, 17)
    assert named["html/head"].lines == (3, 8)
    assert_covers(PAGE_HTML, parsed.entities)


def test_an_element_over_the_budget_is_split_with_nothing_dropped() -> None:
    """A long text is cut at line ends; the later parts repeat the start tag's line;
    no part is over the budget."""
    body = "\n".join(f"    Sentence {i} of a paragraph far longer than one chunk holds."
                     for i in range(80))
    source = f"<doc>\n  <title>Notes</title>\n  <para>\n{body}\n  </para>\n</doc>\n"
    parts = markup_entities(source, "xml", budget_tokens=100).entities
    para = [p for p in parts if p.entity == "doc/para"]
    assert len(para) > 5
    assert all(p.text.startswith("  <para>\n") for p in para)
    assert all(estimate_code_tokens(p.text) <= 100 for p in parts)
    assert [p.lines for p in para] == sorted(p.lines for p in para)
    assert_covers(source, parts)


def test_small_anonymous_siblings_are_packed_and_named_by_their_tag() -> None:
    """300 `<li>` make a few parts named `.../ul/li`, each within the budget."""
    items = "".join(f"    <li>Item number {i}</li>\n" for i in range(300))
    source = f"<html>\n<body>\n  <ul>\n{items}  </ul>\n</body>\n</html>\n"
    parts = markup_entities(source, "html", budget_tokens=200).entities
    packs = [p for p in parts if p.entity == "html/body/ul/li"]
    assert 5 < len(packs) < 60
    assert all(estimate_code_tokens(p.text) <= 200 for p in packs)
    assert_covers(source, parts)


def test_opening_tags_on_one_line_still_give_the_children_entities() -> None:
    """`<html><body>` on one line: the body is still split into its children."""
    source = ("<html><body>\n" + "".join(f"<div id='d{i}'>\n" + "text words here\n" * 20
                                         + "</div>\n" for i in range(4))
              + "</body></html>\n")
    parts = markup_entities(source, "html", budget_tokens=100).entities
    assert {"html/body/div#d0", "html/body/div#d3"} <= {p.entity for p in parts}
    assert_covers(source, parts)


def test_malformed_xml_becomes_line_windows_with_a_note() -> None:
    """Markup that does not parse never raises: line windows, and a note why."""
    source = "<config>\n  <a>1</b>\n  <<<>>> &&&\n<c attr=>\n</d></e>\n<<<\nplain text\n"
    parsed = markup_entities(source, "xml", budget_tokens=20)
    assert parsed.note is not None and "does not parse" in parsed.note
    assert parsed.entities and {p.kind for p in parsed.entities} == {"lines"}
    assert_covers(source, parsed.entities)


def test_unclosed_html_elements_nest_deeply_without_failing() -> None:
    """Thousands of unclosed `<div>` (one more level each) are cut, not recursed into."""
    source = "<html><body>\n" + "".join(f"<div>row {i}\n" for i in range(3000)) + "</body>\n"
    parts = markup_entities(source, "html", budget_tokens=200).entities
    assert_covers(source, parts)


@pytest.mark.parametrize("language", ["xml", "html"])
def test_a_file_without_elements_is_windows(language: str) -> None:
    """Text with no element at all is still read, as windows with a note."""
    parsed = markup_entities("just some words\nand more\n", language,  # type: ignore[arg-type]
                             budget_tokens=50)
    assert parsed.note and [p.kind for p in parsed.entities] == ["lines"]


def test_the_extractor_yields_segments_whose_chunks_carry_the_hint(tmp_path: Path) -> None:
    """Segments keep language, kind, entity, parent and lines; a chunk's keyword terms
    hold the hint and its words, so `HelloWorldExample` and `hello world` find it."""
    path = tmp_path / "web.xml"
    path.write_text(WEB_XML)
    segments = list(MarkupExtractor().extract(path, Limits(chunk_tokens=100)))
    hello = next(s for s in segments if s.entity == "web-app/servlet[HelloWorldExample]")
    assert (hello.language, hello.kind, hello.parent, hello.lines) == (
        "xml", "element", "web-app", (7, 11))
    chunks = list(chunk_segments(segments, 100))
    chunk = next(c for c in chunks if c.entity == hello.entity)
    assert chunk.terms is not None
    assert "HelloWorldExample" in chunk.terms and "hello world example" in chunk.terms
    page = tmp_path / "login.htm"
    page.write_text(PAGE_HTML)
    languages = {s.language for s in MarkupExtractor().extract(page, Limits())}
    assert languages == {"html", "javascript"}
