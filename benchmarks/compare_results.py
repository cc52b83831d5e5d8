"""Compare a floor_pdf result with a peer (or gristmill) result on the same file list.

Uses the floor's page counts for both (the peer's own count misses empty trailing pages
and 0-element files) and lists files where one side found text and the other none:

    python benchmarks/compare_results.py FLOOR.json PEER.json [--json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _load(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return data["summary"], {r["path"]: r for r in data["files"]}


def _has_text(rec: dict[str, Any]) -> bool:
    return bool(rec["ok"] and rec.get("chars", 0) > 0)


def compare(floor_path: Path, other_path: Path) -> dict[str, Any]:
    """Ratios and per-file text disagreements between two result files."""
    floor_sum, floor = _load(floor_path)
    other_sum, other = _load(other_path)
    common = sorted(floor.keys() & other.keys())
    pages = sum(floor[p].get("pages", 0) for p in common if floor[p]["ok"])
    floor_pps = floor_sum["pages"] / floor_sum["seconds"]
    other_pps = pages / other_sum["seconds"]
    return {
        "files_common": len(common),
        "files_only_in_floor": len(floor.keys() - other.keys()),
        "files_only_in_other": len(other.keys() - floor.keys()),
        "floor_pages": pages,
        "floor_pages_per_s": round(floor_pps, 1),
        "other_pages_per_s_on_floor_pages": round(other_pps, 2),
        "floor_over_other_speed": round(floor_pps / other_pps, 1) if other_pps else None,
        "floor_peak_rss_tree_mib": floor_sum.get("peak_rss_tree_mib"),
        "other_peak_rss_tree_mib": other_sum.get("peak_rss_tree_mib"),
        "other_cpu_share": {
            "floor": floor_sum.get("other_cpu_share"),
            "other": other_sum.get("other_cpu_share"),
        },
        "text_in_floor_not_other": [
            {"path": p, "floor_pages": floor[p]["pages"], "floor_chars": floor[p]["chars"]}
            for p in common
            if _has_text(floor[p]) and not _has_text(other[p])
        ],
        "text_in_other_not_floor": [
            p for p in common if _has_text(other[p]) and not _has_text(floor[p])
        ],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("floor", type=Path, help="floor_pdf.py --out result")
    parser.add_argument("other", type=Path, help="peer_unstructured.py (or other) --out result")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    args = parser.parse_args(argv)
    result = compare(args.floor, args.other)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for key, value in result.items():
        if isinstance(value, list):
            print(f"{key:>34}: {len(value)}")
            for item in value:
                print(f"{'':>36}{item}")
        else:
            print(f"{key:>34}: {value}")


if __name__ == "__main__":
    main()
