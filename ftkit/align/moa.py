"""Mixture of Agents: several models answer, one reads their answers and writes the final one
(paper §6.7; notebook 10).

A *proposer* is a model and a way of decoding (greedy, or sampled at a temperature); an
*aggregator* is a model prompted with the task and the proposers' answers. With two layers the
proposers answer a second time, each now seeing the first layer's answers, before the
aggregator reads the second layer's. Every design is scored on tasks with checkable answers
(ftkit.evaluate.tasks: exact JSON records, dates, routing labels) beside the best single
proposer and a majority vote over the proposers, and costed in seconds and generated tokens.
:func:`paired_interval` gives a bootstrap interval for the difference between two designs on
the same questions, so a gain of a few points can be told from noise.
"""
from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import torch

from ftkit.core.config import ConfigError
from ftkit.evaluate import tasks
from ftkit.models.generation import chat_batch, sample_groups


@dataclass
class Proposer:
    """A model and how it decodes: ``temperature`` 0 is greedy."""
    name: str
    model: object
    temperature: float = 0.0


@dataclass
class Answers:
    """One design's answers and what they cost."""
    texts: list[str]
    seconds: float
    tokens: int
    parts: list[str] = field(default_factory=list)  # the calls it is made of


def answer(proposer: Proposer, tokenizer, prompts: list[str], max_new_tokens: int,
           batch_size: int = 16, seed: int = 0) -> Answers:
    """``proposer``'s answers to user ``prompts``, timed, with their token count."""
    t0 = time.perf_counter()
    if proposer.temperature <= 0:
        texts = chat_batch(proposer.model, tokenizer, prompts, max_new_tokens, batch_size)
    else:
        torch.manual_seed(seed)
        texts = []
        for i in range(0, len(prompts), batch_size):
            chats = [tokenizer.apply_chat_template([{"role": "user", "content": p}],
                                                   tokenize=False, add_generation_prompt=True)
                     for p in prompts[i:i + batch_size]]
            texts += [g[0] for g in sample_groups(proposer.model, tokenizer, chats, 1,
                                                  max_new_tokens, proposer.temperature,
                                                  greedy_first=False)]
    seconds = time.perf_counter() - t0
    tokens = sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    return Answers(texts, seconds, tokens, [proposer.name])


def aggregate_prompt(instruction: str, candidates: list[str]) -> str:
    """The task and the candidates, numbered, with the request for one final answer."""
    listed = "\n".join(f"{i}. {c.strip() or '(no answer)'}" for i, c in enumerate(candidates, 1))
    return (f"{instruction}\n\nOther assistants answered this task:\n{listed}\n\nSome of these "
            "answers may be wrong. Using them, give the single best answer to the task, in "
            "exactly the format the task asks for, and nothing else.")


def majority(candidates: list[list[str]]) -> list[str]:
    """Per question, the most frequent answer (whitespace-normalised); ties go to the
    earlier proposer."""
    out = []
    for row in candidates:
        norm = [" ".join(c.split()) for c in row]
        counts = Counter(norm)
        out.append(max(norm, key=lambda c: (counts[c], -norm.index(c))))
    return out


def mixture(proposers: list[Proposer], aggregator: Proposer, tokenizer, rows: list[dict],
            layers: int = 1, max_new_tokens: int = 40, batch_size: int = 16,
            seed: int = 0, progress=None) -> dict[str, Answers]:
    """Every design on ``rows`` (each with ``instruction``): each proposer alone, the
    majority vote, and Mixture of Agents with 1 … ``layers`` layers."""
    if not proposers:
        raise ConfigError("Mixture of Agents needs at least one proposer")
    if layers < 1:
        raise ConfigError(f"layers = {layers}: must be at least 1")
    instructions = [r["instruction"] for r in rows]
    designs: dict[str, Answers] = {}
    prompts, spent_s, spent_t, parts = instructions, 0.0, 0, []
    steps = range(1, layers + 1)
    for layer in (progress(steps, desc="MoA layers") if progress else steps):
        round_ = [answer(p, tokenizer, prompts, max_new_tokens, batch_size, seed + layer)
                  for p in proposers]
        spent_s += sum(a.seconds for a in round_)
        spent_t += sum(a.tokens for a in round_)
        parts += [f"{p.name} (layer {layer})" for p in proposers]
        if layer == 1:
            designs.update({p.name: a for p, a in zip(proposers, round_)})
            votes = majority([list(c) for c in zip(*(a.texts for a in round_))])
            designs["majority vote"] = Answers(votes, spent_s, spent_t, list(parts))
        candidates = [list(c) for c in zip(*(a.texts for a in round_))]
        prompts = [aggregate_prompt(i, c) for i, c in zip(instructions, candidates)]
        final = answer(aggregator, tokenizer, prompts, max_new_tokens, batch_size, seed)
        designs[f"MoA, {layer} layer{'s' * (layer > 1)}"] = Answers(
            final.texts, spent_s + final.seconds, spent_t + final.tokens,
            parts + [f"{aggregator.name} (aggregator)"])
    return designs


def correct(rows: list[dict], texts: list[str]) -> np.ndarray:
    """1/0 per question: exactly right for its task (ftkit.evaluate.tasks.score)."""
    return np.array([tasks.score(r["task"], t, r["response"]) for r, t in zip(rows, texts)])


def paired_interval(a: np.ndarray, b: np.ndarray, n_boot: int = 2000, level: float = 0.95,
                    seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` over the same questions and its bootstrap interval."""
    if len(a) != len(b) or not len(a):
        raise ConfigError(f"paired_interval needs two equal, non-empty score lists ({len(a)}, {len(b)})")
    diff = np.asarray(a, float) - np.asarray(b, float)
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), (n_boot, len(diff)))].mean(1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(diff.mean()), float(lo), float(hi)


def designs_table(rows: list[dict], designs: dict[str, Answers]):
    """Accuracy (all and per task), seconds and generated tokens of every design."""
    import pandas as pd

    table = {}
    for name, d in designs.items():
        right = correct(rows, d.texts)
        by_task = pd.Series(right).groupby([r["task"] for r in rows]).mean()
        table[name] = {"accuracy": float(right.mean()), **{f"acc_{t}": float(v) for t, v in by_task.items()},
                       "seconds": d.seconds, "tokens": d.tokens, "calls": len(d.parts)}
    return pd.DataFrame(table).T
