"""Preference data (paper §6.9): prompt/chosen/rejected rows, validated, split and formatted.

A preference row holds a ``prompt``, the ``chosen`` (preferred) reply and the ``rejected`` one;
the rows of ``data/preferences/`` also carry what the judge needs (``answer``, ``max_words``)
and a ``split``. :func:`validate` refuses rows a preference trainer cannot learn from —
missing or non-text fields, empty strings, chosen identical to rejected — either with an error
that names the row and the problem, or (``on_bad="skip"``) by dropping them and reporting
which and why. :func:`dpo_dataset` turns rows into the conversational dataset that TRL's
DPOTrainer expects (the model's chat template is applied by the trainer).

Used in notebooks/08_dpo_alignment.ipynb and notebooks/09_rlhf_reward_and_ppo.ipynb.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

from ftkit.core.config import ConfigError

REQUIRED = ("prompt", "chosen", "rejected")


@dataclass
class Validated:
    """Rows that passed, and ``(row index, reason)`` for each row that did not."""
    rows: list[dict]
    skipped: list[tuple[int, str]] = field(default_factory=list)

    def summary(self) -> str:
        return f"{len(self.rows)} rows kept, {len(self.skipped)} skipped" + "".join(
            f"\n  row {i}: {why}" for i, why in self.skipped[:10])


def problem(row: dict) -> str | None:
    """Why ``row`` cannot be a preference pair, or None when it can."""
    if not isinstance(row, dict):
        return f"not a mapping but {type(row).__name__}"
    missing = [k for k in REQUIRED if k not in row]
    if missing:
        return f"missing field(s) {missing}"
    for k in REQUIRED:
        if not isinstance(row[k], str):
            return f"field {k!r} is {type(row[k]).__name__}, not text"
        if not row[k].strip():
            return f"field {k!r} is empty"
    if row["chosen"].strip() == row["rejected"].strip():
        return "chosen and rejected are the same text: the pair states no preference"
    return None


def validate(rows: list[dict], on_bad: str = "raise") -> Validated:
    """Check every row (see :func:`problem`).

    Args:
        rows: candidate preference rows.
        on_bad: ``"raise"`` — a ConfigError naming the first bad row; ``"skip"`` — drop bad
            rows and list them in ``Validated.skipped``.
    """
    if on_bad not in ("raise", "skip"):
        raise ValueError(f"on_bad={on_bad!r}: choose 'raise' or 'skip'")
    kept, skipped = [], []
    for i, row in enumerate(rows):
        why = problem(row)
        if why is None:
            kept.append(row)
        elif on_bad == "raise":
            raise ConfigError(f"preference row {i}: {why} (pass on_bad='skip' to drop such rows)")
        else:
            skipped.append((i, why))
    if not kept:
        raise ConfigError(f"no usable preference rows out of {len(rows)}")
    return Validated(kept, skipped)


def load(path: str | Path, on_bad: str = "raise") -> Validated:
    """Read a JSONL file of preference rows and :func:`validate` them."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"preference file {path} not found; build it with "
                          "`python data/make_preferences.py`")
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return validate(rows, on_bad)


def select(rows: list[dict], split: str, n: int = 0, seed: int = 0) -> list[dict]:
    """Up to ``n`` rows (0 = all) of ``split``, in a seeded random order."""
    chosen = [r for r in rows if r.get("split") == split]
    if not chosen:
        raise ConfigError(f"no preference rows with split={split!r}")
    random.Random(seed).shuffle(chosen)
    return chosen[:n] if n else chosen


def kto_dataset(rows: list[dict], rng: random.Random | None = None):
    """Unpaired rows for TRL's KTOTrainer: each pair gives its chosen reply labelled ``True``
    (desirable) and its rejected reply labelled ``False``, shuffled by ``rng`` when given."""
    from datasets import Dataset

    validate(rows)
    out = [{"prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r[side]}],
            "label": side == "chosen"} for r in rows for side in ("chosen", "rejected")]
    if rng is not None:
        rng.shuffle(out)
    return Dataset.from_list(out)


def dpo_dataset(rows: list[dict]):
    """A ``datasets.Dataset`` in TRL's conversational preference format.

    ``prompt`` is a one-message user turn, ``chosen``/``rejected`` one assistant turn each, so
    the trainer applies the model's own chat template — the same one used at generation time.
    """
    from datasets import Dataset

    validate(rows)
    return Dataset.from_list([{
        "prompt": [{"role": "user", "content": r["prompt"]}],
        "chosen": [{"role": "assistant", "content": r["chosen"]}],
        "rejected": [{"role": "assistant", "content": r["rejected"]}]} for r in rows])
