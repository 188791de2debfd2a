"""What the service answered, day by day (paper §9.2.1 and §9.2.3).

:func:`response_signals` reads a replayed day of traffic (prompt, reply, seconds, error) and
gives, per day: the error rate and the 95th-percentile latency (functional monitoring), the
refusal rate, the reply length, how unsure an intent classifier is about the day's prompts,
and, on the days whose labels (the shop's answers) have arrived, ``answer_miss``: one minus
the mean share of the answer's content words that the reply gives
(``ftkit.evaluate.judge.fact_recall``).

- :class:`IntentModel` (``ftkit.evaluate.classification.EmbeddingClassifier``) — logistic
  regression over sentence embeddings, fitted on labelled
  texts: the service's intent router (its confidence on prompts is a signal) and, fitted on
  the shop's answers, a judge of the reply's topic (:func:`topic_correct`).
- :func:`answer_correct` — a reply gives the shop's answer: at least ``threshold`` of the
  answer's content words are in it. A reply on the right topic with an invented policy is on
  topic and wrong; the two judges together tell those apart.
- :func:`is_refusal` (``ftkit.evaluate.safety``) — a reply that declines to help, from a
  list of refusal phrasings.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError
from ftkit.evaluate.classification import EmbeddingClassifier
from ftkit.evaluate.judge import fact_recall
from ftkit.evaluate.safety import is_refusal
from ftkit.monitor.signals import column

RESPONSE_SIGNALS = ("error_rate", "latency_p95_s", "refusal_rate", "reply_words",
                    "intent_uncertainty", "answer_miss")
# the service's intent router and topic judge: logistic regression on sentence embeddings
IntentModel = EmbeddingClassifier


def _texts(replies) -> list[str]:
    return [r if isinstance(r, str) else "" for r in replies]


def topic_correct(judge: IntentModel, replies: list[str], intents: list[str]) -> np.ndarray:
    """1.0 where the judge reads a reply as being about its prompt's intent, else 0.0; a
    missing reply (failed request) counts as wrong."""
    replies = _texts(replies)
    said = judge.predict(replies) if replies else []
    return np.array([float(bool(r.strip()) and s == want)
                     for r, s, want in zip(replies, said, intents)])


def answer_correct(replies: list[str], answers: list[str], threshold: float = 0.5) -> np.ndarray:
    """1.0 where a reply holds at least ``threshold`` of its answer's content words."""
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"threshold = {threshold}: a share in (0, 1]")
    return np.array([float(fact_recall(r, a) >= threshold)
                     for r, a in zip(_texts(replies), answers)])


def response_signals(replies: pd.DataFrame, router: IntentModel, labels_until=None,
                     day_column: str = "day") -> pd.DataFrame:
    """One row per day of a replayed table (columns ``prompt``, ``reply``, ``seconds``,
    ``error``, and ``answer`` for the answer signal): the columns of :data:`RESPONSE_SIGNALS`
    ``latency_p50_s``, ``tokens_per_s`` (with a ``day_wall_s`` column, as
    :func:`~ftkit.monitor.replay.replay` gives) and ``replies``. ``answer_miss`` is NaN after
    ``labels_until`` (labels not in yet) and on days without answers."""
    for name, role in ((day_column, "day"), ("prompt", "prompt"), ("reply", "reply"),
                       ("seconds", "seconds"), ("error", "error")):
        column(replies, name, role)
    labelled_all = (replies.answer.fillna("").astype(str).str.strip() != ""
                    if "answer" in replies else pd.Series(False, index=replies.index))
    rows = {}
    for day, group in replies.groupby(day_column, sort=True):
        ok = group[group.error.fillna("") == ""]
        texts = ok.reply.fillna("").astype(str).tolist()
        row = {"replies": len(group), "error_rate": 1.0 - len(ok) / len(group),
               "latency_p50_s": float(np.percentile(ok.seconds, 50)) if len(ok) else np.nan,
               "tokens_per_s": (float(ok.tokens.sum() / group.day_wall_s.iloc[0])
                                if "day_wall_s" in group and group.day_wall_s.iloc[0] > 0
                                else np.nan),
               "latency_p95_s": float(np.percentile(ok.seconds, 95)) if len(ok) else np.nan,
               "refusal_rate": float(np.mean([is_refusal(t) for t in texts])) if texts else np.nan,
               "reply_words": float(np.mean([len(t.split()) for t in texts])) if texts else np.nan,
               "intent_uncertainty": float(1 - router.proba(group.prompt.astype(str).tolist())
                                           .max(1).mean()),
               "answer_miss": np.nan}
        labelled = group[labelled_all[group.index]]
        if len(labelled) and (labels_until is None or day <= labels_until):
            recall = [fact_recall(r, a) for r, a in zip(_texts(labelled.reply), labelled.answer)]
            row["answer_miss"] = float(1 - np.nanmean(recall))
        rows[day] = row
    return pd.DataFrame(rows).T


__all__ = ["IntentModel", "RESPONSE_SIGNALS", "answer_correct", "is_refusal", "response_signals",
           "topic_correct"]
