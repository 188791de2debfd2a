"""Text augmentation (paper §3.2.2): synonym swap, typo noise and word dropout.

Each method changes a share ``p`` of the words of an instruction and keeps its meaning, so the
response and label stay valid. They are cheap stand-ins for the paper's embedding-based
replacement and back-translation (which need extra models). An augmented row is a near copy of
its source: augment the training split only, after splitting, or the copies leak into test.
Tags such as ``[NAME]`` from PII redaction are never changed.

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

import random
from typing import Callable

SYNONYMS = {
    "order": ["purchase"], "purchase": ["order"], "parcel": ["package"], "package": ["parcel"],
    "cannot": ["can't", "am unable to"], "help": ["assist", "support"], "buy": ["purchase"],
    "bought": ["purchased", "ordered"], "received": ["got"], "get": ["receive", "obtain"],
    "fast": ["quick", "prompt"], "quick": ["fast", "short"], "broken": ["damaged"],
    "damaged": ["broken"], "issue": ["problem"], "problem": ["issue"], "return": ["send back"],
    "refund": ["reimbursement"], "wrong": ["incorrect"], "change": ["modify", "update"],
    "delete": ["remove", "erase"], "charged": ["billed"], "still": ["yet"], "again": ["once more"],
    "error": ["fault"], "app": ["application"], "website": ["site"], "ship": ["send"],
    "different": ["another"], "arrived": ["came", "was delivered"], "whenever": ["every time"],
    "fails": ["stops"], "crashes": ["closes"], "need": ["require"], "explain": ["describe"],
    "tried": ["attempted"], "friend": ["buddy"], "answer": ["reply", "response"],
}
KEYBOARD = "abcdefghijklmnopqrstuvwxyz"


def _protected(word: str) -> bool:
    return word.startswith("[") or any(c.isdigit() for c in word)


def synonym_swap(text: str, rng: random.Random, p: float = 0.3) -> str:
    """Replace words that have an entry in ``SYNONYMS`` with probability ``p`` each."""
    out = []
    for word in text.split():
        core = word.rstrip(".,?!:;")
        key = core.lower()
        if key in SYNONYMS and rng.random() < p:
            new = rng.choice(SYNONYMS[key])
            word = (new[0].upper() + new[1:] if core[:1].isupper() else new) + word[len(core):]
        out.append(word)
    return " ".join(out)


def typo_noise(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Swap, drop or replace one letter in a share ``p`` of the words (4+ letters)."""
    out = []
    for word in text.split():
        if len(word) >= 4 and word.isalpha() and not _protected(word) and rng.random() < p:
            i = rng.randrange(1, len(word) - 1)
            op = rng.choice(["swap", "drop", "replace"])
            word = {"swap": word[:i - 1] + word[i] + word[i - 1] + word[i + 1:],
                    "drop": word[:i] + word[i + 1:],
                    "replace": word[:i] + rng.choice(KEYBOARD) + word[i + 1:]}[op]
        out.append(word)
    return " ".join(out)


def word_dropout(text: str, rng: random.Random, p: float = 0.1) -> str:
    """Drop each word with probability ``p`` (never a protected one, never all of them)."""
    words = text.split()
    kept = [w for w in words if _protected(w) or rng.random() >= p]
    return " ".join(kept or words)


METHODS: dict[str, Callable[[str, random.Random, float], str]] = {
    "synonym": synonym_swap, "typo": typo_noise, "dropout": word_dropout}
DEFAULT_P = {"synonym": 0.5, "typo": 0.1, "dropout": 0.1}


def augment_text(text: str, method: str, rng: random.Random, p: float | None = None) -> str:
    """One augmented copy of ``text`` with ``METHODS[method]``."""
    if method not in METHODS:
        raise ValueError(f"unknown augmentation {method!r}; choose one of {list(METHODS)}")
    return METHODS[method](text, rng, DEFAULT_P[method] if p is None else p)


def augment_rows(texts: list[str], methods: list[str], copies: int = 1,
                 seed: int = 0) -> list[dict]:
    """``copies`` augmented versions of each text per method, unchanged copies left out.

    Returns rows ``{"source": index, "method": name, "text": new text}``.
    """
    rng = random.Random(seed)
    rows = []
    for i, text in enumerate(texts):
        for method in methods:
            for _ in range(copies):
                new = augment_text(text, method, rng)
                if new != text:
                    rows.append({"source": i, "method": method, "text": new})
    return rows
