"""Sources: where items are discovered (a local folder today)."""

from gristmill.sources.local import Matcher, facts, sha256_file, walk

__all__ = ["Matcher", "facts", "sha256_file", "walk"]
