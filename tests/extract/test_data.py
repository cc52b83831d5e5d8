"""Structured data: JSON, JSON Lines and XML as ``path: value`` / ``tag: text`` lines."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gristmill.errors import ExtractionError, LimitExceeded, Unsupported
from gristmill.extract.base import Extractor, Limits, Segment
from gristmill.extract.data import (
    EXTRACTORS,
    JsonExtractor,
    JsonLinesExtractor,
    XmlExtractor,
)

MB = 1024 * 1024
REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS = REPO_ROOT.parent / "shared" / "corpus" / "unstructured-example-docs"


def extract(extractor: Extractor, path: Path, limits: Limits | None = None) -> list[Segment]:
    return list(extractor.extract(path, limits or Limits()))


def parts(segments: list[Segment]) -> list[tuple[str | None, str]]:
    return [(s.heading, s.text) for s in segments]


def all_text(segments: list[Segment]) -> str:
    return "\n\n".join(s.text for s in segments)


def write(path: Path, text: str | bytes) -> Path:
    if isinstance(text, str):
        path.write_text(text, encoding="utf-8")
    else:
        path.write_bytes(text)
    return path


# Run in a fresh interpreter so its peak RSS is this extraction's alone; RSS (unlike
# tracemalloc) also counts what lxml allocates in C.
_PEAK_RSS_SCRIPT = """
import resource, sys
from pathlib import Path
from gristmill.extract import data
from gristmill.extract.base import Limits

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux

extractor = getattr(data, sys.argv[1])()
assert sum(1 for _ in extractor.extract(Path(sys.argv[2]), Limits()))
before = peak()
assert sum(1 for _ in extractor.extract(Path(sys.argv[3]), Limits())) > 10
print(peak() - before)
"""


def peak_rss_growth(extractor: str, small: Path, big: Path) -> int:
    """How much more peak memory reading ``big`` takes than reading ``small``."""
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, extractor, str(small), str(big)],
        capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout)


def test_extractors_declare_the_protocol() -> None:
    """Each extractor has a unique name, version 1 and lower-case dotted extensions."""
    assert [e.name for e in EXTRACTORS] == ["json", "jsonl", "xml"]
    for extractor in EXTRACTORS:
        assert isinstance(extractor, Extractor)
        assert extractor.version == 1
        assert all(ext.startswith(".") and ext == ext.lower() for ext in extractor.extensions)


# --- JSON --------------------------------------------------------------------------------


def test_json_top_level_keys_become_sections(tmp_path: Path) -> None:
    """Scalars at the top share an unheaded segment; each nested key is its own section,
    with its nested members as paragraphs."""
    doc = {
        "title": "Quarterly report",
        "version": 3,
        "author": {"name": "Ada Lovelace", "emails": ["ada@example.org", "ada@home.org"]},
        "tags": ["finance", "q3"],
    }
    path = write(tmp_path / "a.json", json.dumps(doc, indent=2))
    assert parts(extract(JsonExtractor(), path)) == [
        (None, "title: Quarterly report\nversion: 3"),
        ("author", "author.name: Ada Lovelace\n\n"
                   "author.emails[0]: ada@example.org\n"
                   "author.emails[1]: ada@home.org"),
        ("tags", "tags[0]: finance\ntags[1]: q3"),
    ]


def test_json_array_of_records_is_one_paragraph_per_record(tmp_path: Path) -> None:
    """A top-level list of objects reads as records separated by blank lines."""
    records = [{"sku": "GRD-8842", "name": "Garden Trowel", "price": 12.5},
               {"sku": "GRD-1290", "name": "Watering Can", "price": 18.0}]
    path = write(tmp_path / "a.json", json.dumps(records))
    assert parts(extract(JsonExtractor(), path)) == [(
        None,
        "[0].sku: GRD-8842\n[0].name: Garden Trowel\n[0].price: 12.5\n\n"
        "[1].sku: GRD-1290\n[1].name: Watering Can\n[1].price: 18.0",
    )]


def test_json_nesting_paths(tmp_path: Path) -> None:
    """Objects in lists in objects get full dotted paths with [index] steps."""
    doc = {"orders": [{"id": 7, "lines": [{"item": {"sku": "A-1", "qty": 2}}]}]}
    path = write(tmp_path / "a.json", json.dumps(doc))
    assert extract(JsonExtractor(), path)[0].text == (
        "orders[0].id: 7\norders[0].lines[0].item.sku: A-1\norders[0].lines[0].item.qty: 2"
    )


def test_json_scalars_are_kept_as_written(tmp_path: Path) -> None:
    """Numbers keep their spelling (no float rounding, no digit limit); literals read as
    JSON writes them."""
    digits = "9" * 5000
    raw = ('{"price": 24.990, "tiny": 1e-400, "big": ' + digits + ', "yes": true, '
           '"no": false, "none": null, "nan": NaN, "empty": ""}')
    path = write(tmp_path / "a.json", raw)
    assert extract(JsonExtractor(), path)[0].text.splitlines() == [
        "price: 24.990", "tiny: 1e-400", f"big: {digits}", "yes: true", "no: false",
        "none: null", "nan: NaN", "empty:",
    ]


def test_json_awkward_keys_are_quoted(tmp_path: Path) -> None:
    """Keys with dots, brackets or nothing at all are written ["like this"]."""
    doc = {"a.b": 1, "": 2, "x": {"first name": "Ada", "[0]": 3}}
    path = write(tmp_path / "a.json", json.dumps(doc))
    assert parts(extract(JsonExtractor(), path)) == [
        (None, '["a.b"]: 1\n[""]: 2'), ("x", 'x.first name: Ada\nx["[0]"]: 3'),
    ]


def test_json_lines_named_json_are_read_as_json_lines(tmp_path: Path) -> None:
    """A .json file holding one value per line is read as JSON Lines."""
    path = write(tmp_path / "a.json", '{"n": 1}\n{"n": 2}\n')
    assert parts(extract(JsonExtractor(), path)) == [(None, "n: 1\n\nn: 2")]


def test_json_with_trailing_garbage_is_invalid(tmp_path: Path) -> None:
    """Extra data on the same line is a plain syntax error, not JSON Lines."""
    with pytest.raises(ExtractionError) as caught:
        extract(JsonExtractor(), write(tmp_path / "a.json", '{"n": 1} x'))
    assert caught.value.reason == "invalid JSON: Extra data at line 1, column 10"


def test_json_scalar_document(tmp_path: Path) -> None:
    """A document that is a single string yields that string."""
    path = write(tmp_path / "a.json", '"just a sentence"')
    assert parts(extract(JsonExtractor(), path)) == [(None, "just a sentence")]


def test_json_utf16_with_bom_is_decoded(tmp_path: Path) -> None:
    """A UTF-16 file with a byte-order mark decodes like UTF-8 would."""
    path = write(tmp_path / "a.json", '{"city": "Köln ☃"}'.encode("utf-16"))
    assert extract(JsonExtractor(), path)[0].text == "city: Köln ☃"


def test_invalid_json_names_line_and_column(tmp_path: Path) -> None:
    """A syntax error is reported with its line and column."""
    path = write(tmp_path / "a.json", '{"a": 1,\n "b": }')
    with pytest.raises(ExtractionError) as caught:
        extract(JsonExtractor(), path)
    assert caught.value.reason == "invalid JSON: Expecting value at line 2, column 7"


@pytest.mark.parametrize("opener,closer", [("[", "]"), ('{"a":', "}")])
def test_100k_deep_json_is_refused_not_crashed(tmp_path: Path, opener: str, closer: str) -> None:
    """100,000 levels of nesting raise LimitExceeded, never RecursionError."""
    path = write(tmp_path / "deep.json", opener * 100_000 + "1" + closer * 100_000)
    with pytest.raises(LimitExceeded, match="nested too deeply"):
        extract(JsonExtractor(), path)


def test_deep_but_parseable_json_is_walked(tmp_path: Path) -> None:
    """Nesting the parser accepts is walked without recursion into one long path."""
    path = write(tmp_path / "deep.json", '{"a":' * 300 + '"leaf"' + "}" * 300)
    assert extract(JsonExtractor(), path)[0].text == ".".join(["a"] * 300) + ": leaf"


def test_json_over_max_text_chars_is_refused(tmp_path: Path) -> None:
    """Rendered text past max_text_chars raises LimitExceeded naming the setting."""
    path = write(tmp_path / "a.json", json.dumps([{"word": "x" * 50} for _ in range(20)]))
    with pytest.raises(LimitExceeded, match=r"JSON text exceeds 500 characters \(max_text_chars\)"):
        extract(JsonExtractor(), path, Limits(max_text_chars=500))


def test_json_file_far_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    """A file more than four bytes per allowed character is refused before parsing."""
    path = write(tmp_path / "a.json", "[" + "1," * 1000 + "1]")
    with pytest.raises(LimitExceeded, match="JSON file of 2,003 bytes"):
        extract(JsonExtractor(), path, Limits(max_text_chars=100))


def test_big_json_is_cut_into_segments_of_about_1mb(tmp_path: Path) -> None:
    """A large document comes in ~1 MB segments cut between records, none lost."""
    records = [{"id": i, "text": f"record {i} " + "lorem ipsum " * 20} for i in range(20_000)]
    path = write(tmp_path / "a.json", json.dumps({"rows": records}))
    segments = extract(JsonExtractor(), path)
    assert len(segments) > 3
    assert all(len(s.text) <= 2 * MB and s.heading == "rows" for s in segments)
    assert all(s.text.startswith("rows[") for s in segments)
    text = all_text(segments)
    assert "rows[0].id: 0\n" in text and "rows[19999].id: 19999\n" in text


@pytest.mark.parametrize("content", ["", "  \n", "{}", "[[], {}]"])
def test_json_without_values_is_unsupported(tmp_path: Path, content: str) -> None:
    """Empty files and documents holding no scalar are skipped, not failed."""
    with pytest.raises(Unsupported):
        extract(JsonExtractor(), write(tmp_path / "a.json", content))


# --- JSON Lines --------------------------------------------------------------------------


def test_jsonl_records_are_paragraphs(tmp_path: Path) -> None:
    """Each line is a record with paths relative to it; blank lines are ignored."""
    path = write(tmp_path / "a.jsonl", '{"sku": "A", "dims": {"w": 2}}\n\n["x", 1]\n"plain"\n')
    assert parts(extract(JsonLinesExtractor(), path)) == [
        (None, "sku: A\ndims.w: 2\n\n[0]: x\n[1]: 1\n\nplain"),
    ]


def test_bad_ndjson_line_is_skipped_and_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A malformed line is skipped with a warning naming it; the lines around it remain."""
    path = write(tmp_path / "a.ndjson", '{"n": "first"}\n{"n": broken\n{"n": "third"}\n')
    with caplog.at_level(logging.WARNING, logger="gristmill.extract.data"):
        segments = extract(JsonLinesExtractor(), path)
    assert all_text(segments) == "n: first\n\nn: third"
    assert "skipped 1 bad JSON Lines record(s), first at line 2" in caplog.text


def test_jsonl_with_only_bad_lines_fails(tmp_path: Path) -> None:
    """When no line parses the file fails, naming the count and the first bad line."""
    path = write(tmp_path / "a.jsonl", "\nnot json\n{also not}\n")
    with pytest.raises(ExtractionError) as caught:
        extract(JsonLinesExtractor(), path)
    assert caught.value.reason.startswith(
        "no valid JSON Lines record: 2 bad line(s), first at line 2: Expecting value"
    )


def test_deep_jsonl_record_is_a_bad_line(tmp_path: Path) -> None:
    """A 100k-deep record counts as one bad line instead of crashing the file."""
    path = write(tmp_path / "a.jsonl", '{"ok": 1}\n' + "[" * 100_000 + "]" * 100_000 + "\n")
    assert all_text(extract(JsonLinesExtractor(), path)) == "ok: 1"


def test_large_ndjson_streams(tmp_path: Path) -> None:
    """200,000 lines come through whole, in ~1 MB segments, in well under a minute."""
    with (tmp_path / "big.ndjson").open("w", encoding="utf-8") as fh:
        for i in range(200_000):
            fh.write(json.dumps({"id": i, "name": f"rec{i}", "tags": ["a", "b"]}) + "\n")
    started = time.monotonic()
    segments = extract(JsonLinesExtractor(), tmp_path / "big.ndjson")
    assert time.monotonic() - started < 60
    assert len(segments) > 5
    assert all(len(s.text) <= 2 * MB for s in segments)
    assert segments[0].text.startswith("id: 0\nname: rec0\ntags[0]: a\ntags[1]: b\n\nid: 1\n")
    assert segments[-1].text.endswith("id: 199999\nname: rec199999\ntags[0]: a\ntags[1]: b")


def test_ndjson_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Reading a ~30 MB NDJSON file raises peak memory by far less than its size."""
    line = json.dumps({"text": "lorem ipsum dolor sit amet " * 10}) + "\n"
    small = write(tmp_path / "small.ndjson", line)
    big = write(tmp_path / "big.ndjson", line * 120_000)
    assert big.stat().st_size > 30 * MB
    assert peak_rss_growth("JsonLinesExtractor", small, big) < 16 * MB


def test_jsonl_over_max_text_chars_is_refused(tmp_path: Path) -> None:
    """Streaming still stops at max_text_chars."""
    path = write(tmp_path / "a.jsonl", '{"w": "abcdefghij"}\n' * 100)
    with pytest.raises(LimitExceeded, match=r"max_text_chars"):
        extract(JsonLinesExtractor(), path, Limits(max_text_chars=400))


def test_empty_jsonl_is_unsupported(tmp_path: Path) -> None:
    """A blank file is skipped."""
    with pytest.raises(Unsupported):
        extract(JsonLinesExtractor(), write(tmp_path / "a.jsonl", "\n\n"))


# --- XML ---------------------------------------------------------------------------------

FACTBOOK = """<?xml version="1.0" encoding="UTF-8"?>
<factbook>
  <country>
    <name>Canada</name>
    <capital>Ottawa</capital>
  </country>
  <country>
    <name>Trinidad &amp; Tobago</name>
    <capital>Port of Spain</capital>
  </country>
</factbook>
"""


def test_xml_records_group_by_root_child_with_title_heading(tmp_path: Path) -> None:
    """Each child of the root is a section headed by its name-like child."""
    path = write(tmp_path / "a.xml", FACTBOOK)
    assert parts(extract(XmlExtractor(), path)) == [
        ("Canada", "name: Canada\ncapital: Ottawa"),
        ("Trinidad & Tobago", "name: Trinidad & Tobago\ncapital: Port of Spain"),
    ]


def test_xml_document_structure(tmp_path: Path) -> None:
    """Mixed content stays one line; attributes, namespaces and root text are kept."""
    xml = """<?xml version="1.0"?>
<doc xmlns="urn:x" xmlns:dc="urn:dc" version="2">
  Intro at the root.
  <section id="s1">
    <title>First section</title>
    <p>Hello <b>world</b>, again.<br/>Next line.</p>
    <p><i>Note:</i> starts with markup.</p>
    <dc:creator>Ada</dc:creator>
    <list><item>one</item><item>two</item></list>
  </section>
  <section title="Second"><p>Body &amp; more</p></section>
  <section><p>untitled</p></section>
  <section><p>untitled too</p></section>
</doc>
"""
    path = write(tmp_path / "a.xml", xml)
    assert parts(extract(XmlExtractor(), path)) == [
        (None, "doc@version: 2\ndoc: Intro at the root."),
        ("First section", "section@id: s1\ntitle: First section\n"
                          "p: Hello world, again. Next line.\np: Note: starts with markup.\n"
                          "creator: Ada\nitem: one\nitem: two"),
        ("Second", "section@title: Second\np: Body & more"),
        ("section", "p: untitled\n\np: untitled too"),
    ]


def test_xml_with_one_huge_element_streams_its_children(tmp_path: Path) -> None:
    """A root child far larger than one line allows still yields every child's text."""
    rows = "".join(f"<row><v>value {i}</v></row>" for i in range(20_000))
    path = write(tmp_path / "a.xml", f"<root><table>{rows}</table></root>")
    text = all_text(extract(XmlExtractor(), path))
    assert text.startswith("v: value 0\nv: value 1\n")
    assert text.endswith("v: value 19999")
    assert text.count("v: value") == 20_000


def test_undeclared_namespace_prefix_is_malformed(tmp_path: Path) -> None:
    """A prefix with no xmlns declaration fails with libxml2's reason, not a crash on
    the odd tag name it reports first."""
    path = write(tmp_path / "a.xml", "<r><p>text</p><dc:creator>Ada</dc:creator></r>")
    with pytest.raises(ExtractionError) as caught:
        extract(XmlExtractor(), path)
    assert caught.value.reason.startswith(
        "malformed XML: Namespace prefix dc on creator is not defined"
    )


def test_malformed_xml_gives_a_short_reason(tmp_path: Path) -> None:
    """A tag mismatch fails with the parser's message and position."""
    path = write(tmp_path / "a.xml", "<a><b>text</a>")
    with pytest.raises(ExtractionError) as caught:
        extract(XmlExtractor(), path)
    assert caught.value.reason.startswith("malformed XML: Opening and ending tag mismatch")
    assert "line 1" in caught.value.reason and "\n" not in caught.value.reason


def laughs(levels: int) -> str:
    """The internal DTD of a "billion laughs" file: ``&lolN;`` is 10**N times "lol"."""
    entities = ['<!ENTITY lol0 "lol">']
    for i in range(1, levels + 1):
        entities.append(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">')
    return "".join(entities)


def test_nested_entities_are_not_expanded(tmp_path: Path) -> None:
    """Entity references in text stay unexpanded: only the literal text comes out."""
    xml = (f'<?xml version="1.0"?><!DOCTYPE lolz [{laughs(3)}]>'
           "<lolz><a>before &lol3; after</a><b>plain</b></lolz>")
    text = all_text(extract(XmlExtractor(), write(tmp_path / "lol.xml", xml)))
    assert text == "a: before after\n\nb: plain"


def test_billion_laughs_is_stopped(tmp_path: Path) -> None:
    """Nine levels of tenfold entities: libxml2's amplification cap refuses the file at
    once (or, with an older libxml2, it yields the literal text)."""
    xml = (f'<?xml version="1.0"?><!DOCTYPE lolz [{laughs(9)}]>'
           "<lolz><a>before &lol9; after</a><b>plain</b></lolz>")
    path = write(tmp_path / "lol.xml", xml)
    started = time.monotonic()
    try:
        text = all_text(extract(XmlExtractor(), path))
    except LimitExceeded as exc:
        assert exc.reason.startswith("XML over a parser safety limit: Maximum entity")
    else:
        assert text == "a: before after\n\nb: plain"
    assert time.monotonic() - started < 5


def test_billion_laughs_in_an_attribute_hits_the_parser_limit(tmp_path: Path) -> None:
    """Attribute values are always expanded by libxml2; its amplification cap stops it."""
    xml = (f'<?xml version="1.0"?><!DOCTYPE lolz [{laughs(9)}]>'
           '<lolz><a x="&lol9;">t</a></lolz>')
    with pytest.raises(LimitExceeded, match="amplification"):
        extract(XmlExtractor(), write(tmp_path / "lol.xml", xml))


def test_external_entities_are_never_fetched(tmp_path: Path) -> None:
    """XXE: a SYSTEM entity (file:///etc/passwd, or a local secret) is not read."""
    secret = write(tmp_path / "secret.txt", "TOPSECRET-42")
    dtd = write(tmp_path / "ext.dtd", '<!ENTITY leak "DTDLEAK-42">')
    xml = f"""<?xml version="1.0"?>
<!DOCTYPE foo [
  <!ENTITY passwd SYSTEM "file:///etc/passwd">
  <!ENTITY secret SYSTEM "{secret.as_uri()}">
  <!ENTITY % ext SYSTEM "{dtd.as_uri()}">
  %ext;
]>
<foo><a>before &passwd; &secret; &leak; after</a></foo>
"""
    text = all_text(extract(XmlExtractor(), write(tmp_path / "xxe.xml", xml)))
    assert text == "a: before after"
    for leaked in ("root:", "TOPSECRET", "DTDLEAK"):
        assert leaked not in text


def test_external_entity_in_an_attribute_fails_cleanly(tmp_path: Path) -> None:
    """An attribute naming an external entity is refused, not resolved."""
    secret = write(tmp_path / "secret.txt", "TOPSECRET-42")
    xml = (f'<!DOCTYPE foo [<!ENTITY s SYSTEM "{secret.as_uri()}">]>'
           '<foo a="&s;">x</foo>')
    with pytest.raises(ExtractionError, match="external entity"):
        extract(XmlExtractor(), write(tmp_path / "xxe.xml", xml))


def test_xml_nested_past_the_parser_limit_is_refused(tmp_path: Path) -> None:
    """100,000 levels of elements raise LimitExceeded (libxml2 stops at 256)."""
    path = write(tmp_path / "deep.xml", "<a>" * 100_000 + "x" + "</a>" * 100_000)
    with pytest.raises(LimitExceeded, match="Excessive depth"):
        extract(XmlExtractor(), path)


def test_xml_memory_does_not_grow_with_the_file(tmp_path: Path) -> None:
    """Reading a ~40 MB XML file raises peak memory (libxml2's included) by far less than
    its size: elements are emptied and dropped as they are read."""
    body = "lorem ipsum dolor sit amet " * 200
    small = write(tmp_path / "small.xml", "<rows><row><body>x</body></row></rows>")
    with (tmp_path / "big.xml").open("w", encoding="utf-8") as fh:
        fh.write("<rows>")
        for i in range(8_000):
            fh.write(f'<row id="{i}"><body>{body}</body><n>{i}</n></row>\n')
        fh.write("</rows>")
    assert (tmp_path / "big.xml").stat().st_size > 40 * MB
    assert peak_rss_growth("XmlExtractor", small, tmp_path / "big.xml") < 16 * MB


@pytest.mark.parametrize("codec", ["utf-16", "utf-8-sig"])
def test_xml_byte_order_mark_wins(tmp_path: Path, codec: str) -> None:
    """A BOM decides the encoding, even against a declaration that says otherwise."""
    xml = '<?xml version="1.0" encoding="UTF-8"?><r><city>Köln</city></r>'
    path = write(tmp_path / "a.xml", xml.encode(codec))
    assert all_text(extract(XmlExtractor(), path)) == "city: Köln"


def test_undeclared_legacy_encoding_is_detected(tmp_path: Path) -> None:
    """With neither BOM nor declaration, a cp1252 file is detected, not mis-read."""
    xml = "<r><p>Grüße aus Köln, schöne Straße – “quoted”</p></r>"
    path = write(tmp_path / "a.xml", xml.encode("cp1252"))
    assert all_text(extract(XmlExtractor(), path)) == "p: Grüße aus Köln, schöne Straße – “quoted”"


def test_xml_over_max_text_chars_is_refused(tmp_path: Path) -> None:
    """Streaming XML still stops at max_text_chars."""
    path = write(tmp_path / "a.xml", "<r>" + "<p>abcdefghij</p>" * 100 + "</r>")
    with pytest.raises(LimitExceeded, match="XML text exceeds 1,000 characters"):
        extract(XmlExtractor(), path, Limits(max_text_chars=1000))


@pytest.mark.parametrize("content", ["", "<r/>", "<r><a> </a><!-- note --></r>"])
def test_xml_without_text_is_unsupported(tmp_path: Path, content: str) -> None:
    """Empty files and elements without text are skipped, not failed."""
    with pytest.raises(Unsupported):
        extract(XmlExtractor(), write(tmp_path / "a.xml", content))


# --- The example corpus --------------------------------------------------------------------

_BY_SUFFIX = {ext: extractor for extractor in EXTRACTORS for ext in extractor.extensions}


def _corpus_files() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.suffix.lower() in _BY_SUFFIX)


_FILES = _corpus_files()


@pytest.mark.corpus
@pytest.mark.skipif(not _FILES, reason=f"example corpus not found at {CORPUS}")
@pytest.mark.parametrize(
    "path",
    _FILES or [CORPUS / "absent"],
    ids=lambda p: str(p.relative_to(CORPUS)) if _FILES else "absent",
)
def test_corpus_data_files_yield_text(path: Path) -> None:
    """Every .json, .ndjson and .xml file in the example corpus yields non-blank text."""
    segments = extract(_BY_SUFFIX[path.suffix.lower()], path)
    assert segments
    assert all(segment.text.strip() for segment in segments)
