"""Print a reproducible selection of files, one path per line, for --files-from.

Same options as the benchmarks, so a list can be made once and fed to each tool:

    python benchmarks/sample_files.py CORPUS_DIR --pattern '*.pdf' --sample 300 --seed 0 > LIST
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _harness import add_selection_args, select_files


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_selection_args(parser, default_pattern="*")
    parser.add_argument(
        "--relative-to", type=Path, help="print paths relative to this folder (portable lists)"
    )
    args = parser.parse_args(argv)
    for f in select_files(args):
        path = f.resolve()
        print(path.relative_to(args.relative_to.resolve()) if args.relative_to else path)


if __name__ == "__main__":
    main()
