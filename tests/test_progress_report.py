"""What a run says about itself: two phases with their own rates and ETAs, a summary
that times each phase, no rate for a run that changed nothing, one job per re-run
ingest, and counts that agree with `status` (or say why they differ)."""

from __future__ import annotations

import itertools
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from docs import make_eml
from gate import Gate
from gristmill.runtime.progress import Progress
from gristmill.runtime.rates import RecentRate
from process_tools import env_for, gristmill, gristmill_json, start

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b[()][A-Z0-9]")
_SHARED = " ".join(["The mill grinds the grain of the valley into flour by the river."] * 12)


def _texts(src: Path, n: int) -> Path:
    """``n`` text files, each a long paragraph shared by all, then one of its own."""
    src.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        own = " ".join(f"word{i}x{j} about sluice number {i}." for j in range(60))
        (src / f"f{i:02d}.txt").write_text(f"{_SHARED}\n\n{own}\n")
    return src


def _ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, done.stderr
    return done.stdout


# -- the arithmetic --------------------------------------------------------------------


def test_a_backlog_at_a_known_rate_gives_its_eta() -> None:
    """600 texts waiting at a steady 10 texts/s are done in 60 s; 400 items at 4/s in
    100 s, the run's ETA being the later of the two."""
    pace = RecentRate()
    for second in range(0, 121):
        rate = pace.update(10 * second, float(second))
    assert abs(rate - 10.0) < 1e-9
    p = Progress(total=500, done=100, chunks=0, embed_backlog=600, embedding=True,
                 extract_rate=4.0, embed_rate=rate)
    assert p.extract_eta == 100.0
    # What the 400 items still to extract will add is counted too: none per item here.
    assert p.embed_eta == 60.0
    assert p.eta == 100.0


def test_the_embedding_eta_does_not_climb_while_items_outpace_embedding() -> None:
    """Items extracted at 5/s (10 texts each) while texts are embedded at 10/s: the
    backlog grows, yet the ETA falls one second per second, matching the real
    remainder, where an ETA counting finished items would climb."""
    items, per_item, extract_per_s, embed_per_s = 100, 10, 5, 10
    extract_pace, embed_pace = RecentRate(), RecentRate()
    etas = []
    for second in range(0, 80):
        done = min(items, extract_per_s * second)
        embedded = min(done * per_item, embed_per_s * second)
        p = Progress(total=items, done=done, chunks=done * per_item, embedding=True,
                     chunks_embedded=embedded, embed_backlog=done * per_item - embedded)
        p.extract_rate = extract_pace.update(done, float(second))
        p.embed_rate = embed_pace.update(embedded, float(second))
        if second >= 1:
            real = (items * per_item - embedded) / embed_per_s
            assert p.eta is not None and abs(p.eta - real) < 0.5, (second, p.eta, real)
            etas.append(p.eta)
    assert all(later <= earlier + 1e-9 for earlier, later in itertools.pairwise(etas))
    assert etas[0] > 90 and etas[-1] < 25


def test_a_rate_follows_the_recent_pace_not_the_average_since_the_start() -> None:
    """After a burst of 1,000 unchanged items in the first second, a steady 2 items/s
    is reported as about 2/s a few minutes on, not the inflated average."""
    pace = RecentRate()
    pace.update(0, 0.0)
    pace.update(1000, 1.0)
    count = 1000
    for second in range(2, 300):
        count += 2
        rate = pace.update(count, float(second))
    assert 1.9 < rate < 2.5


# -- through the CLI, as a user runs it --------------------------------------------------


def test_a_piped_ingest_prints_both_phases_and_times_each_in_its_summary(
        tmp_path: Path) -> None:
    """Without a terminal, the progress lines show extracted items and embedded texts
    with their own rates and ETAs and say when keyword search is complete; the summary
    times discovery, extraction, embedding and the total instead of calling the whole
    run discovery; --json carries the same figures."""
    src = _texts(tmp_path / "src", 6)
    env = env_for(tmp_path / "home", embedder="minilm")
    done = gristmill("ingest", str(src), env=env)
    summary = _ok(done)
    lines = _ANSI.sub("", done.stderr).splitlines()
    last = [line for line in lines if line.startswith("extract ")][-1]
    assert last.startswith("extract 6/6 items (")
    assert re.search(r"\| vectors \d+ texts embedded, 0 waiting \([\d.]+/s, eta 0\.0s\)",
                     last), last
    assert "| keyword search ready (every item extracted after " in last
    assert "Collection default: discovered 6 files (6 new, 0 changed, 0 unchanged, " \
        "0 removed) in " in summary
    assert re.search(r"Extracted 6 items in [\d.]+s \(keyword search complete from then\); "
                     r"vectors: \d+ texts embedded, every chunk had its vector after "
                     r"[\dhms.]+\. Total [\dhms.]+\.", summary), summary

    (src / "new.txt").write_text("a late file about hoppers and chutes\n")
    report = gristmill_json("ingest", str(src), env=env)
    assert report["processed"] == 1 and report["nothing_changed"] is False
    timings = report["timings"]
    assert set(timings) == {"discovery", "extraction", "embedding", "total"}
    assert all(timings[k] is not None and 0 <= timings[k] <= timings["total"]
               for k in ("discovery", "extraction", "embedding"))
    phases = report["progress"]
    assert phases["extract"]["done"] == phases["extract"]["total"] == 1
    assert phases["embed"]["texts_embedded"] == 1 and phases["embed"]["texts_waiting"] == 0
    assert phases["keyword_searchable_after"] is not None
    # What the job's event stream sends (the job's dict) has the latest run's phases.
    job = gristmill_json("jobs", "show", str(report["job_id"]), env=env)
    assert job["phases"]["embed"]["texts_embedded"] == 1
    assert job["phases"]["extract"]["done"] == 1


def test_the_live_display_on_a_terminal_shows_both_phases_and_keyword_search(
        tmp_path: Path) -> None:
    """On a terminal the live view has an `extract` bar and a `vectors` bar, each with
    its rate and ETA, and says once keyword search is complete."""
    src = _texts(tmp_path / "src", 4)
    env = {**env_for(tmp_path / "home", embedder="minilm"), "TERM": "xterm",
           "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "gristmill", "ingest", str(src)],
                            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=slave, text=False)
    os.close(slave)
    screen = b""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed its end
                break
            if not chunk:
                break
            screen += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    stdout = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, stdout
    text = _ANSI.sub("", screen.decode(errors="replace"))
    assert re.search(r"extract\s.*\d+/4 items.*/s\s+eta", text), text[-2000:]
    assert re.search(r"vectors\s.*texts.*/s\s+eta", text), text[-2000:]
    assert "keyword search ready (every item extracted after" in text
    assert "Extracted 4 items in" in stdout


def test_texts_embedded_match_the_vectors_status_reports_despite_duplicate_chunks(
        tmp_path: Path) -> None:
    """With the same paragraph in every file and a backlog fed in small batches, the run
    embeds each distinct text once: its `texts embedded` equals the vectors `status`
    reports, which says how many chunks those vectors serve."""
    n = 24
    src = _texts(tmp_path / "src", n)
    # Small embedding batches and a batcher that writes late: a duplicate reaches the
    # embedding stage again while the first vector of its text is still unwritten.
    env = env_for(tmp_path / "home", embedder="minilm", embed_batch="2",
                  flush_seconds="60", flush_ops="100000")
    done = gristmill("ingest", str(src), env=env)
    _ok(done)
    last = [line for line in _ANSI.sub("", done.stderr).splitlines()
            if line.startswith("extract ")][-1]
    embedded = int(re.search(r"vectors (\d+) texts embedded", last).group(1))  # type: ignore[union-attr]
    status = gristmill_json("status", env=env)
    assert status["chunks"] > status["vectors"]  # the shared paragraph is one text
    assert embedded == status["vectors"], (last, status["vectors"])
    assert status["chunks_with_vectors"] == status["chunks"]
    shown = _ok(gristmill("status", env=env))
    assert (f"Vectors: {status['vectors']:,} stored, one per distinct chunk text; "
            f"{status['chunks']:,} of {status['chunks']:,} chunks have one.") in shown


def test_a_rerun_that_changes_nothing_says_so_and_claims_no_rate(tmp_path: Path) -> None:
    """Re-running an ingest over unchanged files prints `Nothing changed: N items
    unchanged`, and its job reports 0 items processed and no rate."""
    src = _texts(tmp_path / "src", 5)
    env = env_for(tmp_path / "home")
    _ok(gristmill("ingest", str(src), env=env))
    again = _ok(gristmill("ingest", str(src), env=env))
    assert "Nothing changed: 5 items unchanged. Total " in again
    assert "Extracted" not in again
    report = gristmill_json("ingest", str(src), env=env)
    assert report["nothing_changed"] is True and report["processed"] == 0
    newest, *_, first = gristmill_json("jobs", "list", env=env)
    assert newest["processed"] == 0 and newest["rate"] == 0.0
    assert first["processed"] == 5 and first["rate"] > 0


def test_running_an_interrupted_ingest_again_continues_its_job(tmp_path: Path) -> None:
    """Ctrl-C leaves the job paused; running the same ingest again continues that job
    (same id) to `succeeded` instead of leaving it paused beside a new one."""
    src = _texts(tmp_path / "src", 8)
    home = tmp_path / "home"
    gate = Gate(tmp_path / "gate")
    env = gate.env(env_for(home, workers="2"))
    gate.admit(3)
    proc = start("ingest", str(src), env=env)
    deadline = time.monotonic() + 120
    while len(gate.passed()) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, "no item got through"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    (paused,) = gristmill_json("jobs", "list", env=env)
    assert paused["state"] == "paused"

    gate.open()
    report = gristmill_json("ingest", str(src), env=env)
    assert report["job_id"] == paused["id"] and report["state"] == "succeeded"
    assert report["items"]["indexed"] == 8
    (job,) = gristmill_json("jobs", "list", env=env)
    assert job["id"] == paused["id"] and job["state"] == "succeeded" and job["runs"] == 2
    # A different ingest (another collection) is a job of its own.
    other = gristmill_json("ingest", str(src), "--collection", "other", env=env)
    assert other["job_id"] != paused["id"]


def test_summary_and_status_say_the_items_include_attachments(tmp_path: Path) -> None:
    """A mail with two attachments is one file discovered and three items: the summary
    and `status` both say the difference is attachments/members."""
    src = tmp_path / "src"
    src.mkdir()
    make_eml(src / "mail.eml", "Weekly", "see the attached plover reports",
             attachments={"a.txt": b"plover report one", "b.txt": b"plover report two"})
    (src / "note.txt").write_text("a note about plovers\n")
    env = env_for(tmp_path / "home")
    summary = _ok(gristmill("ingest", str(src), env=env))
    assert "discovered 2 files (2 new," in summary
    assert "Items (4 = 2 files + 2 attachments/members): 4 indexed" in summary
    status = gristmill_json("status", env=env)
    assert sum(status["items"].values()) == 4 and status["members"] == 2
    assert ("Items include 2 attachments and archive members (found inside other files; "
            "an ingest's `discovered` counts files only).") in _ok(gristmill("status", env=env))
    assert json.loads(json.dumps(status))  # plain JSON
