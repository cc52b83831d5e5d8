"""Sources: where items are discovered, behind one interface (:mod:`.base`): local
folders (and git work trees), ``s3://`` prefixes, Google Drive, and the URLs of any other
filesystem fsspec knows (:mod:`.fsspec_source`)."""

from gristmill.sources.base import LocalSource, Source, is_remote, open_source
from gristmill.sources.local import Matcher, facts, sha256_file, walk

__all__ = ["LocalSource", "Matcher", "Source", "facts", "is_remote", "open_source",
           "sha256_file", "walk"]
