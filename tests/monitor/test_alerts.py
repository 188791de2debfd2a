"""Thresholds from calibration days; false alarms and detection delay per detector."""
import math

import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import alerts


def test_threshold_is_mean_plus_k_std_but_never_below_the_maximum():
    assert alerts.threshold([1.0, 3.0], k=0.0) == 3.0
    assert alerts.threshold([1.0, 3.0], k=3.0) == pytest.approx(2.0 + 3 * np.std([1, 3], ddof=1))
    with pytest.raises(ConfigError, match="at least 2 calibration days"):
        alerts.threshold([1.0, float("nan")])


def test_score_detectors_reads_false_alarms_and_delay():
    days = list(range(1, 21))
    quiet = np.r_[np.ones(10), 1.005, np.ones(9)]  # within the calibration spread: never fires
    early = np.r_[np.ones(10), 1.0, 1.0, 9.0, np.full(7, 9.0)]  # change on day 11, fires day 13
    noisy = np.r_[np.ones(5), np.ones(4), 50.0, np.full(10, 50.0)]  # fires on normal day 10
    signals = pd.DataFrame({"quiet": quiet, "early": early, "noisy": noisy}, index=days)
    signals.loc[[1, 3], :] += 0.01  # some spread on the calibration days
    table = alerts.score_detectors(signals, [1, 2, 3, 4, 5], [6, 7, 8, 9, 10], 11)
    assert table.loc["early", "delay_days"] == 2 and table.loc["early", "false_alarms"] == 0
    assert math.isnan(table.loc["quiet", "delay_days"])
    assert table.loc["noisy", "false_alarms"] == 1 and table.loc["noisy", "delay_days"] == 0
    with pytest.raises(ConfigError, match=r"days \[99\] are not in"):
        alerts.score_detectors(signals, [1, 2], [3], 99)


def test_a_calibration_day_is_judged_by_the_other_calibration_days():
    days = list(range(1, 11))
    spike = pd.DataFrame({"s": [1.0, 1.1, 0.9, 1.0, 5.0, 1.0, 1.05, 0.95, 9.0, 9.0]}, index=days)
    table = alerts.score_detectors(spike, [1, 2, 3, 4, 5, 6, 7, 8], [1, 2, 3, 4, 5, 6, 7, 8], 9)
    assert table.loc["s", "false_alarms"] == 1, "day 5 stands out from the other seven"
    assert table.loc["s", "delay_days"] == 0 and table.loc["s", "alarm_days"] == "9, 10"
    assert alerts.summary(table) == {"s": {"false_alarms": 1, "delay_days": 0}}
    quiet = alerts.score_detectors(spike.clip(upper=1.1), [1, 2, 3], [4], 9)
    assert alerts.summary(quiet)["s"]["delay_days"] is None
    fired = alerts.alarms(spike, [1, 2, 3, 4, 6, 7, 8])
    assert fired.s.tolist() == [False] * 4 + [True] + [False] * 3 + [True, True]
