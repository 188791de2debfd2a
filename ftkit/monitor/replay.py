"""Replaying traffic against a model and recording what a service would (paper §9.2.1).

:func:`replay` takes a day-by-day table of prompts, sends ``per_day`` of each day's prompts to
an ``answer`` function and keeps, per request, the reply, the seconds it took, the tokens and
any error, while a :class:`~ftkit.monitor.metrics.ServiceMetrics` counts them for Prometheus.
``answer`` is any function from prompts to rows ``{"reply", "seconds", "tokens", "error"}``:
``ftkit.deploy.client.answer_all`` asks a served model over HTTP; :func:`in_process` asks a
model in this process when no server runs.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError
from ftkit.models.generation import chat_batch
from ftkit.monitor.metrics import ServiceMetrics
from ftkit.monitor.signals import column

Answer = Callable[[list[str]], list[dict]]


def in_process(model, tokenizer, max_new_tokens: int = 48, batch_size: int = 16) -> Answer:
    """An ``answer`` function over a model in this process: greedy replies, a batch at a time;
    each request's seconds is its batch's time (what a caller of a batching server waits)."""
    def answer(prompts: list[str]) -> list[dict]:
        rows = []
        for start in range(0, len(prompts), batch_size):
            chunk = prompts[start:start + batch_size]
            t0 = time.perf_counter()
            replies = chat_batch(model, tokenizer, chunk, max_new_tokens, batch_size)
            seconds = time.perf_counter() - t0
            rows += [{"reply": r, "seconds": seconds, "error": "",
                      "tokens": len(tokenizer(r, add_special_tokens=False)["input_ids"])}
                     for r in replies]
        return rows
    return answer


def sample_days(frame: pd.DataFrame, per_day: int, seed: int = 0,
                day_column: str = "day") -> pd.DataFrame:
    """Up to ``per_day`` rows of each day, drawn with a seeded generator, in day order."""
    column(frame, day_column, "day")
    if per_day < 1:
        raise ConfigError(f"per_day = {per_day}: replay at least one prompt a day")
    rng = np.random.default_rng(seed)
    picked = [rng.choice(group.index.to_numpy(), min(per_day, len(group)), replace=False)
              for _, group in frame.groupby(day_column, sort=True)]
    return frame.loc[np.sort(np.concatenate(picked))] if picked else frame[:0]


def replay(frame: pd.DataFrame, answer: Answer, per_day: int, seed: int = 0,
           metrics: ServiceMetrics | None = None, prompt_column: str = "prompt",
           day_column: str = "day", progress=None) -> pd.DataFrame:
    """The sampled rows of ``frame`` with ``reply``, ``seconds``, ``tokens``, ``error`` and
    ``day_wall_s`` (the seconds the whole day's requests took) added, answered one day at a
    time; ``metrics`` (if given) observes every request."""
    column(frame, prompt_column, "prompt")
    sample = sample_days(frame, per_day, seed, day_column)
    days = sorted(sample[day_column].unique())
    out = []
    for day in (progress(days, desc="replay") if progress else days):
        today = sample[sample[day_column] == day]
        t0 = time.perf_counter()
        rows = answer(today[prompt_column].astype(str).tolist())
        wall = time.perf_counter() - t0
        if len(rows) != len(today):
            raise ConfigError(f"the answer function returned {len(rows)} rows for "
                              f"{len(today)} prompts on day {day}")
        answered = pd.DataFrame(rows, index=today.index)[["reply", "seconds", "tokens", "error"]]
        if metrics is not None:
            for r in answered.itertuples():
                metrics.observe(r.seconds, r.tokens, ok=not r.error)
        out.append(today.join(answered).assign(day_wall_s=wall))
    return pd.concat(out) if out else sample.assign(reply="", seconds=0.0, tokens=0, error="",
                                                    day_wall_s=0.0)


__all__ = ["Answer", "in_process", "replay", "sample_days"]
