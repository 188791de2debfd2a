"""How sure a model is, and whether it should be (paper §7.2.2).

- :func:`choice_confidence` — a multiple-choice question's choice log-likelihoods turned into
  probabilities (softmax over the choices); confidence = the top choice's probability.
- :func:`reliability` / :func:`ece` — calibration: within bins of confidence, the accuracy
  next to the mean confidence; the expected calibration error is their mean gap weighted by
  bin size, with a bootstrap interval (:func:`ece_interval`).
- :func:`selective` — answer only above a confidence threshold: accuracy against coverage.
- :func:`token_confidence` — the probability of every token a model generates, greedily: where
  in an answer it was unsure.

Used in notebooks/13_evaluation_and_safety.ipynb.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ftkit.core.config import ConfigError
from ftkit.models.generation import chat_ids


def choice_confidence(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` (from :func:`ftkit.evaluate.harness.choice_table`) with ``probs`` (softmax over
    the choices' log-likelihoods), ``confidence`` (the top choice's probability) and
    ``p_target``."""
    if table.empty:
        raise ConfigError("choice_confidence: no questions")
    probs = []
    for lls in table["loglik"]:
        z = np.asarray(lls, dtype=float)
        e = np.exp(z - z.max())
        probs.append(e / e.sum())
    out = table.copy()
    out["probs"] = probs
    out["confidence"] = [float(p.max()) for p in probs]
    out["p_target"] = [float(p[t]) for p, t in zip(probs, out["target"])]
    return out


def calibration_table(confidences: dict[str, pd.DataFrame], bins: int = 10, n_boot: int = 1000,
                      seed: int = 0) -> pd.DataFrame:
    """Per model and task (and ``all`` tasks): questions, accuracy, mean confidence, ECE with
    its bootstrap interval. ``confidences``: model → :func:`choice_confidence` rows with a
    ``task`` column."""
    rows = []
    for name, table in confidences.items():
        for task, group in [*table.groupby("task"), ("all", table)]:
            value, low, high = ece_interval(group.confidence, group.correct, bins, n_boot, seed)
            rows.append({"model": name, "task": task, "questions": len(group),
                         "accuracy": float(group.correct.mean()),
                         "confidence": float(group.confidence.mean()),
                         "ece": value, "ece_low": low, "ece_high": high})
    return pd.DataFrame(rows).set_index(["model", "task"])


def _check(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if conf.shape != ok.shape or conf.size == 0:
        raise ConfigError(f"need as many confidences as outcomes, at least one "
                          f"({conf.size} vs {ok.size})")
    if np.any((conf < 0) | (conf > 1)) or np.any(np.isnan(conf)):
        raise ConfigError("confidences must lie in [0, 1]")
    return conf, ok


def reliability(confidence, correct, bins: int = 10) -> pd.DataFrame:
    """Per equal-width confidence bin: count, mean confidence, accuracy (empty bins dropped)."""
    conf, ok = _check(confidence, correct)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    rows = []
    for b in range(bins):
        inside = which == b
        if inside.any():
            rows.append({"low": edges[b], "high": edges[b + 1], "count": int(inside.sum()),
                         "confidence": float(conf[inside].mean()),
                         "accuracy": float(ok[inside].mean())})
    return pd.DataFrame(rows)


def ece(confidence, correct, bins: int = 10) -> float:
    """Expected calibration error: Σ_bins (n_b / N) · |accuracy_b − confidence_b|."""
    table = reliability(confidence, correct, bins)
    n = table["count"].sum()
    return float((table["count"] / n * (table["accuracy"] - table["confidence"]).abs()).sum())


def ece_interval(confidence, correct, bins: int = 10, n_boot: int = 1000,
                 seed: int = 0) -> tuple[float, float, float]:
    """ECE and its 95 % bootstrap interval over questions: ``(ece, low, high)``."""
    conf, ok = _check(confidence, correct)
    rng = np.random.default_rng(seed)
    draws = [ece(conf[i], ok[i], bins) for i in rng.integers(0, conf.size, (n_boot, conf.size))]
    low, high = np.percentile(draws, [2.5, 97.5])
    return ece(conf, ok, bins), float(low), float(high)


def selective(confidence, correct) -> pd.DataFrame:
    """Answer only the most confident questions: for each threshold (every distinct
    confidence), the coverage (share answered) and the accuracy on the answered ones."""
    conf, ok = _check(confidence, correct)
    order = np.argsort(-conf, kind="stable")
    conf, ok = conf[order], ok[order]
    answered = np.arange(1, conf.size + 1)
    table = pd.DataFrame({"threshold": conf, "coverage": answered / conf.size,
                          "accuracy": np.cumsum(ok) / answered})
    # ties share a threshold: keep the row that answers all of them
    return table.groupby("threshold", sort=False).last().reset_index()


def accuracy_at_coverage(curve: pd.DataFrame, coverage: float) -> float:
    """Accuracy when answering (at least) the ``coverage`` share of questions, most
    confident first."""
    reach = curve[curve["coverage"] >= coverage - 1e-9]
    return float(reach.iloc[0]["accuracy"]) if len(reach) else float("nan")


@torch.inference_mode()
def token_confidence(model, tokenizer, prompt: str, max_new_tokens: int = 24) -> pd.DataFrame:
    """Greedy reply to ``prompt`` (chat template), one row per generated token: the token,
    its probability, and its rank-2 alternative with that one's probability."""
    ids = chat_ids(tokenizer, prompt).to(model.device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, output_scores=True, return_dict_in_generate=True,
                         pad_token_id=tokenizer.pad_token_id)
    rows = []
    for step, scores in enumerate(out.scores):
        probs = torch.softmax(scores[0].float(), -1)
        top = torch.topk(probs, 2)
        token = int(out.sequences[0, ids.shape[1] + step])
        rows.append({"token": tokenizer.decode([token]), "p": float(probs[token]),
                     "logprob": float(torch.log(probs[token])),
                     "runner_up": tokenizer.decode([int(top.indices[1])]),
                     "p_runner_up": float(top.values[1])})
        if token == tokenizer.eos_token_id:
            break
    return pd.DataFrame(rows)
