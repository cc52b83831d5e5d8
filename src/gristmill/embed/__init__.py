"""Embedders: the protocol, the bundled offline MiniLM model, and how to pick one."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from gristmill.config import Settings

__all__ = ["Embedder", "make_embedder"]


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors.

    Attributes:
        model_id: names the model and its weights; vectors are cached under it.
        dim: length of each vector.
    """

    model_id: str

    # Read-only: a remote embedder learns its length from the service's first answer.
    @property
    def dim(self) -> int:
        """Length of each vector."""
        ...

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape ``(len(texts), dim)``, one unit vector per text."""
        ...


def make_embedder(settings: Settings) -> Embedder | None:
    """The embedder the settings name, or ``None`` for keyword-only (``none``).

    Raises:
        gristmill.errors.ModelError: the model files are missing or fail their checksum.
        gristmill.errors.ConfigError: a remote embedder's settings are incomplete, or
            boto3 is missing for ``bedrock``.
    """
    if settings.embedder == "none":
        return None
    if settings.embedder == "openai":
        from gristmill.embed.openai import OpenAIEmbedder

        return OpenAIEmbedder.from_settings(settings)
    if settings.embedder == "bedrock":
        from gristmill.embed.bedrock import BedrockEmbedder

        return BedrockEmbedder.from_settings(settings)
    from gristmill.embed.minilm import MiniLM

    return MiniLM(model_path=settings.model_path, batch_tokens=settings.embed_batch_tokens,
                  threads=settings.embed_threads)
