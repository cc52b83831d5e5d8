"""The web dashboard in a real browser: Debian's Chromium, driven by Playwright, against a
`gristmill serve` subprocess, doing what a user does: token, start a job, watch it,
read the failures, search.

Set ``GRISTMILL_SCREENSHOT=PATH`` to also start a second job and save a 1280x800
screenshot while it runs (``docs/dashboard.png`` is made this way).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from http_server import TOKEN, Server, job_processes, start_server
from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

from process_tools import env_for

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
# Enough small files that the job runs for seconds at a few hundred items/s, so the page
# shows progress between 0 and the total (events come every 0.5 s).
N_NOTES = 3000
NEEDLE = "zqdashneedle"
READ_TOKEN = "dashboard-read-only-token"
JOB_TIMEOUT_MS = 180_000
_WORDS = ("lease batch window worker chunk index vector keyword token page heading catalog "
          "embedding ingest resume crash memory bounded stream archive scan document").split()


def _notes(folder: Path, n: int, offset: int = 0) -> None:
    folder.mkdir(parents=True)
    for i in range(n):
        words = " ".join(_WORDS[(i * 7 + j) % len(_WORDS)] for j in range(60))
        (folder / f"note{offset + i:05d}.txt").write_text(f"Note {offset + i}. {words}.\n")


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source root: many small notes, one with the needle (after emoji, before markup
    that must stay text), a truncated PDF that must fail and an empty file, skipped."""
    base = tmp_path_factory.mktemp("dashboard").resolve() / "root"
    notes = base / "notes"
    _notes(notes, N_NOTES)
    (notes / "note01234.txt").write_text(
        f"🐦😀 The {NEEDLE} is here. <img src=x onerror=\"window.pwned=1\"> <b>not bold</b>\n")
    (notes / "broken.pdf").write_bytes(b"%PDF-1.7\n garbage")
    (notes / "empty.txt").write_text("")
    if os.environ.get("GRISTMILL_SCREENSHOT"):  # a longer job, more kinds of failure
        more = base / "more"
        _notes(more, 3 * N_NOTES, offset=N_NOTES)
        for i in range(3):
            (more / f"a-scan{i}.pdf").write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * (i + 1))
        (more / "a-report.docx").write_bytes(b"PK\x03\x04 not a zip")
        (more / "a-data.bin").write_bytes(bytes(range(256)))
    return base


@pytest.fixture
def server(root: Path, tmp_path: Path) -> Iterator[Server]:
    """`gristmill serve` with an admin token and, in gristmill.toml, a read-only one."""
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    digest = hashlib.sha256(READ_TOKEN.encode()).hexdigest()
    (cwd / "gristmill.toml").write_text(
        f'[[api_tokens]]\nname = "viewer"\nsha256 = "{digest}"\nscope = "read"\n')
    env = env_for(home, source_roots=str(root), api_token=TOKEN, workers="2")
    running = start_server(env, home, tmp_path / "serve.log", cwd=cwd)
    yield running
    running.stop()
    for proc in job_processes(home):  # only ever a failed test's leftover
        proc.kill()
    psutil.wait_procs(job_processes(home), timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        why = f"{CHROMIUM} is missing (apt-get install chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"{why}: CI must run the dashboard test")
        pytest.skip(why)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM),
                                              args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, server: Server) -> Iterator[Page]:
    """The dashboard, watched for script errors and for requests to any other host."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    opened.on("request", lambda request: None if request.url.startswith(server.url)
              else problems.append(f"external request: {request.url}"))
    opened.goto(server.url)
    yield opened
    context.close()
    assert problems == []


def _start_job(page: Page, source: Path, collection: str) -> Locator:
    """Fill in and submit the form; the new job's card."""
    page.get_by_label("Source folder").fill(str(source))
    page.get_by_label("Collection").fill(collection)
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-form-message")).to_contain_text("queued")
    job_id = page.locator("#job-form-message").inner_text().split("#")[1].split()[0]
    return page.locator(f'#jobs li[data-job-id="{job_id}"]')


def _record_progress(card: Locator) -> None:
    """Record every (state, done, total) the card shows, in the page itself."""
    card.evaluate("""el => {
        window.seen = [];
        const note = () => window.seen.push(
            [el.dataset.state, Number(el.dataset.done), Number(el.dataset.total)]);
        note();
        new MutationObserver(note).observe(el, {attributes: true,
            attributeFilter: ['data-state', 'data-done', 'data-total']});
    }""")


def _use_token(page: Page, token: str, status: str = "connected") -> None:
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#auth-status")).to_have_text(status)


def test_the_dashboard_starts_watches_and_searches_a_job(
        page: Page, server: Server, root: Path) -> None:
    """Without a token the page says so; a read-only token is labelled so and its job
    is refused with the server's reason; with the admin token a job started from the
    form shows progress moving and its failures as they happen, ends succeeded, its bad
    files appear among the grouped failures, and the search box finds the needle's file
    by its plural, the needle marked in the server's snippet (markup as text)."""
    expect(page.locator("#auth-status")).to_have_text("token required")
    expect(page.locator("#jobs")).to_contain_text("Token required")

    _use_token(page, READ_TOKEN, "connected · read-only")  # asked GET /api/v1/token
    expect(page.locator("#jobs")).to_contain_text("No jobs yet")
    page.get_by_label("Source folder").fill(str(root / "notes"))
    page.get_by_role("button", name="Start job").click()
    expect(page.locator("#job-form-message")).to_contain_text("'viewer' is read-only")
    expect(page.locator("#auth-status")).to_have_text("connected · read-only")

    _use_token(page, TOKEN)
    card = _start_job(page, root / "notes", "notes")
    _record_progress(card)
    expect(card.locator(".badge").first).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)

    seen = page.evaluate("window.seen")
    total = N_NOTES + 2
    moving = sorted({done for state, done, n in seen if state == "running" and 0 < done < n})
    assert moving, f"no progress between 0 and the total was shown: {seen}"
    assert seen[-1] == ["succeeded", total, total]
    expect(card.locator(".progress-text")).to_have_text(f"{total:,} / {total:,}100%")
    expect(card.locator(".job-stats")).to_contain_text("skipped 1failed 1")
    expect(card.locator(".job-failures")).to_contain_text("broken.pdf")  # its event
    expect(card.locator(".job-failures")).to_contain_text("empty.txt")
    assert page.locator("#throughput svg path.line").count() == 1  # measured while it ran

    groups = page.locator("#errors .group")
    expect(groups).to_have_count(2)
    expect(groups.nth(0).locator(".badge")).to_have_text("failed")  # failures first
    expect(groups.nth(0)).to_contain_text("broken.pdf")
    expect(groups.nth(1).locator(".badge")).to_have_text("skipped")
    expect(groups.nth(1)).to_contain_text("empty.txt")

    # The plural finds and marks the singular (the server's snippet, stemmed as the
    # index does); the emoji before it must not shift the marked span (UTF-16 in JS).
    page.get_by_label("Search query").fill(f"{NEEDLE}s")
    page.get_by_role("button", name="Search", exact=True).click()
    hit = page.locator("#search-results li.hit").first
    expect(hit).to_have_attribute("data-source", str(root / "notes" / "note01234.txt"))
    expect(hit.locator("mark")).to_have_text(NEEDLE)
    expect(hit.locator(".hit-text")).to_contain_text(f"🐦😀 The {NEEDLE} is here.")
    expect(hit.locator(".hit-text")).to_contain_text('<img src=x onerror="window.pwned=1">')
    assert page.locator("#search-results img, #search-results b").count() == 0
    assert page.evaluate("window.pwned") is None

    shot = os.environ.get("GRISTMILL_SCREENSHOT")
    if shot:
        _screenshot_with_a_running_job(page, root, Path(shot))


def _screenshot_with_a_running_job(page: Page, root: Path, path: Path) -> None:
    """Start a second job, save the page while it runs part-way through, cancel it."""
    card = _start_job(page, root / "more", "more-notes")
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while True:  # best effort: the picture is the better for a job part-way through
        state, done, total = card.evaluate(
            "el => [el.dataset.state, Number(el.dataset.done), Number(el.dataset.total)]")
        if state in ("succeeded", "failed", "cancelled") or (
                state == "running" and total and done >= 0.55 * total):
            break
        assert time.monotonic() < deadline, "the second job made no progress"
        page.wait_for_timeout(50)
    with page.expect_response(lambda response: "/api/v1/errors" in response.url):
        page.get_by_role("button", name="Refresh failures").click()  # those so far
    page.get_by_label("Search query").fill(f"{NEEDLE} worker lease")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#search-message")).to_contain_text("hits")
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path))
    cancel = card.get_by_role("button", name="Cancel")
    if cancel.is_visible():
        cancel.click()
    expect(card).to_have_attribute("data-state", re.compile("^(cancelled|succeeded)$"),
                                   timeout=JOB_TIMEOUT_MS)
