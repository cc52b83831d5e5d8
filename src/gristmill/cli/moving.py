"""Moving a knowledge base: ``export``, ``import``, ``migrate`` and ``verify``."""

from __future__ import annotations

import typer  # noqa: F401 (the commands below use it)

from gristmill.cli._shared import app  # noqa: F401 (the commands register on it)
