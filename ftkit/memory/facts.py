"""The shop's fact base, questions about it, and how an answer is scored (notebook 11).

A fact is one exact value (a price, a warranty, an item code, a weight, opening hours …) that
the assistant should give back unchanged. An answer is *right* when it contains the fact's
value (compared on normalised text, with number boundaries, so "6 months" is not found in
"36 months"), and *confident* when the mean probability of its generated tokens reaches a
threshold; a confident wrong answer is counted as a hallucination (paper §6.5: memory tuning
aims at exactly those).
"""
from __future__ import annotations

import json
import random
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch

from ftkit.core.config import ConfigError
from ftkit.data.formatting import pairs_dataset
from ftkit.models.generation import left_padded

SYSTEM = "You are the shop's assistant. Give the exact value asked for."
FILES = ("facts.jsonl", "questions.jsonl", "updates.jsonl")


@dataclass(frozen=True)
class FactBase:
    """All facts of the shop, the questions about them, and which of them a run learns.

    ``chosen``: ids of the facts the models learn and are asked about; ``changed``: those of
    them that ``updates`` changes later. ``current`` maps each fact id to its value now
    (after :meth:`updated`, the new value).
    """
    facts: dict[str, dict]
    questions: list[dict]
    chosen: list[str]
    changed: list[str]
    updates: dict[str, dict] = field(default_factory=dict)
    applied: bool = False

    def value(self, fact_id: str) -> str:
        if self.applied and fact_id in self.updates:
            return self.updates[fact_id]["value"]
        return self.facts[fact_id]["value"]

    def text(self, fact_id: str) -> str:
        if self.applied and fact_id in self.updates:
            return self.updates[fact_id]["text"]
        return self.facts[fact_id]["text"]

    def updated(self) -> FactBase:
        """The same base after the changes of ``updates.jsonl``."""
        return FactBase(self.facts, self.questions, self.chosen, self.changed, self.updates,
                        applied=True)

    def rows(self, split: str, ids: list[str] | None = None) -> list[dict]:
        """Question rows of ``split`` ("train" or "heldout") about ``ids`` (default: the
        chosen facts), each with the fact's current value and sentence."""
        wanted = set(self.chosen if ids is None else ids)
        if split not in {"train", "heldout"}:
            raise ConfigError(f"split must be 'train' or 'heldout', got {split!r}")
        return [{**q, "subject": self.facts[q["fact"]]["subject"],
                 "attribute": self.facts[q["fact"]]["attribute"],
                 "value": self.value(q["fact"]), "answer": self.text(q["fact"])}
                for q in self.questions if q["split"] == split and q["fact"] in wanted]

    def documents(self) -> list[tuple[str, str]]:
        """``(fact id, sentence)`` for every fact of the shop: what a retriever indexes."""
        return [(fid, self.text(fid)) for fid in self.facts]


def _read(path: Path) -> list[dict]:
    if not path.exists():
        raise ConfigError(f"{path} not found; write the fact base with "
                          "`python data/make_shop_facts.py`")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def load(folder: str | Path, n_facts: int = 0, n_updated: int = 0, seed: int = 42) -> FactBase:
    """The fact base in ``folder``; ``n_facts`` chosen at random (0 = all), ``n_updated`` of
    them among the facts that ``updates.jsonl`` changes."""
    folder = Path(folder)
    facts = {f["id"]: f for f in _read(folder / FILES[0])}
    if not facts:
        raise ConfigError(f"the fact base {folder / FILES[0]} has no facts; regenerate it with "
                          "`python data/make_shop_facts.py`")
    questions = _read(folder / FILES[1])
    updates = {u["id"]: u for u in _read(folder / FILES[2])}
    unknown = sorted({q["fact"] for q in questions} - set(facts))
    if unknown:
        raise ConfigError(f"{folder / FILES[1]} asks about facts not in facts.jsonl: {unknown[:5]}")
    n_facts = n_facts or len(facts)
    if n_facts > len(facts):
        raise ConfigError(f"n_facts = {n_facts}, but the fact base has {len(facts)} facts")
    if n_updated > min(len(updates), n_facts):
        raise ConfigError(f"n_updated = {n_updated}, but updates.jsonl changes {len(updates)} "
                          f"facts and {n_facts} are chosen")
    rng = random.Random(seed)
    changed = sorted(rng.sample(sorted(updates), n_updated))
    rest = sorted(set(facts) - set(changed))
    chosen = sorted(changed + rng.sample(rest, n_facts - n_updated))
    for split in ("train", "heldout"):
        missing = [f for f in chosen if not any(q["fact"] == f and q["split"] == split
                                                for q in questions)]
        if missing:
            raise ConfigError(f"facts {missing[:5]} have no {split!r} question in {FILES[1]}")
    return FactBase(facts, questions, chosen, changed, updates)


# ---------------------------------------------------------------- prompts and training data
def system_prompt(context: list[str] | None = None) -> str:
    """The system turn; with ``context`` (retrieved sentences) the facts to answer from."""
    if not context:
        return SYSTEM
    return SYSTEM + " Use these facts:\n" + "\n".join(f"- {c}" for c in context)


def prompt(tokenizer, question: str, context: list[str] | None = None) -> str:
    """The chat-template text of one question, ready for the assistant's answer."""
    return tokenizer.apply_chat_template(
        [{"role": "system", "content": system_prompt(context)},
         {"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)


def examples(tokenizer, rows: list[dict], max_length: int = 128):
    """Training examples: each question with its fact's value as the answer, alone, so that
    the loss sees nothing but the value (a mean loss near zero means every value is known)."""
    if not rows:
        raise ConfigError("no question rows to train on: is the fact base empty?")
    prompts, completions = [], []
    for r in rows:
        p = prompt(tokenizer, r["question"])
        full = tokenizer.apply_chat_template(
            [{"role": "system", "content": SYSTEM}, {"role": "user", "content": r["question"]},
             {"role": "assistant", "content": r["value"]}], tokenize=False)
        prompts.append(p)
        completions.append(full[len(p):].rstrip("\n"))
    return pairs_dataset(tokenizer, prompts, completions, max_length)


# ---------------------------------------------------------------- answering and scoring
@torch.inference_mode()
def generate(model, tokenizer, texts: list[str], max_new_tokens: int = 24,
             batch_size: int = 16) -> tuple[list[str], list[float]]:
    """Greedy answers to prompt ``texts`` and each answer's confidence: the geometric mean
    probability of its tokens (up to and including the end of turn)."""
    answers, confidence = [], []
    model.eval()
    for i in range(0, len(texts), batch_size):
        enc = left_padded(tokenizer, texts[i:i + batch_size], model.device)
        out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                             pad_token_id=tokenizer.pad_token_id, output_scores=True,
                             return_dict_in_generate=True)
        new = out.sequences[:, enc["input_ids"].shape[1]:]
        logp = torch.stack([s.float().log_softmax(-1) for s in out.scores], 1)  # (B, T, V)
        picked = logp.gather(-1, new.unsqueeze(-1)).squeeze(-1)  # (B, T)
        ended = (new == tokenizer.eos_token_id) | (new == tokenizer.pad_token_id)
        after = ended.long().cumsum(1) - ended.long()  # 0 up to and including the first end
        keep = (after == 0).float()
        mean = (picked * keep).sum(1) / keep.sum(1).clamp(min=1.0)
        answers += [a.strip() for a in tokenizer.batch_decode(new, skip_special_tokens=True)]
        confidence += mean.exp().tolist()
    return answers, confidence


# the parts of a value that must appear: prices, times, item codes, plain numbers; a value
# without any (a weekday) must appear as a word
_KEY = re.compile(r"[a-z]{2}-\d{4}|\d+:\d\d|\d+(?:\.\d\d)?")


def normalise(text: str) -> str:
    text = text.lower().replace("€", " ").replace("–", "-").replace("—", "-")
    return re.sub(r"\s+", " ", text).strip()


def keys(value: str) -> list[str]:
    """What an answer must contain for ``value``: its numbers, times and codes (units may be
    written differently: "24-month", "6108 grams"), else the value itself."""
    v = normalise(value)
    return _KEY.findall(v) or [v]


def is_right(answer: str, value: str) -> bool:
    """Whether ``answer`` holds every key of ``value`` (:func:`keys`) in order, each a whole
    token: "6" is not found in "36", "13.99" not in "313.99", "381.9" not in "381.95"."""
    text, pos = normalise(answer), 0
    for key in keys(value):
        plural = "" if any(c.isdigit() for c in key) else "s?"  # "Mondays" for "Monday"
        m = re.compile(r"(?<![\w.:])" + re.escape(key) + plural + r"(?![\w:]|\.\d)").search(text, pos)
        if m is None:
            return False
        pos = m.end()
    return True


def score(rows: list[dict], answers: list[str], confidence: list[float],
          threshold: float) -> pd.DataFrame:
    """One row per question: the answer, right or not, confident or not, hallucinated
    (wrong and confident)."""
    if len(rows) != len(answers) or len(answers) != len(confidence):
        raise ConfigError(f"{len(rows)} questions, {len(answers)} answers, "
                          f"{len(confidence)} confidences: need one of each per question")
    table = pd.DataFrame([{"fact": r["fact"], "question": r["question"], "value": r["value"],
                           "answer": a, "confidence": c} for r, a, c in
                          zip(rows, answers, confidence)])
    table["right"] = [is_right(a, r["value"]) for r, a in zip(rows, answers)]
    table["confident"] = table["confidence"] >= threshold
    table["hallucinated"] = ~table["right"] & table["confident"]
    return table


def summary(table: pd.DataFrame) -> dict:
    """Exact-fact accuracy, hallucination rate and the share of confident answers."""
    return {"accuracy": float(table["right"].mean()),
            "hallucination": float(table["hallucinated"].mean()),
            "confident": float(table["confident"].mean()),
            "wrong_unsure": float((~table["right"] & ~table["confident"]).mean())}


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds)``."""
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def sample_table(base: FactBase, n: int = 6) -> pd.DataFrame:
    """The first ``n`` chosen facts with one held-out question each."""
    held = {r["fact"]: r["question"] for r in base.rows("heldout")}
    return pd.DataFrame([{k: base.facts[f][k] for k in ("subject", "attribute", "value", "text")}
                         | {"held-out question": held[f], "changes later": f in base.changed}
                         for f in base.chosen[:n]])
