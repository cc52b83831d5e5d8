"""The store-of-originals tests import the SeaweedFS helpers as ``seaweed`` (beside the
S3 source tests); the ``seaweed`` and ``bucket`` fixtures are the suite's (tests/conftest.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "sources"))
