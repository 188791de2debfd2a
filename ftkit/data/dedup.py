"""Duplicate detection (paper §3.1.2, §3.5.2): normalised hashing and MinHash with LSH.

Exact duplicates: texts equal after lower-casing, collapsing whitespace and dropping
punctuation share one SHA-1 digest.

Near duplicates: each text becomes its set of word 3-grams ("shingles"). The Jaccard similarity
of two sets, |A ∩ B| / |A ∪ B|, is estimated with MinHash: for each of ``num_perm`` random
hash functions h(x) = (a·x + b) mod p, keep the smallest value over the set; two sets agree on
one such minimum with probability equal to their Jaccard similarity. Locality-sensitive hashing
cuts the signature into ``bands`` of ``rows`` values; texts that agree on a whole band become
candidates, which happens with probability 1 - (1 - J^rows)^bands (an S-curve around
(1/bands)^(1/rows) ≈ 0.42 for 32 × 4). Candidates whose estimated Jaccard reaches
``threshold`` are joined into clusters (union-find). Cost is linear in the number of texts
instead of quadratic.

Used in notebooks/01_data_preparation.ipynb; ftkit.data.split uses the clusters as groups.
"""
from __future__ import annotations

import hashlib
import re
import zlib
from collections import defaultdict
from itertools import combinations

import numpy as np

MERSENNE = (1 << 31) - 1  # prime modulus: a, b, x < 2^31 keep a·x + b below 2^63 in uint64
_WORD = re.compile(r"[a-z0-9]+")


def normalise(text: str) -> str:
    """Lower case, words only, single spaces: what exact-duplicate hashing compares."""
    return " ".join(_WORD.findall(text.lower()))


def exact_key(text: str) -> str:
    """SHA-1 of the normalised text."""
    return hashlib.sha1(normalise(text).encode("utf-8")).hexdigest()


def shingles(text: str, n: int = 3) -> set[int]:
    """CRC32 hashes of the word n-grams of the normalised text (the whole text if shorter)."""
    words = normalise(text).split()
    grams = [" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))]
    return {zlib.crc32(g.encode("utf-8")) % MERSENNE for g in grams}


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B| (1.0 for two empty sets)."""
    return len(a & b) / len(a | b) if a or b else 1.0


def minhash_signatures(sets: list[set[int]], num_perm: int = 128, seed: int = 0) -> np.ndarray:
    """MinHash signatures ``(N, num_perm)`` (uint64) of shingle sets."""
    rng = np.random.default_rng(seed)
    a = rng.integers(1, MERSENNE, size=num_perm, dtype=np.uint64)
    b = rng.integers(0, MERSENNE, size=num_perm, dtype=np.uint64)
    sigs = np.empty((len(sets), num_perm), dtype=np.uint64)
    for i, shingle_set in enumerate(sets):
        x = np.fromiter(shingle_set, dtype=np.uint64)[:, None]  # (S, 1)
        sigs[i] = ((a * x + b) % MERSENNE).min(axis=0)  # (S, P) -> (P,)
    return sigs


def lsh_candidates(sigs: np.ndarray, bands: int = 32) -> set[tuple[int, int]]:
    """Pairs ``(i, j)``, i < j, whose signatures agree on at least one whole band."""
    rows = sigs.shape[1] // bands
    pairs: set[tuple[int, int]] = set()
    for band in range(bands):
        buckets = defaultdict(list)
        for i, key in enumerate(map(bytes, sigs[:, band * rows:(band + 1) * rows])):
            buckets[key].append(i)
        for members in buckets.values():
            pairs.update(combinations(members, 2))
    return pairs


def clusters_from_pairs(n: int, pairs) -> list[int]:
    """Union-find over ``pairs``; returns a cluster id (its smallest member) for each item."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i
    for i, j in pairs:
        ri, rj = root(i), root(j)
        if ri != rj:
            parent[max(ri, rj)] = min(ri, rj)
    return [root(i) for i in range(n)]


def near_duplicate_pairs(texts: list[str], threshold: float = 0.5, num_perm: int = 128,
                         bands: int = 32, seed: int = 0) -> set[tuple[int, int]]:
    """Pairs whose Jaccard similarity of word 3-grams is at least ``threshold``.

    LSH proposes candidates; each is then checked with the exact Jaccard of its two shingle
    sets (cheap, as candidates are few), which removes MinHash's estimation noise.
    """
    if num_perm % bands:
        raise ValueError(f"num_perm={num_perm} must be a multiple of bands={bands}")
    sets = [shingles(t) for t in texts]
    sigs = minhash_signatures(sets, num_perm, seed)
    return {(i, j) for i, j in lsh_candidates(sigs, bands)
            if jaccard(sets[i], sets[j]) >= threshold}


def near_duplicate_clusters(texts: list[str], threshold: float = 0.5, **kwargs) -> list[int]:
    """A cluster id per text; texts linked by near-duplicate pairs share one."""
    return clusters_from_pairs(len(texts), near_duplicate_pairs(texts, threshold, **kwargs))


def pair_scores(predicted: list[int], truth: list) -> dict:
    """Precision and recall of same-cluster pairs against ground-truth families."""
    def pairs(labels) -> set:
        groups = defaultdict(list)
        for i, g in enumerate(labels):
            groups[g].append(i)
        return {p for members in groups.values() for p in combinations(members, 2)}
    pred, true = pairs(predicted), pairs(truth)
    hit = len(pred & true)
    return {"true_pairs": len(true), "found_pairs": len(pred),
            "precision": hit / len(pred) if pred else 1.0,
            "recall": hit / len(true) if true else 1.0}
