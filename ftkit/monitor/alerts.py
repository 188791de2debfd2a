"""Alert thresholds and how well each detector does (paper §9.2.4).

A detector is one number per day (a drift statistic, an error rate, a refusal rate), higher
meaning worse. :func:`threshold` sets its alarm level from calibration days that are known to
be normal: their mean plus ``k`` standard deviations, never below their maximum.
:func:`score_detectors` then reads, for each detector, the false alarms on the other normal
days and the delay from a change's first day to the first alarm on or after it.
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


def score_detectors(signals: pd.DataFrame, calibration_days: list, normal_days: list,
                    change_day, k: float = 3.0) -> pd.DataFrame:
    """One row per detector (a column of ``signals``, indexed by day): its threshold, the
    false alarms on ``normal_days`` (they should not overlap ``calibration_days``), the
    first alarm on or after ``change_day`` and the delay in days (NaN: never fired)."""
    missing = [d for d in [*calibration_days, *normal_days, change_day] if d not in signals.index]
    if missing:
        raise ConfigError(f"days {missing[:5]} are not in the signals' index")
    rows = {}
    for name in signals.columns:
        level = threshold(signals.loc[calibration_days, name], k)
        alarms = signals[name] > level
        after = [d for d in signals.index[signals.index >= change_day] if alarms[d]]
        rows[name] = {"threshold": level,
                      "false_alarms": int(alarms[normal_days].sum()),
                      "normal_days": len(normal_days),
                      "first_alarm": after[0] if after else np.nan,
                      "delay_days": (after[0] - change_day) if after else np.nan}
    return pd.DataFrame(rows).T


__all__ = ["score_detectors", "threshold"]
