"""Retrieval-augmented generation over the shop's fact base (paper §1.9).

The pipeline of §1.9.1 in four pieces: a sentence encoder (all-MiniLM-L6-v2 from the offline
pack; ftkit.models.embeddings), a vector index (FAISS: exact inner product ``flat`` or the
approximate HNSW graph ``hnsw``; ``exact`` is plain torch search for machines without FAISS),
top-k search, and the retrieved sentences put into the prompt's system turn.

An index remembers the encoder it was built with and refuses queries from another one: the
vectors of two encoders live in different spaces, and the search would return nonsense
without any error. A fact is updated by adding its new sentence and retiring the old vector
(FAISS's HNSW cannot delete), so an update costs one encoding, not a rebuild.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.models.embeddings import encode

KINDS = ("flat", "hnsw", "exact")


@dataclass
class Encoder:
    """A sentence encoder and its name (the name travels with every vector it makes)."""
    name: str
    model: object
    tokenizer: object

    def __call__(self, texts: list[str]) -> np.ndarray:
        return encode(self.model, self.tokenizer, list(texts)).numpy().astype(np.float32)


def load_encoder(name: str = "minilm-l6") -> Encoder:
    model, tokenizer = models.load(name)
    return Encoder(name, model.eval(), tokenizer)


def faiss_available() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass
class VectorIndex:
    """Unit vectors searched by inner product (= cosine), with retirable entries."""
    encoder: str
    dim: int
    kind: str = "flat"
    docs: list[tuple[str, str]] = field(default_factory=list)  # (fact id, text) per vector
    live: dict[str, int] = field(default_factory=dict)  # fact id -> its current vector
    _index: object = None
    _vectors: list[np.ndarray] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"index kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind != "exact":
            if not faiss_available():
                raise ConfigError(f"index kind {self.kind!r} needs FAISS (pip install "
                                  "faiss-cpu); 'exact' searches without it")
            import faiss

            self._index = (faiss.IndexFlatIP(self.dim) if self.kind == "flat" else
                           faiss.IndexHNSWFlat(self.dim, 32, faiss.METRIC_INNER_PRODUCT))

    def add(self, ids: list[str], texts: list[str], vectors: np.ndarray, encoder: str) -> None:
        self._check(vectors, encoder)
        start = len(self.docs)
        self.docs += list(zip(ids, texts))
        self.live.update({fid: start + i for i, fid in enumerate(ids)})
        if self._index is not None:
            self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
        else:
            self._vectors.append(np.asarray(vectors, dtype=np.float32))

    def search(self, vectors: np.ndarray, k: int, encoder: str) -> list[list[tuple[str, str, float]]]:
        """The ``k`` best live entries per query vector: ``(fact id, text, score)``."""
        self._check(vectors, encoder)
        if not 1 <= k <= len(self.live):
            raise ConfigError(f"top_k = {k}, but the index holds {len(self.live)} facts")
        wide = min(len(self.docs), k + len(self.docs) - len(self.live))  # room for retired ones
        if self._index is not None:
            scores, found = self._index.search(np.ascontiguousarray(vectors), wide)
        else:
            sims = torch.from_numpy(np.asarray(vectors)) @ torch.from_numpy(
                np.concatenate(self._vectors)).T
            top = sims.topk(wide, dim=1)
            scores, found = top.values.numpy(), top.indices.numpy()
        hits = []
        for row_scores, row in zip(scores, found):
            row_hits = [(self.docs[i][0], self.docs[i][1], float(s))
                        for s, i in zip(row_scores, row)
                        if i >= 0 and self.live.get(self.docs[i][0]) == i]
            hits.append(row_hits[:k])
        return hits

    def _check(self, vectors: np.ndarray, encoder: str) -> None:
        if encoder != self.encoder:
            raise ConfigError(f"this index was built with encoder {self.encoder!r}; vectors from "
                              f"{encoder!r} live in another space. Re-encode with "
                              f"{self.encoder!r} or rebuild the index")
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ConfigError(f"vectors of shape {tuple(vectors.shape)}; the index holds "
                              f"{self.dim}-dimensional ones")


@dataclass
class Retriever:
    """An encoder and the index of the fact base it built."""
    encoder: Encoder
    index: VectorIndex

    @classmethod
    def build(cls, documents: list[tuple[str, str]], encoder: Encoder,
              kind: str = "flat") -> Retriever:
        if not documents:
            raise ConfigError("cannot index an empty fact base")
        ids, texts = zip(*documents)
        vectors = encoder(list(texts))
        index = VectorIndex(encoder.name, vectors.shape[1], kind)
        index.add(list(ids), list(texts), vectors, encoder.name)
        return cls(encoder, index)

    def retrieve(self, questions: list[str], k: int, encoder: Encoder | None = None):
        """Top-``k`` ``(fact id, text, score)`` per question, encoded by ``encoder`` (default:
        the index's own)."""
        enc = encoder or self.encoder
        return self.index.search(enc(questions), k, enc.name)

    def update(self, fact_id: str, text: str) -> float:
        """Replace (or add) one fact's sentence; returns the seconds it took."""
        t0 = time.perf_counter()
        self.index.add([fact_id], [text], self.encoder([text]), self.encoder.name)
        return time.perf_counter() - t0


def recall_at_k(hits: list[list[tuple[str, str, float]]], facts: list[str]) -> float:
    """Share of questions whose own fact is among the retrieved ones."""
    return float(np.mean([any(h[0] == f for h in row) for row, f in zip(hits, facts)]))
