"""Sources: where items are discovered (a local folder today)."""

from gristmill.sources.local import Matcher, sha256_file, walk

__all__ = ["Matcher", "sha256_file", "walk"]
