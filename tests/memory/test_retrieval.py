"""Vector index and retriever (ftkit.memory.retrieval)."""
from __future__ import annotations

import numpy as np
import pytest

from ftkit.core.config import ConfigError
from ftkit.memory import retrieval as R


def unit(rows: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.mark.parametrize("kind", R.KINDS)
def test_each_index_kind_finds_the_nearest_vector_and_retires_updated_ones(kind):
    vectors = unit(20)
    index = R.VectorIndex("enc", 8, kind)
    index.add([f"f{i}" for i in range(20)], [f"text {i}" for i in range(20)], vectors, "enc")
    hits = index.search(vectors[[3, 11]], 2, "enc")
    assert [h[0][0] for h in hits] == ["f3", "f11"] and len(hits[0]) == 2
    assert hits[0][0][2] == pytest.approx(1.0, abs=1e-5)
    index.add(["f3"], ["text 3, changed"], vectors[[5]], "enc")  # f3 now sits where f5 is
    hits = index.search(vectors[[3, 5]], 2, "enc")
    assert all(h[1] != "text 3" for row in hits for h in row)  # the old vector is retired
    assert {h[0] for h in hits[1]} == {"f3", "f5"} and len(index.live) == 20


def test_flat_faiss_and_exact_search_agree():
    vectors, queries = unit(30, seed=1), unit(5, seed=2)
    results = []
    for kind in ("flat", "exact"):
        index = R.VectorIndex("enc", 8, kind)
        index.add([f"f{i}" for i in range(30)], ["t"] * 30, vectors, "enc")
        results.append([[h[0] for h in row] for row in index.search(queries, 4, "enc")])
    assert results[0] == results[1]


def test_retriever_finds_the_sentence_that_answers_a_question():
    encoder = R.load_encoder("minilm-l6") if R.faiss_available() else None
    if encoder is None:
        pytest.skip("FAISS not installed")
    docs = [("f0", "The Atlas backpack costs €313.99."), ("f1", "The Porto store is closed on Monday."),
            ("f2", "Items in lamps can be returned within 30 days.")]
    retriever = R.Retriever.build(docs, encoder)
    hits = retriever.retrieve(["How expensive is the Atlas backpack?", "When is the Porto store shut?"], 1)
    assert [row[0][0] for row in hits] == ["f0", "f1"]
    assert R.recall_at_k(hits, ["f0", "f2"]) == 0.5
    assert retriever.update("f0", "The Atlas backpack costs €99.00.") < 5.0
    assert retriever.retrieve(["Atlas backpack price?"], 1)[0][0][1].endswith("€99.00.")


def test_an_index_refuses_wrong_shapes_and_unknown_kinds():
    index = R.VectorIndex("enc", 8, "exact")
    with pytest.raises(ConfigError, match="8-dimensional"):
        index.add(["a"], ["t"], unit(1, dim=4), "enc")
    with pytest.raises(ConfigError, match="index kind must be one of"):
        R.VectorIndex("enc", 8, "ivf")
    with pytest.raises(ConfigError, match="empty fact base"):
        R.Retriever.build([], R.load_encoder("tiny-bert"))
