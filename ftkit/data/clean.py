"""Cleaning (paper §3.1.2, §3.5.2): filters that each report rows in, rows out and examples.

Every step takes a Dataset and returns ``(Dataset, Step)``; :func:`clean_all` chains them into
a :class:`CleaningReport`, so nothing is dropped or changed without a count. The language-noise
heuristic, explained:

- *mojibake* (UTF-8 read as cp1252, e.g. ``café`` shown as ``cafÃ©``) is repaired when
  re-encoding as cp1252 and decoding as UTF-8 succeeds, and dropped when it does not;
- *letters*: at least ``min_letter_share`` of the non-space characters are letters (keyboard
  mashing and symbol runs fail), and at least 90% of those letters are ASCII (other scripts);
- *English*: at least ``min_stopword_share`` of the words are common English function words
  ("the", "my", "to" …). Support questions in English score 0.25-0.5; Spanish, German, French,
  Italian, Portuguese or Dutch text and random letters score below 0.15. A fastText language
  identifier would be stronger; this one needs no model and is easy to audit.

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Callable

import datasets
import pandas as pd

from ftkit.data import dedup, pii

TEXT_COLUMNS = ("instruction", "response")
STOPWORDS = frozenset(
    "the to and of i my you your is it for on with this that be was have has can cannot not "
    "what when where why how do does did we our us they there are will would could should "
    "from at by an as if or but so all any been about after before into out up please thanks "
    "thank just still again".split())
MOJIBAKE = re.compile(r"Ã.|â€|Â[\s\u00a0-\u00bf]|â‚¬")
_WORDS = re.compile(r"[^\W\d_]+")


@dataclass
class Step:
    """What one cleaning step did."""
    name: str
    rows_in: int
    rows_out: int
    changed: int = 0
    examples: list[str] = field(default_factory=list)
    details: dict = field(default_factory=dict)

    @property
    def removed(self) -> int:
        return self.rows_in - self.rows_out


@dataclass
class CleaningReport:
    """The steps in order; ``table()`` for display, ``funnel()`` for the plot.

    ``inputs`` keeps the Dataset each step received (Arrow views, no copies), so a step can be
    studied on exactly the rows it saw.
    """

    steps: list[Step] = field(default_factory=list)
    inputs: dict[str, datasets.Dataset] = field(default_factory=dict)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame([{"step": s.name, "rows in": s.rows_in, "rows out": s.rows_out,
                              "removed": s.removed, "changed": s.changed,
                              "example": (s.examples[0][:90] if s.examples else "")}
                             for s in self.steps]).set_index("step")

    def funnel(self) -> dict[str, int]:
        start = {"raw": self.steps[0].rows_in} if self.steps else {}
        return {**start, **{s.name: s.rows_out for s in self.steps}}


def _joined(ds: datasets.Dataset, columns=TEXT_COLUMNS) -> list[str]:
    return [" ".join(v) for v in zip(*(ds[c] for c in columns))]


def _replace_columns(ds: datasets.Dataset, new: dict[str, list]) -> datasets.Dataset:
    """``ds`` with some columns' values replaced, column order unchanged."""
    columns = {c: new[c] if c in new else list(ds[c]) for c in ds.column_names}
    return datasets.Dataset.from_dict(columns, features=ds.features)


def _keep(ds: datasets.Dataset, name: str, keep: list[bool], texts: list[str], **details):
    dropped = [t for t, k in zip(texts, keep) if not k]
    out = ds.select([i for i, k in enumerate(keep) if k])
    return out, Step(name, len(ds), len(out), examples=dropped[:3], details=details)


def exact_dedup(ds: datasets.Dataset, columns=TEXT_COLUMNS):
    """Keep the first of rows whose normalised text (see ftkit.data.dedup) is identical."""
    texts, seen, keep = _joined(ds, columns), set(), []
    for text in texts:
        key = dedup.exact_key(text)
        keep.append(key not in seen)
        seen.add(key)
    return _keep(ds, "exact duplicates", keep, texts)


def near_dedup(ds: datasets.Dataset, threshold: float = 0.5, num_perm: int = 128,
               bands: int = 32, columns=("instruction",)):
    """Keep one row per MinHash-LSH cluster; details hold the clusters and the seconds taken.

    Compared on the instruction by default: a test question that is a near copy of a training
    question is the leakage that matters, while answers written from a few house templates
    are legitimately alike across different questions.
    """
    texts = _joined(ds, columns)
    t0 = time.perf_counter()
    clusters = dedup.near_duplicate_clusters(texts, threshold, num_perm=num_perm, bands=bands)
    seconds = time.perf_counter() - t0
    keep = [c == i for i, c in enumerate(clusters)]  # a cluster's id is its first member
    return _keep(ds, "near duplicates", keep, texts, clusters=clusters, seconds=seconds)


def length_filter(ds: datasets.Dataset, min_words: int = 3, max_words: int = 250,
                  columns=TEXT_COLUMNS):
    """Each text column has ``min_words`` or more words; all together at most ``max_words``."""
    texts = _joined(ds, columns)
    counts = list(zip(*([len(t.split()) for t in ds[c]] for c in columns)))  # (rows, columns)
    keep = [min(n) >= min_words and sum(n) <= max_words for n in counts]
    return _keep(ds, "length", keep, texts)


def fix_mojibake(text: str) -> str | None:
    """The repaired text, the text itself when clean, or None when it cannot be repaired."""
    if not MOJIBAKE.search(text):
        return text
    try:
        fixed = text.encode("cp1252").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return None
    return fixed if not MOJIBAKE.search(fixed) else None


def repair_mojibake(ds: datasets.Dataset, columns=TEXT_COLUMNS):
    """Repair UTF-8-read-as-cp1252 text; drop rows that stay garbled."""
    fixed = {c: [fix_mojibake(t) for t in ds[c]] for c in columns}
    keep = [all(fixed[c][i] is not None for c in columns) for i in range(len(ds))]
    before = {c: list(ds[c]) for c in columns}
    changed = [before[columns[0]][i] for i in range(len(ds))
               if keep[i] and any(fixed[c][i] != before[c][i] for c in columns)]
    ds = _replace_columns(ds, {c: [t if t is not None else "" for t in fixed[c]] for c in columns})
    out, step = _keep(ds, "mojibake", keep, _joined(ds, columns))
    step.changed, step.examples = len(changed), (changed[:3] or step.examples)
    return out, step


def language_reason(text: str, min_stopword_share: float = 0.15,
                    min_letter_share: float = 0.6) -> str | None:
    """Why ``text`` looks like language noise, or None when it looks like English."""
    chars = [c for c in text if not c.isspace()]
    letters = [c for c in chars if c.isalpha()]
    if not chars or len(letters) < min_letter_share * len(chars):
        return "few letters"
    if sum(c.isascii() for c in letters) < 0.9 * len(letters):
        return "non-ASCII letters"
    words = [w.lower() for w in _WORDS.findall(text)]
    if sum(w in STOPWORDS for w in words) < min_stopword_share * len(words):
        return "few English stop words"
    return None


def language_filter(ds: datasets.Dataset, min_stopword_share: float = 0.15,
                    min_letter_share: float = 0.6, columns=TEXT_COLUMNS):
    """Drop rows that are not English prose (see the module docstring for the heuristic)."""
    texts = _joined(ds, columns)
    reasons = [language_reason(t, min_stopword_share, min_letter_share) for t in texts]
    out, step = _keep(ds, "language noise", [r is None for r in reasons], texts)
    step.details["reasons"] = pd.Series([r for r in reasons if r]).value_counts().to_dict()
    return out, step


def redact_pii(ds: datasets.Dataset, columns=TEXT_COLUMNS):
    """Mask PII in every text column; details hold the counts per type."""
    total, examples, changed = {}, [], set()
    for c in columns:
        texts, counts, ex = pii.redact_texts(ds[c])
        changed.update(i for i, (a, b) in enumerate(zip(ds[c], texts)) if a != b)
        total = {k: total.get(k, 0) + counts.get(k, 0) for k in set(total) | set(counts)}
        examples += [f"{a}  ->  {b}" for a, b in ex]
        ds = _replace_columns(ds, {c: texts})
    step = Step("PII redaction", len(ds), len(ds), changed=len(changed), examples=examples[:3],
                details={"counts": total})
    return ds, step


# quality filters first, so that noise rows do not form duplicate clusters of their own
STEPS: dict[str, Callable] = {"length": length_filter, "mojibake": repair_mojibake,
                              "language noise": language_filter, "exact duplicates": exact_dedup,
                              "near duplicates": near_dedup, "PII redaction": redact_pii}


def clean_all(ds: datasets.Dataset, options: dict[str, dict] | None = None):
    """Run every step of ``STEPS`` in order; ``options`` maps a step name to its keyword args."""
    report = CleaningReport()
    for name, step_fn in STEPS.items():
        report.inputs[name] = ds
        ds, step = step_fn(ds, **(options or {}).get(name, {}))
        report.steps.append(step)
    return ds, report
