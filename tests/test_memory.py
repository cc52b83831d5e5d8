"""Peak memory of the whole process tree does not grow with the number of files."""

from __future__ import annotations

from pathlib import Path

import pytest

from corpus import build
from process_tools import PeakTreeRss, env_for, start


def _peak_rss(corpus: Path, home: Path, embedder: str) -> int:
    proc = start("ingest", str(corpus), env=env_for(home, embedder=embedder, workers="2"))
    sampler = PeakTreeRss(proc.pid)
    out, err = proc.communicate(timeout=900)
    peak = sampler.stop()
    assert proc.returncode == 0, f"{out}\n{err}"
    return peak


@pytest.mark.slow
def test_ten_times_more_files_needs_under_15_percent_more_memory(tmp_path: Path) -> None:
    """Ingesting 10x more files raises the tree's peak RSS by under 15 %."""
    # 300 files already take each of the 2 workers past max_tasks_per_worker (100), so
    # both runs see workers at their steady state; what is compared is the driver.
    build(tmp_path / "small", 300, seed=1)
    build(tmp_path / "large", 3000, seed=2)
    small = _peak_rss(tmp_path / "small", tmp_path / "home-small", "none")
    large = _peak_rss(tmp_path / "large", tmp_path / "home-large", "none")
    print(f"peak tree RSS: 300 files {small / 2**20:.0f} MB, 3000 files {large / 2**20:.0f} MB")
    assert large < small * 1.15, f"peak RSS {small / 2**20:.0f} MB -> {large / 2**20:.0f} MB"


@pytest.mark.slow
def test_default_settings_stay_under_1_5_gb_with_embeddings(tmp_path: Path) -> None:
    """With the real embedder and default settings the tree stays under 1.5 GB."""
    build(tmp_path / "corpus", 120, seed=3)
    peak = _peak_rss(tmp_path / "corpus", tmp_path / "home", "minilm")
    print(f"peak tree RSS with minilm: {peak / 2**20:.0f} MB")
    assert peak < 1.5 * 2**30, f"peak RSS {peak / 2**20:.0f} MB"
