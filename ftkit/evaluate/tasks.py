"""Exact scores for the instruction tasks (data/instruct_tasks/), from greedy generations.

- ``extract``: the answer must parse as a JSON object with exactly the reference's keys and
  values (``field_accuracy`` gives partial credit per key);
- ``date``: the ISO date string, exactly;
- ``route``: the team name, exactly (surrounding spaces and a final full stop are ignored).

Used in notebooks 05, 06 and 07 (paper §6.1-6.4; §7.2 on automatic metrics).
"""
from __future__ import annotations

import json
from typing import Callable

import pandas as pd

from ftkit.models.generation import chat_batch


def _json(text: str) -> dict | None:
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None
    return value if isinstance(value, dict) else None


def field_accuracy(prediction: str, reference: str) -> float:
    """Share of the reference JSON's keys whose value the prediction reproduces."""
    ref, pred = _json(reference), _json(prediction) or {}
    if not ref:
        raise ValueError(f"reference {reference!r} is not a JSON object")
    return sum(pred.get(k) == v for k, v in ref.items()) / len(ref)


def _exact_json(prediction: str, reference: str) -> float:
    return float(_json(prediction) == _json(reference) and _json(prediction) is not None)


def _exact(prediction: str, reference: str) -> float:
    return float(prediction.strip() == reference.strip())


def _exact_name(prediction: str, reference: str) -> float:
    return float(prediction.strip().rstrip(".").strip() == reference.strip())


SCORERS: dict[str, Callable[[str, str], float]] = {
    "extract": _exact_json, "date": _exact, "route": _exact_name}


def score(task: str, prediction: str, reference: str) -> float:
    """1.0 when ``prediction`` is exactly right for ``task``, else 0.0."""
    if task not in SCORERS:
        raise ValueError(f"no scorer for task {task!r}; known: {sorted(SCORERS)}")
    return SCORERS[task](prediction, reference)


def evaluate(model, tokenizer, rows: list[dict], max_new_tokens: int = 40,
             batch_size: int = 16, progress=None) -> tuple[pd.DataFrame, dict[str, float]]:
    """Generate greedily for each row; per-example table and exact-match accuracy per task."""
    was_training = model.training
    model.eval()
    answers = chat_batch(model, tokenizer, [r["instruction"] for r in rows], max_new_tokens,
                         batch_size, progress)
    model.train(was_training)
    table = pd.DataFrame({"task": [r["task"] for r in rows], "answer": answers,
                          "reference": [r["response"] for r in rows]})
    table["correct"] = [score(t, a, r) for t, a, r in
                        zip(table.task, table.answer, table.reference)]
    return table, table.groupby("task")["correct"].mean().round(4).to_dict()
