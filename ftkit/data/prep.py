"""The customer-support data set of notebook 01: its config section, schema and ground truth.

``PrepConfig`` holds the knobs of the data-preparation notebook (registered as section
``prep``); the helpers below read the generator's ground truth (``data/support_records``,
written by ``data/make_support_records.py``) and measure the pipeline against it: PII left after
redaction, near-duplicate precision/recall, leakage of a split.

Used in notebooks/01_data_preparation.ipynb (paper §3.1-3.2).
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import pandas as pd

from ftkit.data import dedup, pii, split
from ftkit.data.formatting import prompt_completion
from ftkit.data.params import PrepConfig
from ftkit.data.validate import Schema
from ftkit.models.embeddings import encode

LABELS = ("billing", "shipping", "returns", "account", "technical")
SCHEMA = Schema(text_columns=("instruction", "response"), label_column="category", labels=LABELS,
                id_column="id")
REPO_ROOT = Path(__file__).resolve().parents[2]


def data_folder(path: str) -> Path:
    """``path`` as given, or relative to the repository root (notebooks run in notebooks/)."""
    for candidate in (Path(path), REPO_ROOT / path):
        if (candidate / "tickets.csv").exists():
            return candidate
    raise FileNotFoundError(f"no tickets.csv under {path!r} or {REPO_ROOT / path}; run "
                            "python data/make_support_records.py")


def cleaning_options(prep: PrepConfig) -> dict[str, dict]:
    """Keyword arguments per step of ftkit.data.clean.clean_all from the config."""
    return {"length": {"min_words": prep.min_words, "max_words": prep.max_words},
            "language noise": {"min_stopword_share": prep.stopword_share},
            "near duplicates": {"threshold": prep.dedup_threshold}}


def ground_truth(folder: Path) -> dict[str, dict]:
    """``id -> {"kind", "family", "pii", "source"}`` as written by the generator."""
    with open(Path(folder) / "ground_truth.jsonl", encoding="utf-8") as fh:
        return {row["id"]: row for row in map(json.loads, fh)}


def pii_left(ds, truth: dict[str, dict]) -> dict[str, dict]:
    """Per PII type: values the generator inserted into kept rows, and how many remain.

    Names whose first name the redactor's list does not hold are counted apart
    (``name (not in list)``): what the context detector alone has to catch.
    """
    out: dict[str, dict] = {}
    for rid, q, a in zip(ds["id"], ds["instruction"], ds["response"]):
        for kind, value in truth[rid]["pii"]:
            if kind == "name" and not pii.listed_name(value):
                kind = "name (not in list)"
            entry = out.setdefault(kind, {"inserted": 0, "left": 0})
            entry["inserted"] += 1
            entry["left"] += value in q or value in a
    return out


def near_dup_quality(texts: list[str], families: list[str], thresholds: list[float]) -> pd.DataFrame:
    """Precision, recall (pairs against the ground-truth families) and seconds per threshold."""
    rows = []
    for t in thresholds:
        t0 = time.perf_counter()
        clusters = dedup.near_duplicate_clusters(texts, t)
        seconds = time.perf_counter() - t0
        rows.append({"threshold": t, **dedup.pair_scores(clusters, families),
                     "seconds": round(seconds, 3)})
    return pd.DataFrame(rows).set_index("threshold").round(3)


def leakage_table(texts: list[str], families: list[str], threshold: float, test_size: float,
                  seed: int) -> dict[str, float]:
    """Test rows with a relative (ground-truth family) in train: naive vs group-aware split."""
    n = len(texts)
    clusters = dedup.near_duplicate_clusters(texts, threshold)
    naive = split.split(n, "random", test_size=test_size, seed=seed)
    grouped = split.split(n, "group", test_size=test_size, seed=seed, groups=clusters)
    return {"random split": split.leakage_share(families, *naive),
            "group split": split.leakage_share(families, *grouped)}


def augmentation_similarity(encoder, sources: list[str], rows: list[dict],
                            per_method: int = 50) -> pd.DataFrame:
    """Per method: rows made, mean MiniLM cosine and mean word-3-gram Jaccard to the source.

    High cosine with Jaccard below 1 is what augmentation wants: same meaning, new wording.
    """

    model, tok = encoder
    table = {}
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        sample = mine[:per_method]
        new = encode(model, tok, [r["text"] for r in sample])
        old = encode(model, tok, [sources[r["source"]] for r in sample])
        jac = [dedup.jaccard(dedup.shingles(r["text"]), dedup.shingles(sources[r["source"]]))
               for r in sample]
        table[method] = {"rows": len(mine), "cosine": float((new * old).sum(1).mean()),
                         "jaccard": sum(jac) / len(jac)}
    return pd.DataFrame(table).T.round(3)


def training_pairs(tokenizer, instructions: list[str], responses: list[str],
                   template: str = "chat"):
    """A Dataset of ``prompt``/``completion`` strings ready for completion-only SFT."""
    import datasets

    pairs = [prompt_completion(tokenizer, q, a, template) for q, a in zip(instructions, responses)]
    return datasets.Dataset.from_list(pairs)
