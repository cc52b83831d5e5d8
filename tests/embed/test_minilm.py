"""The bundled MiniLM embedder: verified weights, known similarities, stable vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gristmill.embed.minilm import DIM, MODEL_SHA256, MiniLM, model_file
from gristmill.errors import ModelError

SHARED_MODEL_DIR = Path(__file__).resolve().parents[2].parent / "shared/models/all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def model() -> MiniLM:
    # A small token cap (the floor, one 256-token text) makes every test span several
    # model calls, so batching is exercised too.
    return MiniLM(batch_tokens=256)


def cosine(model: MiniLM, a: str, b: str) -> float:
    first, second = model.embed([a, b])
    return float(first @ second)


def test_packaged_model_file_passes_its_checksum() -> None:
    """The model shipped by the pinned package is found and its sha256 verified."""
    path = model_file()
    assert path.name == "model.onnx"
    assert MODEL_SHA256 == "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"


def test_similar_sentences_score_as_published(model: MiniLM) -> None:
    """Paraphrases score about 0.892, as all-MiniLM-L6-v2 does upstream."""
    similarity = cosine(model, "The new movie is awesome", "The new movie is so great")
    assert similarity == pytest.approx(0.892, abs=0.005)


def test_related_sentences_score_as_published(model: MiniLM) -> None:
    """Related but different sentences score about 0.678."""
    similarity = cosine(model, "The cat sits outside", "The cat plays in the garden")
    assert similarity == pytest.approx(0.678, abs=0.005)


def test_vectors_are_unit_length_with_384_dimensions(model: MiniLM) -> None:
    """embed returns float32 unit vectors of shape (n, 384)."""
    vectors = model.embed(["one", "two words", "a somewhat longer third sentence here"])
    assert vectors.shape == (3, DIM) == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_embedding_nothing_gives_an_empty_matrix(model: MiniLM) -> None:
    """embed([]) returns shape (0, 384), so callers need no special case."""
    assert model.embed([]).shape == (0, 384)


def test_vectors_do_not_depend_on_batch_companions(model: MiniLM) -> None:
    """A text's vector is the same alone or batched with texts of other lengths."""
    texts = ["short", "a medium length sentence about grain mills",
             "A much longer passage " * 20, "another one", "", "punctuation!?"]
    together = model.embed(texts)
    alone = np.stack([model.embed([text])[0] for text in texts])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_batches_stay_under_the_token_cap(model: MiniLM) -> None:
    """Each model call pads to at most batch_tokens tokens, and every text is in one call."""
    ids = [[1] * n for n in (3, 250, 40, 40, 7, 128, 1, 90, 256, 12)]
    batches = model.batches(ids)
    assert sorted(i for batch in batches for i in batch) == list(range(len(ids)))
    for batch in batches:
        assert len(batch) * max(len(ids[i]) for i in batch) <= 256


def test_long_text_is_truncated_not_rejected(model: MiniLM) -> None:
    """Text far beyond 256 tokens is truncated and still gives a unit vector."""
    [vector] = model.embed(["word " * 5_000])
    assert np.linalg.norm(vector) == pytest.approx(1.0, abs=1e-5)
    assert len(model.tokenize(["word " * 5_000])[0]) == 256


def test_wrong_model_file_is_refused(tmp_path: Path) -> None:
    """A file that is not the pinned model raises ModelError naming the sha256 mismatch."""
    (tmp_path / "model.onnx").write_bytes(b"not really an onnx model")
    with pytest.raises(ModelError, match="sha256"):
        MiniLM(model_path=tmp_path)
    with pytest.raises(ModelError, match="sha256"):
        MiniLM(model_path=tmp_path / "model.onnx")


def test_missing_model_path_is_refused(tmp_path: Path) -> None:
    """A model_path with no model.onnx raises ModelError saying where it looked."""
    with pytest.raises(ModelError, match="no model file"):
        MiniLM(model_path=tmp_path / "absent" / "model.onnx")
    with pytest.raises(ModelError, match="no model file"):
        MiniLM(model_path=tmp_path)


@pytest.mark.skipif(not (SHARED_MODEL_DIR / "model.onnx").is_file(),
                    reason="shared model folder not present beside the checkout")
def test_configured_model_folder_loads(model: MiniLM) -> None:
    """A model_path folder holding the pinned model.onnx loads and gives the same vectors."""
    configured = MiniLM(model_path=SHARED_MODEL_DIR)
    texts = ["The new movie is awesome", "The cat sits outside"]
    np.testing.assert_allclose(configured.embed(texts), model.embed(texts), atol=1e-6)
