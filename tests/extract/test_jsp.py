"""JSP pages, tag files and FreeMarker/Velocity templates: Java entities inside markup."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from gristmill.chunking import chunk_segments, estimate_tokens
from gristmill.errors import Unsupported
from gristmill.extract import extractor_for
from gristmill.extract.base import Limits, Segment
from gristmill.extract.jsp import JspExtractor, page_class, template_segments

PAGE = """\
<%-- Licensed to nobody: this comment is dropped. --%>
<%@ page contentType="text/html; charset=UTF-8"
         import="java.util.List, org.acme.billing.*" %>
<%@ taglib prefix="c" uri="http://java.sun.com/jsp/jstl/core" %>
<%@ include file="/WEB-INF/jspf/header.jspf" %>
<%!
    private int visits = 0;

    /** Formats an order total. */
    public String formatTotal(java.math.BigDecimal total) {
        return "$" + total.setScale(2);
    }
%>
<html>
<body>
<h1>Orders for <%= request.getParameter("customer") %></h1>
<%-- Count this visit. --%>
<%
    visits++;
    List<Order> orders = (List<Order>) request.getAttribute("orders");
%>
<c:forEach var="order" items="${orders}">
  <my:widget title="Order ${order.id}">${order.total}</my:widget>
</c:forEach>
<% if (visits > 10) { %>
  <p>Busy day: #{stats.visitCount}</p>
<% } %>
</body>
</html>
"""


def _extract(tmp_path: Path, name: str, text: str, budget: int = 200) -> list[Segment]:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return list(JspExtractor().extract(path, Limits(chunk_tokens=budget)))


def _lines_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.split("\n"), 1) if needle in line)


_DELIMITER_LINE = re.compile(
    r"(?m)^[ \t]*(?:<%!?|%>|</?jsp:(?:declaration|scriptlet)>|<!\[CDATA\[|\]\]>)+[ \t]*$")


def _assert_nothing_lost(text: str, segments: list[Segment],
                         comment: re.Pattern[str] | None = None) -> None:
    """Every non-blank line outside a comment lies in some segment's line range (a line
    holding only delimiters, ``<%!``, ``%>``, ``<jsp:scriptlet>``, has nothing to search)."""
    stripped = comment.sub(lambda m: "\n" * m.group(0).count("\n"), text) if comment else text
    stripped = _DELIMITER_LINE.sub("", stripped)
    covered = {n for s in segments if s.lines for n in range(s.lines[0], s.lines[1] + 1)}
    lost = [n for n, line in enumerate(stripped.split("\n"), 1)
            if line.strip() and n not in covered]
    assert not lost, f"lines in no segment: {lost}"


JSP_COMMENT = re.compile(r"<%--.*?--%>", re.S)


def test_a_page_yields_its_header_members_scriptlets_and_markup(tmp_path: Path) -> None:
    """Directives make one header, the declaration's method and field are Java entities
    named after the page's class, scriptlets are Java, the rest is JSP markup."""
    segments = _extract(tmp_path, "orders.jsp", PAGE)
    by_kind = {s.kind for s in segments}
    assert by_kind == {"header", "field", "method", "scriptlet", "markup"}

    header = next(s for s in segments if s.kind == "header")
    assert (header.language, header.entity, header.lines) == ("jsp", "orders_jsp", (2, 5))
    assert 'import="java.util.List, org.acme.billing.*"' in header.text
    assert "taglib" in header.text and "/WEB-INF/jspf/header.jspf" in header.text

    field = next(s for s in segments if s.kind == "field")
    assert (field.language, field.entity, field.parent) == ("java", "orders_jsp.visits",
                                                            "orders_jsp")
    assert field.lines == (_lines_of(PAGE, "private int visits"),) * 2

    method = next(s for s in segments if s.kind == "method")
    assert method.entity == "orders_jsp.formatTotal(java.math.BigDecimal)"
    assert method.lines == (_lines_of(PAGE, "/** Formats"), _lines_of(PAGE, "return \"$\"") + 1)
    assert method.text.startswith("    /** Formats an order total. */")


def test_scriptlets_are_java_with_their_lines_and_comment(tmp_path: Path) -> None:
    """A scriptlet is one Java entity at its JSP lines, documented by the JSP comment
    right above it; tiny neighbours (``if {`` ... ``}``) are one entity."""
    segments = _extract(tmp_path, "orders.jsp", PAGE)
    scriptlets = [s for s in segments if s.kind == "scriptlet"]
    assert [s.lines for s in scriptlets] == [
        (_lines_of(PAGE, "Count this visit"), _lines_of(PAGE, "request.getAttribute")),
        (_lines_of(PAGE, "if (visits > 10)"), _lines_of(PAGE, "<% } %>"))]
    first, second = scriptlets
    assert first.language == "java" and first.entity == "orders_jsp._jspService"
    assert first.text.startswith("<%-- Count this visit. --%>\n    visits++;")
    assert "if (visits > 10) {" in second.text and second.text.rstrip().endswith("}")
    assert "Licensed to nobody" not in "".join(s.text for s in segments)


def test_markup_keeps_tags_expressions_and_el(tmp_path: Path) -> None:
    """Custom tags, attribute values, expressions and EL stay in the markup text, and
    their identifiers reach the keyword terms of the chunk."""
    segments = _extract(tmp_path, "orders.jsp", PAGE)
    markup = [s for s in segments if s.kind == "markup"]
    assert all(s.language == "jsp" and s.entity is None for s in markup)
    text = "\n".join(s.text for s in markup)
    for needle in ('<c:forEach var="order" items="${orders}">', "${order.total}",
                   'title="Order ${order.id}"', "#{stats.visitCount}",
                   '<%= request.getParameter("customer") %>', "<h1>Orders for"):
        assert needle in text
    assert "visits++" not in text and "<%@" not in text and "<%!" not in text
    assert markup[0].lines == (_lines_of(PAGE, "<html>"), _lines_of(PAGE, "</html>"))
    chunks = list(chunk_segments(markup))
    terms = " ".join(c.terms or "" for c in chunks)
    assert "visit" in terms.split() and "count" in terms.split()  # visitCount, split


def test_nothing_is_lost_and_segments_come_in_file_order(tmp_path: Path) -> None:
    """Every line but comments is in some segment; segments are sorted by line."""
    segments = _extract(tmp_path, "orders.jsp", PAGE)
    _assert_nothing_lost(PAGE, segments, JSP_COMMENT)
    starts = [s.lines[0] for s in segments if s.lines]
    assert starts == sorted(starts)


def test_long_markup_is_cut_within_the_budget_before_elements(tmp_path: Path) -> None:
    """A long page becomes several markup chunks, each within the budget, each cut
    before an element, together covering every line."""
    rows = "\n".join(f'<tr class="row{i}">\n  <td>${{item{i}.name}}</td>\n</tr>'
                     for i in range(60))
    page = f'<%@ page import="java.util.*" %>\n<table>\n{rows}\n</table>\n'
    segments = _extract(tmp_path, "table.jsp", page, budget=60)
    markup = [s for s in segments if s.kind == "markup"]
    assert len(markup) > 5
    assert all(estimate_tokens(s.text) <= 60 for s in markup)
    assert all(s.text.startswith("<tr") for s in markup[1:])
    _assert_nothing_lost(page, segments)


def test_one_huge_line_of_markup_is_cut_at_tags(tmp_path: Path) -> None:
    """Minified HTML on one line becomes several chunks, all naming that line."""
    page = "".join(f"<li><a href='/p/{i}'>product {i}</a></li>" for i in range(200))
    segments = _extract(tmp_path, "min.jsp", page, budget=50)
    assert len(segments) > 10
    assert all(s.lines == (1, 1) and estimate_tokens(s.text) <= 50 for s in segments)
    assert "".join(s.text for s in segments) == page


def test_a_tag_file_and_a_fragment(tmp_path: Path) -> None:
    """A .tag file's directives (tag, attribute) are its header and its scriptlets run
    in doTag; a .jspf fragment without directives is markup and scriptlets."""
    tag = ('<%@ tag body-content="empty" %>\n'
           '<%@ attribute name="price" required="true" type="java.math.BigDecimal" %>\n'
           '<% String shown = price.toPlainString(); %>\n'
           '<span class="price">${price}</span>\n')
    segments = _extract(tmp_path, "price-label.tag", tag)
    assert [(s.kind, s.lines) for s in segments] == [
        ("header", (1, 2)), ("scriptlet", (3, 3)), ("markup", (4, 4))]
    assert segments[0].entity == "price_002dlabel_tag"
    assert segments[1].entity == "price_002dlabel_tag.doTag"
    assert 'name="price"' in segments[0].text

    fragment = ('<div class="footer">\n  <%= new java.util.Date() %>\n'
                '  <% if (user != null) { %>Hello ${user.name}<% } %>\n</div>\n')
    segments = _extract(tmp_path, "footer.jspf", fragment)
    assert {s.kind for s in segments} == {"markup", "scriptlet"}
    scriptlet = next(s for s in segments if s.kind == "scriptlet")
    assert scriptlet.lines == (3, 3) and "if (user != null) {" in scriptlet.text
    markup = next(s for s in segments if s.kind == "markup")
    assert markup.lines == (1, 4) and "Hello ${user.name}" in markup.text
    _assert_nothing_lost(fragment, segments)


def test_the_xml_syntax_of_jspx(tmp_path: Path) -> None:
    """<jsp:directive.page/>, <jsp:declaration> and <jsp:scriptlet> (with CDATA) are read
    like their <% %> forms; <jsp:expression> stays markup."""
    page = ('<jsp:root xmlns:jsp="http://java.sun.com/JSP/Page" version="2.0">\n'
            '<jsp:directive.page import="java.util.Date"/>\n'
            '<jsp:declaration>\n'
            '  String now() { return new Date().toString(); }\n'
            '</jsp:declaration>\n'
            '<jsp:scriptlet><![CDATA[\n'
            '  for (int i = 0; i < 3; i++) { out.println(i); }\n'
            ']]></jsp:scriptlet>\n'
            '<p><jsp:expression>now()</jsp:expression></p>\n'
            '</jsp:root>\n')
    segments = _extract(tmp_path, "clock.jspx", page)
    assert [(s.kind, s.entity, s.lines) for s in segments] == [
        ("markup", None, (1, 1)),
        ("header", "clock_jspx", (2, 2)),
        ("method", "clock_jspx.now()", (4, 4)),
        ("scriptlet", "clock_jspx._jspService", (7, 7)),
        ("markup", None, (9, 10))]
    assert "i < 3" in segments[3].text and "CDATA" not in segments[3].text
    _assert_nothing_lost(page, segments)
    assert "<jsp:expression>now()</jsp:expression>" in segments[4].text


FTL = """\
<#import "/lib/common.ftl" as com>
<#-- Shared page layout. -->
<#macro page title>
  <html><head><title>${title}</title></head>
  <body><#nested></body></html>
</#macro>
<#function total items>
  <#local sum = 0>
  <#list items as item><#local sum = sum + item.price></#list>
  <#return sum>
</#function>
<@page title="Cart">
  <p>Total: ${total(cart.items)}</p>
</@page>
"""


def test_freemarker_macros_and_functions_are_entities(tmp_path: Path) -> None:
    """<#macro> and <#function> become entities (the comment above documents the macro),
    the rest is FreeMarker markup."""
    segments = _extract(tmp_path, "layout.ftl", FTL)
    assert [(s.kind, s.entity, s.lines) for s in segments] == [
        ("markup", None, (1, 1)), ("macro", "page", (2, 6)), ("function", "total", (7, 11)),
        ("markup", None, (12, 14))]
    assert all(s.language == "freemarker" for s in segments)
    assert segments[1].text.startswith("<#-- Shared page layout. -->\n<#macro page title>")
    assert "${total(cart.items)}" in segments[3].text
    _assert_nothing_lost(FTL, segments)


VM = """\
## Renders one order.
#macro(orderRow $order)
  <tr>
    #if($order.paid)<td class="paid">#else<td>#end
    $order.id</td>
    #foreach($line in $order.lines)<td>$line.total</td>#end
  </tr>
#end
<table>
#foreach($o in $orders)
  #orderRow($o)
#end
</table>
"""


def test_velocity_macros_are_entities_with_nested_blocks(tmp_path: Path) -> None:
    """#macro(...) ... #end is one entity, however many #if/#foreach blocks it holds;
    the rest is Velocity markup."""
    segments = _extract(tmp_path, "orders.vm", VM)
    assert [(s.kind, s.entity, s.lines) for s in segments] == [
        ("macro", "orderRow", (1, 8)), ("markup", None, (9, 13))]
    assert segments[0].language == "velocity"
    assert "#foreach($line in $order.lines)" in segments[0].text
    assert "#orderRow($o)" in segments[1].text
    _assert_nothing_lost(VM, segments)


def test_a_long_macro_is_split_repeating_its_first_line(tmp_path: Path) -> None:
    """A macro over the budget comes in parts, each beginning with its signature."""
    body = "\n".join(f"  <p>${{row{i}.label}} is ${{row{i}.value}}</p>" for i in range(40))
    source = f"<#macro report rows>\n{body}\n</#macro>\n"
    segments = _extract(tmp_path, "report.ftl", source, budget=60)
    assert len(segments) > 3 and all(s.entity == "report" for s in segments)
    assert all(s.text.startswith("<#macro report rows>") for s in segments)
    assert segments[0].lines[0] == 1 and segments[-1].lines[1] == 42
    _assert_nothing_lost(source, segments)


@pytest.mark.parametrize("opener", ["<%", "<%!", "<%@", "<%--", "<%="])
def test_an_unterminated_construct_reads_the_rest_as_markup(
        tmp_path: Path, opener: str, caplog: pytest.LogCaptureFixture) -> None:
    """A broken file still indexes: what follows the open construct is markup, with a
    note in the log, and the constructs before it are still entities."""
    page = ('<%@ page import="java.util.*" %>\n<% int n = 1; %>\n<p>${n}</p>\n'
            f'{opener} String broken = "x";\n<div>after</div>\n')
    with caplog.at_level(logging.INFO, logger="gristmill.extract.jsp"):
        segments = _extract(tmp_path, "broken.jsp", page)
    assert [s.kind for s in segments] == ["header", "scriptlet", "markup"]
    assert segments[2].lines == (3, 5) and "<div>after</div>" in segments[2].text
    assert f"unterminated {opener} at line 4" in caplog.text


def test_broken_templates_do_not_fail(tmp_path: Path) -> None:
    """A FreeMarker macro or Velocity macro with no end is read as markup."""
    ftl = _extract(tmp_path, "open.ftl", "<p>hi</p>\n<#macro open>\n  <b>x</b>\n")
    assert [(s.kind, s.lines) for s in ftl] == [("markup", (1, 3))]
    vm = _extract(tmp_path, "open.vm", "<p>hi</p>\n#macro(open)\n  #if($x) y\n#end\n")
    assert [(s.kind, s.lines) for s in vm] == [("markup", (1, 4))]


def test_java_that_does_not_parse_is_kept_as_lines(tmp_path: Path) -> None:
    """A declaration that is not Java is still indexed, at its JSP lines."""
    page = "<p>x</p>\n<%!\n  ))) this is { not java (((\n  ;;; ]]]\n%>\n"
    segments = _extract(tmp_path, "junk.jsp", page)
    java = [s for s in segments if s.language == "java"]
    assert java and java[0].lines[0] >= 2 and java[-1].lines[1] <= 4
    assert "not java" in "".join(s.text for s in java)


def test_page_class_is_the_jasper_class_name() -> None:
    """The page part of entity names is what Jasper calls the servlet."""
    assert page_class(Path("index.jsp")) == "index_jsp"
    assert page_class(Path("my-page.jsp")) == "my_002dpage_jsp"
    assert page_class(Path("2col.jspf")) == "_2col_jspf"


def test_the_registry_gives_jsp_files_to_this_extractor() -> None:
    """Every template suffix is read by the JSP extractor, not as code or text."""
    for name in ("x.jsp", "x.jspx", "x.jspf", "x.tag", "x.tagx", "x.ftl", "x.vm"):
        extractor = extractor_for(Path(name))
        assert isinstance(extractor, JspExtractor), name
    assert extractor_for(Path("X.JSP")) is extractor_for(Path("x.jsp"))


def test_empty_and_unknown_inputs(tmp_path: Path) -> None:
    """An empty file is unsupported; an unknown template language is a caller error."""
    with pytest.raises(Unsupported):
        _extract(tmp_path, "empty.jsp", "  \n")
    with pytest.raises(ValueError, match="jsp, freemarker or velocity"):
        template_segments("x", "thymeleaf")
