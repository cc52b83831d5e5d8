"""Source code, end to end: a folder of code is ingested into entities, found by the
identifiers developers type, narrowed by language, kind and path, on both backends."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from gristmill.knowledge_base import KnowledgeBase

BILLING = """\
package org.acme.billing;

import java.math.BigDecimal;

/** Prices invoices. */
public class InvoiceService {
    private final TaxTable taxTable;

    /** Applies a discount rate to an invoice's total. */
    public BigDecimal applyDiscount(Invoice invoice, BigDecimal rate) {
        BigDecimal total = invoice.total();
        return total.subtract(total.multiply(rate));
    }

    public BigDecimal taxFor(Invoice invoice) {
        return taxTable.rateFor(invoice.region()).multiply(invoice.total());
    }
}
"""

TOOL = '''\
def invoice_service_report(invoices):
    """Totals per customer."""
    return {i.customer: i.total for i in invoices}
'''


def _repository(root: Path) -> Path:
    (root / "src/main/java/org/acme/billing").mkdir(parents=True)
    (root / "src/main/java/org/acme/billing/InvoiceService.java").write_text(BILLING)
    (root / "tools").mkdir()
    (root / "tools/report.py").write_text(TOOL)
    (root / "NOTES.md").write_text("Tax is added after the rebate on every invoice.\n")
    return root


def test_code_is_indexed_as_entities_found_by_identifiers(tmp_path: Path) -> None:
    """`apply discount`, `applyDiscount`, `InvoiceService.applyDiscount` find the method,
    with its qualified name, kind, language and line range; `invoice_service` finds the
    camel-case class and `invoiceServiceReport` the snake_case Python function; filters
    keep to one language, kind or path."""
    repo = _repository(tmp_path / "repo")
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=2) as kb:
        report = kb.ingest([repo])
        assert report.failed == 0
        for query in ("apply discount", "applyDiscount", "InvoiceService.applyDiscount"):
            best = kb.search(query, mode="keyword", k=3)[0]
            assert best.entity == ("org.acme.billing.InvoiceService"
                                   ".applyDiscount(Invoice, BigDecimal)"), query
            assert (best.kind, best.language) == ("method", "java")
            assert best.lines is not None
            first, last = best.lines
            lines = BILLING.splitlines()[first - 1:last]
            assert any("applyDiscount(" in line for line in lines)
            assert "return total.subtract" in "\n".join(lines)
        [python] = kb.search("invoiceServiceReport", mode="keyword", k=5,
                             language="python")
        assert python.entity is not None and "invoice_service_report" in python.entity
        java = kb.search("invoice_service", mode="keyword", k=5, language="java")
        assert java and all(h.entity and "InvoiceService" in h.entity for h in java)
        assert {h.language for h in kb.search("invoice", mode="keyword", k=20,
                                              language="java")} == {"java"}
        assert {h.kind for h in kb.search("invoice", mode="keyword", k=20,
                                          kind="method")} == {"method"}
        assert {Path(h.source).name for h in kb.search(
            "invoice", mode="keyword", k=20, path="tools/*")} == {"report.py"}
        prose = kb.search("rebate", mode="keyword", k=20)
        assert any(h.source.endswith("NOTES.md") and h.entity is None for h in prose)


def test_search_json_adds_entity_kind_language_and_lines(tmp_path: Path) -> None:
    """The CLI's contract: code results keep `source`, `score`, `text` and add `entity`,
    `kind`, `language`, `lines`; `--kind` and `--path` are accepted."""
    repo = _repository(tmp_path / "repo")
    env = dict(os.environ, GRISTMILL_HOME=str(tmp_path / "home"), GRISTMILL_EMBEDDER="none")
    command = [sys.executable, "-m", "gristmill"]
    subprocess.run([*command, "ingest", str(repo)], env=env, check=True,
                   capture_output=True)
    done = subprocess.run([*command, "search", "apply discount", "--json", "--kind",
                           "method", "--path", "src/*.java"], env=env, check=True,
                          capture_output=True, text=True)
    results = json.loads(done.stdout)
    assert results and all(r["kind"] == "method" for r in results)
    best = results[0]
    assert {"source", "score", "text", "entity", "kind", "language", "lines"} <= set(best)
    assert best["language"] == "java" and best["entity"].endswith(
        "applyDiscount(Invoice, BigDecimal)")
    assert isinstance(best["lines"], list) and len(best["lines"]) == 2


def test_oversized_and_minified_sources_are_skipped_with_their_reason(
        tmp_path: Path) -> None:
    """A source file over ``max_source_kb`` and a minified bundle are skipped, each with
    a reason that names the cause; the code beside them is indexed."""
    repo = _repository(tmp_path / "repo")
    (repo / "web").mkdir()
    bundle = "".join(f"function f{i}(a){{return a*{i}}};" for i in range(400))
    (repo / "web/app.bundle.js").write_text(bundle + "\n")
    generated = "\n".join(f"    static final int CODE_{i} = {i};" for i in range(40_000))
    (repo / "src/main/java/org/acme/billing/Codes.java").write_text(
        f"class Codes {{\n{generated}\n}}\n")
    with KnowledgeBase.open(tmp_path / "home", embedder="none", workers=2,
                            max_source_kb=512) as kb:
        report = kb.ingest([repo])
        assert report.failed == 0
        reasons = {Path(example["source"]).name: example["error"]
                   for group in kb.errors() for example in group.examples}
        assert "max_source_kb" in reasons["Codes.java"]
        assert "minified" in reasons["app.bundle.js"]
        assert kb.search("applyDiscount", mode="keyword", k=1)
