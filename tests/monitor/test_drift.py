"""Drift statistics: quiet on samples from one distribution, loud on a shifted one."""
import numpy as np
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import drift


def test_mmd_finds_a_shift_and_not_a_resample():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(40, 8))
    same = drift.mmd_test(ref, rng.normal(size=(40, 8)), n_permutations=200)
    moved = drift.mmd_test(ref, rng.normal(size=(40, 8)) + np.r_[1.0, np.zeros(7)],
                           n_permutations=200)
    assert same["p_value"] > 0.05 and moved["p_value"] < 0.01
    assert moved["mmd2"] > same["mmd2"] and moved["bandwidth"] > 0


def test_mmd_p_values_are_uniform_enough_under_no_change():
    rng = np.random.default_rng(1)
    p = [drift.mmd_test(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)), 100, seed=i)["p_value"]
         for i in range(40)]
    assert 0.01 <= np.mean(np.array(p) < 0.1) <= 0.25  # about 10% false alarms at alpha 0.1


def test_psi_is_zero_for_the_same_values_and_large_for_a_shift():
    rng = np.random.default_rng(2)
    ref = rng.normal(size=500)
    assert drift.psi(ref, ref) < 1e-9
    assert drift.psi(ref, rng.normal(size=500)) < 0.1
    assert drift.psi(ref, rng.normal(loc=1.0, size=500)) > 0.2


@pytest.mark.parametrize("ref, cur, match", [
    (np.zeros((3, 2)), np.zeros((10, 2)), "reference window has 3 rows; the test needs at least 5"),
    (np.zeros((10, 2)), np.zeros((10, 3)), "2 dimensions, current ones 3"),
    (np.zeros(10), np.zeros((10, 2)), "must be a 2-D array"),
    (np.full((10, 2), np.nan), np.zeros((10, 2)), "NaN or infinite"),
])
def test_bad_windows_are_refused(ref, cur, match):
    with pytest.raises(ConfigError, match=match):
        drift.mmd_test(ref, cur)
