"""Day-by-day prompt signals of a stream of traffic (paper §9.2.2): what a monitor computes
each day and compares with a reference window.

:func:`daily_signals` takes a table with a day column and a prompt column, and a function that
embeds texts (for example ``ftkit.models.embeddings.encode`` on the offline MiniLM encoder).
For each day it reports the embedding drift against the reference days (MMD, as
``-log10 p``), the PSI of prompt length in words, and the share of prompts with personal data
(``ftkit.data.pii``). A day that cannot be scored (no prompts, too few for the test) gets
NaN for what it could not compute and a line in ``problems``; the next day is scored anyway.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError
from ftkit.data.pii import find_pii
from ftkit.monitor.drift import MIN_ROWS, mmd_test, psi


def _column(frame: pd.DataFrame, name: str, role: str) -> None:
    if name not in frame.columns:
        raise ConfigError(f"the traffic has no {role} column {name!r}; its columns are "
                          f"{list(frame.columns)} (pass {role}_column=...)")


def daily_signals(frame: pd.DataFrame, embed: Callable[[list[str]], np.ndarray],
                  reference_days: list, prompt_column: str = "prompt", day_column: str = "day",
                  n_permutations: int = 200, seed: int = 0) -> tuple[pd.DataFrame, list[str]]:
    """``(signals, problems)``: one row per day with ``drift_neglog10p``, ``length_psi``,
    ``pii_rate`` and ``prompts``; ``problems`` lists what could not be computed and why."""
    _column(frame, prompt_column, "prompt")
    _column(frame, day_column, "day")
    reference = frame[frame[day_column].isin(reference_days)][prompt_column].astype(str).tolist()
    if len(reference) < MIN_ROWS:
        raise ConfigError(f"the reference days {list(reference_days)} hold {len(reference)} "
                          f"prompts; the drift test needs at least {MIN_ROWS}")
    ref_vectors = np.asarray(embed(reference))
    ref_lengths = [len(p.split()) for p in reference]
    rows, problems = {}, []
    for day, prompts in frame.groupby(day_column, sort=True)[prompt_column]:
        texts = [p for p in prompts.astype(str) if p.strip()]
        row = {"prompts": len(texts), "drift_neglog10p": math.nan, "length_psi": math.nan,
               "pii_rate": math.nan}
        if texts:
            row["pii_rate"] = float(np.mean([bool(find_pii(t)) for t in texts]))
        try:
            test = mmd_test(ref_vectors, np.asarray(embed(texts)) if texts else np.empty((0, 1)),
                            n_permutations, seed)
            row["drift_neglog10p"] = -math.log10(test["p_value"])
            row["length_psi"] = psi(ref_lengths, [len(t.split()) for t in texts])
        except ConfigError as err:
            problems.append(f"day {day}: {err}")
        rows[day] = row
    return pd.DataFrame(rows).T, problems


__all__ = ["daily_signals"]
