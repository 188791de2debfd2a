"""ftkit.data.balance: checks, counts, over/under-sampling, SMOTE, class weights, any CSV."""
import numpy as np
import pytest
from datasets import Dataset

from ftkit.data import balance
from ftkit.data.balance import BalanceError

Y = np.array([0] * 12 + [1] * 6 + [2] * 3)  # 12 / 6 / 3 rows


def _ds(labels=("a",) * 8 + ("b",) * 2, text="text", label="label"):
    return Dataset.from_dict({text: [f"row {i}" for i in range(len(labels))], label: list(labels)})


def test_oversample_counts_match_largest_class():
    idx = balance.oversample_indices(Y, seed=0)
    assert np.bincount(Y[idx]).tolist() == [12, 12, 12]
    assert set(np.flatnonzero(Y == 2)) <= set(idx)  # every original row kept


def test_undersample_counts_match_smallest_class():
    idx = balance.undersample_indices(Y, seed=0)
    assert np.bincount(Y[idx]).tolist() == [3, 3, 3]
    assert len(set(idx)) == len(idx)  # no repeats


def test_resampling_is_seeded():
    a, b = balance.oversample_indices(Y, 1), balance.oversample_indices(Y, 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, balance.oversample_indices(Y, 2))


def test_smote_shape_and_labels():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(len(Y), 4)).astype(np.float32)
    X_new, y_new = balance.smote(X, Y, seed=0, k_neighbors=5)  # k lowered to 2 for class 2
    assert X_new.shape == (36, 4) and np.bincount(y_new).tolist() == [12, 12, 12]
    assert np.allclose(X_new[: len(Y)], X)  # originals first, synthetic rows appended
    lo, hi = X[Y == 2].min(0), X[Y == 2].max(0)  # synthetic points lie between minority points
    synthetic = X_new[len(Y):][y_new[len(Y):] == 2]
    assert ((synthetic >= lo - 1e-6) & (synthetic <= hi + 1e-6)).all()


def test_resample_dispatch_and_unknown_method():
    X = np.arange(len(Y))[:, None].astype(float)
    X_r, y_r = balance.resample("undersample", X, Y, seed=3)
    assert np.array_equal(Y[X_r[:, 0].astype(int)], y_r)  # rows stay paired with labels
    assert set(balance.METHODS) == {"none", "oversample", "undersample", "smote"}
    with pytest.raises(BalanceError, match="unknown re-sampling method 'bogus'"):
        balance.resample("bogus", X, Y)


def test_class_weights_formula():
    w = balance.class_weights(Y)
    assert np.allclose(w, [21 / (3 * 12), 21 / (3 * 6), 21 / (3 * 3)])
    assert np.allclose((w * np.bincount(Y)).sum(), len(Y))  # weighted count = N
    with pytest.raises(BalanceError, match=r"class\(es\) \[3\] have no rows"):
        balance.class_weights(Y, n_classes=4)


def test_minority_classes_and_counts():
    counts = balance.class_counts(np.array([0] * 95 + [1] * 4 + [2]), ["big", "small", "tiny"])
    assert counts == {"big": 95, "small": 4, "tiny": 1}
    assert balance.minority_classes(counts, 0.06) == ["small", "tiny"]
    assert balance.minority_classes({"a": 5, "b": 5}, 0.06) == ["a"]  # at least the rarest


def test_any_csv_with_custom_column_names(tmp_path):
    path = tmp_path / "mine.csv"
    rows = ["body,intent"] + [f"msg {i},{'spam' if i % 5 == 0 else 'ham'}" for i in range(40)]
    path.write_text("\n".join(rows) + "\n")
    ds = Dataset.from_csv(str(path))
    balance.check_dataset(ds, "body", "intent")
    train_ds, eval_ds = balance.stratified_split(ds, "intent", 0.25, seed=0)
    assert len(eval_ds) == 10 and eval_ds["intent"].count("spam") == 2
    y, classes = balance.label_ids(train_ds, "intent")
    assert classes == ["ham", "spam"] and np.bincount(y).tolist() == [24, 6]
    up = balance.resample_dataset(train_ds, "oversample", "intent", seed=0)
    assert up["intent"].count("spam") == up["intent"].count("ham") == 24
    assert set(up["body"]) == set(train_ds["body"])  # real texts, repeated


def test_bad_inputs_give_clear_errors():
    with pytest.raises(BalanceError, match=r"\['label'\] not found"):
        balance.check_dataset(_ds(label="intent"))
    with pytest.raises(BalanceError, match="only one class"):
        balance.check_dataset(_ds(labels=("a",) * 4))
    with pytest.raises(BalanceError, match="empty"):
        balance.check_dataset(Dataset.from_dict({"text": [], "label": []}))
    with pytest.raises(BalanceError, match=r"\['zzz'\] .* not among the known classes"):
        balance.label_ids(_ds(labels=("a", "zzz")), "label", classes=["a", "b"])
    with pytest.raises(BalanceError, match="only one class"):
        balance.oversample_indices(np.zeros(5, dtype=int))
    with pytest.raises(BalanceError, match="no labels"):
        balance.undersample_indices(np.array([], dtype=int))
    with pytest.raises(BalanceError, match="works on feature vectors"):
        balance.resample_dataset(_ds(), "smote")
    with pytest.raises(BalanceError, match="SMOTE needs at least 2"):
        balance.smote(np.zeros((3, 2)), np.array([0, 0, 1]))


def test_distribution_figure_has_one_panel_per_method():
    fig = balance.distribution_figure({"none": {"a": 8, "b": 2}, "oversample": {"a": 8, "b": 8}},
                                      minority=["b"])
    assert len(fig.axes) == 2 and "n=16" in fig.axes[1].get_title()


def test_subsample_keeps_class_shares():
    ds = _ds(labels=("a",) * 80 + ("b",) * 20)
    small = balance.subsample(ds, 50, "label", seed=0)
    assert len(small) == 50 and small["label"].count("b") == 10
    assert balance.subsample(ds, 0) is ds
