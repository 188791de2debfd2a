"""Day-by-day prompt signals of a stream of traffic (paper §9.2.2): what a monitor computes
each day and compares with earlier days.

:func:`daily_signals` takes a table with a day column and a prompt column, and a function that
embeds texts (for example ``ftkit.models.embeddings.encode`` on the offline MiniLM encoder).
Every prompt is embedded once; then, for each day:

- ``drift_launch`` — MMD² of the day's embeddings against the launch window (the reference
  days): large when the traffic has moved away from what the model was checked on, slowly or
  suddenly; ``p_launch`` is its permutation p-value;
- ``drift_recent`` — MMD² against the ``window`` days just before: large when something changed
  *suddenly*, small for a change that creeps in a little each day; ``p_recent`` likewise;
- ``novel_share`` — the share of prompts unlike any launch prompt (:func:`novelty`): a new
  topic shows here before it is large enough to move the whole distribution;
- ``length_psi`` — the PSI of prompt length in words against the launch window;
- ``pii_rate`` and ``abuse_rate`` — shares of prompts with personal data (``ftkit.data.pii``)
  or with an insult from :data:`ABUSIVE_WORDS`, a word list: a toxicity model would need hub
  weights, and a list is what such a monitor falls back to offline.

A day that cannot be scored (no prompts, too few for a test) gets NaN for what it could not
compute and a line in ``problems``; the next day is scored anyway.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans

from ftkit.core.config import ConfigError
from ftkit.data.pii import find_pii
from ftkit.evaluate.judge import STOPWORDS, words
from ftkit.monitor.drift import MIN_ROWS, mmd_test, psi

ABUSIVE_WORDS = ("idiot", "idiots", "stupid", "useless", "garbage", "trash", "moron", "morons",
                 "pathetic", "dumb", "incompetent", "worst", "shut up", "scam", "liars")
_ABUSE = re.compile(r"\b(" + "|".join(map(re.escape, ABUSIVE_WORDS)) + r")\b", re.I)

PROMPT_SIGNALS = ("drift_launch", "drift_recent", "novel_share", "length_psi", "pii_rate",
                  "abuse_rate")


def column(frame: pd.DataFrame, name: str, role: str) -> None:
    """Refuse a table without the ``name`` column, listing the columns it has."""
    if name not in frame.columns:
        raise ConfigError(f"the traffic has no {role} column {name!r}; its columns are "
                          f"{list(frame.columns)} (pass {role}_column=...)")


def is_abusive(text: str) -> bool:
    """Whether ``text`` holds a word of :data:`ABUSIVE_WORDS`."""
    return bool(_ABUSE.search(text))


def novelty(reference: np.ndarray, vectors: np.ndarray, quantile: float = 0.02) -> np.ndarray:
    """Which rows of ``vectors`` are unlike every reference row: their highest cosine
    similarity to a reference row is below the ``quantile`` of the reference rows' own
    highest similarity to another reference row (leave-one-out). Rows are unit vectors."""
    ref = np.asarray(reference, dtype=np.float64)
    if len(ref) < MIN_ROWS:
        raise ConfigError(f"novelty needs at least {MIN_ROWS} reference rows; got {len(ref)}")
    own = ref @ ref.T
    np.fill_diagonal(own, -np.inf)
    level = np.quantile(own.max(1), quantile)
    return (np.asarray(vectors, dtype=np.float64) @ ref.T).max(1) < level


def new_topics(texts: list[str], vectors: np.ndarray, days: list, n_topics: int = 3,
               top_words: int = 6, seed: int = 0) -> pd.DataFrame:
    """Group prompts flagged as novel into ``n_topics`` clusters (k-means on their unit
    embeddings) and describe each: its size, the first day it was seen, its most frequent
    content words and one example, largest cluster first."""
    if len(texts) != len(vectors) or len(texts) != len(days):
        raise ConfigError(f"new_topics: {len(texts)} texts, {len(vectors)} vectors and "
                          f"{len(days)} days must match")
    if len(texts) < n_topics:
        raise ConfigError(f"{len(texts)} novel prompts cannot form {n_topics} topics")
    labels = KMeans(n_topics, n_init=10, random_state=seed).fit_predict(np.asarray(vectors))
    rows = []
    for topic in range(n_topics):
        members = [i for i, label in enumerate(labels) if label == topic]
        counts = pd.Series([w for i in members for w in set(words(texts[i]))
                            if w not in STOPWORDS and not w.isdigit() and len(w) > 2])
        rows.append({"prompts": len(members), "first_day": min(days[i] for i in members),
                     "top_words": ", ".join(counts.value_counts().index[:top_words]),
                     "example": texts[members[0]]})
    return pd.DataFrame(rows).sort_values("prompts", ascending=False, ignore_index=True)


def daily_signals(frame: pd.DataFrame, embed: Callable[[list[str]], np.ndarray],
                  reference_days: list, window: int = 3, prompt_column: str = "prompt",
                  day_column: str = "day", n_permutations: int = 200,
                  seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """``(signals, problems)``: one row per day with the columns of :data:`PROMPT_SIGNALS`,
    the two p-values and ``prompts``; ``problems`` lists what could not be computed and why.
    ``signals.attrs["novel_rows"]`` holds the index labels of the prompts found novel."""
    column(frame, prompt_column, "prompt")
    column(frame, day_column, "day")
    if window < 1:
        raise ConfigError(f"window = {window}: the recent drift needs at least one earlier day")
    texts = frame[prompt_column].fillna("").astype(str)
    kept = frame[texts.str.strip() != ""]
    texts = texts[kept.index].tolist()
    days = kept[day_column].to_numpy()
    at_reference = np.isin(days, list(reference_days))
    if at_reference.sum() < MIN_ROWS:
        raise ConfigError(f"the reference days {list(reference_days)} hold {int(at_reference.sum())} "
                          f"prompts; the drift test needs at least {MIN_ROWS}")
    vectors = np.asarray(embed(texts), dtype=np.float64) if texts else np.empty((0, 1))
    reference = vectors[at_reference]
    ref_lengths = [len(t.split()) for t, r in zip(texts, at_reference) if r]
    novel = novelty(reference, vectors)
    all_days = sorted(frame[day_column].unique())
    rows, problems = {}, []
    for i, day in enumerate(all_days):
        today = days == day
        row = dict.fromkeys(("drift_launch", "p_launch", "drift_recent", "p_recent",
                             "novel_share", "length_psi", "pii_rate", "abuse_rate"), np.nan)
        row["prompts"] = int(today.sum())
        rows[day] = row
        if not today.any():
            problems.append(f"day {day}: no prompts")
            continue
        day_texts = [t for t, k in zip(texts, today) if k]
        row.update(novel_share=float(novel[today].mean()),
                   pii_rate=float(np.mean([bool(find_pii(t)) for t in day_texts])),
                   abuse_rate=float(np.mean([is_abusive(t) for t in day_texts])))
        recent = np.isin(days, all_days[max(0, i - window):i])
        for name, ref in (("launch", reference), ("recent", vectors[recent])):
            if name == "recent" and not recent.any():
                continue  # the first day has no earlier days
            try:
                test = mmd_test(ref, vectors[today], n_permutations, seed)
                row[f"drift_{name}"], row[f"p_{name}"] = test["mmd2"], test["p_value"]
            except ConfigError as err:
                problems.append(f"day {day} ({name} drift): {err}")
        try:
            row["length_psi"] = psi(ref_lengths, [len(t.split()) for t in day_texts])
        except ConfigError as err:
            problems.append(f"day {day} (length): {err}")
    table = pd.DataFrame(rows).T
    table.attrs["novel_rows"] = list(kept.index[novel])  # the frame's rows flagged as novel
    return table, problems


__all__ = ["ABUSIVE_WORDS", "PROMPT_SIGNALS", "column", "daily_signals", "is_abusive", "new_topics",
           "novelty"]
