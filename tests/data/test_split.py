"""ftkit.data.split: sizes, stratification, k-fold coverage, groups never straddle, leakage."""
import pytest

from ftkit.data import split

LABELS = ["a"] * 80 + ["b"] * 20


@pytest.mark.parametrize("method", list(split.SPLITTERS))
def test_split_partitions_all_rows(method):
    groups = [i // 4 for i in range(100)]
    train, test = split.split(100, method, test_size=0.2, seed=1, labels=LABELS, groups=groups)
    assert sorted(train + test) == list(range(100)) and not set(train) & set(test)
    assert 15 <= len(test) <= 25


def test_split_is_deterministic_per_seed():
    assert split.split(50, "random", seed=3) == split.split(50, "random", seed=3)
    assert split.split(50, "random", seed=3) != split.split(50, "random", seed=4)


def test_stratified_keeps_label_shares():
    train, test = split.split(100, "stratified", test_size=0.2, seed=0, labels=LABELS)
    assert sum(LABELS[i] == "b" for i in test) == 4
    assert split.label_shift(LABELS, train, test) == pytest.approx(0.0)


def test_group_split_keeps_groups_on_one_side_and_removes_leakage():
    groups = [i // 5 for i in range(100)]
    train, test = split.split(100, "group", test_size=0.2, seed=0, groups=groups)
    assert not {groups[i] for i in train} & {groups[i] for i in test}
    assert split.leakage_share(groups, train, test) == 0.0
    naive = split.split(100, "random", test_size=0.2, seed=0)
    assert split.leakage_share(groups, *naive) > 0.5


def test_leakage_share_pinned():
    assert split.leakage_share(["x", "y", "x", "z"], [0, 1], [2, 3]) == 0.5


@pytest.mark.parametrize("method, kwargs, words", [
    ("stratified", {}, "labels="), ("group", {"groups": [1, 2]}, "groups="),
    ("leave-one-out", {}, "choose one of"),
])
def test_split_errors(method, kwargs, words):
    with pytest.raises(ValueError, match=words):
        split.split(10, method, **kwargs)


def test_kfold_covers_every_row_once():
    folds = split.kfold(23, k=5, seed=0)
    assert len(folds) == 5
    held = sorted(i for _, val in folds for i in val)
    assert held == list(range(23))
    assert all(not set(t) & set(v) for t, v in folds)
    with pytest.raises(ValueError, match="2 <= k"):
        split.kfold(3, k=5)
