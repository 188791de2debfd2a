"""Alert thresholds and how well each detector does (paper §9.2.4).

A detector is one number per day (a drift statistic, an error rate, a refusal rate), higher
meaning worse. :func:`threshold` sets its alarm level from calibration days that are known to
be normal: their mean plus ``k`` standard deviations, never below their maximum.
:func:`score_detectors` then reads, for each detector, the false alarms on the normal days
and the delay from a change's first day to the first alarm on or after it. A normal day that
is also a calibration day is judged by the threshold of the *other* calibration days (leave
one out), so every known-normal day can count as a test of false alarms.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError


def threshold(calibration, k: float = 3.0) -> float:
    """``max(mean + k * std, max)`` of the calibration values (at least two)."""
    values = np.asarray(calibration, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2:
        raise ConfigError(f"a threshold needs at least 2 calibration days with values; got "
                          f"{len(values)}")
    return float(max(values.mean() + k * values.std(ddof=1), values.max()))


def alarms(signals: pd.DataFrame, calibration_days: list, k: float = 3.0) -> pd.DataFrame:
    """True where a detector (a column of ``signals``) is above its threshold."""
    levels = {name: threshold(signals.loc[calibration_days, name], k) for name in signals}
    return signals.gt(pd.Series(levels)) & signals.notna()


def score_detectors(signals: pd.DataFrame, calibration_days: list, normal_days: list,
                    change_day, k: float = 3.0) -> pd.DataFrame:
    """One row per detector (a column of ``signals``, indexed by day): its threshold, the
    false alarms on ``normal_days`` (a calibration day among them is judged by the threshold
    of the other calibration days), the first alarm on or after ``change_day``, the delay
    in days (NaN: never fired) and every day it fired from ``change_day`` on."""
    missing = [d for d in [*calibration_days, *normal_days, change_day] if d not in signals.index]
    if missing:
        raise ConfigError(f"days {missing[:5]} are not in the signals' index")
    rows = {}
    for name in signals.columns:
        level = threshold(signals.loc[calibration_days, name], k)
        fired = signals[name] > level
        after = [d for d in signals.index[signals.index >= change_day] if fired[d]]
        false = 0
        for day in normal_days:
            if day in calibration_days:
                others = [d for d in calibration_days if d != day]
                false += bool(signals.loc[day, name] > threshold(signals.loc[others, name], k))
            else:
                false += bool(fired[day])
        rows[name] = {"threshold": level, "false_alarms": false,
                      "normal_days": len(normal_days),
                      "first_alarm": after[0] if after else np.nan,
                      "delay_days": (after[0] - change_day) if after else np.nan,
                      "alarm_days": ", ".join(str(d) for d in after)}
    return pd.DataFrame(rows).T


def summary(scores: pd.DataFrame) -> dict:
    """``{detector: {"false_alarms": int, "delay_days": int or None}}`` of a
    :func:`score_detectors` table (None: it never fired after the change), ready to record."""
    return {name: {"false_alarms": int(row.false_alarms),
                   "delay_days": None if pd.isna(row.delay_days) else int(row.delay_days)}
            for name, row in scores.iterrows()}


__all__ = ["alarms", "score_detectors", "summary", "threshold"]
