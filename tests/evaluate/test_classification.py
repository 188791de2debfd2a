"""ftkit.evaluate.classification: metrics pinned on small hand-made inputs, figures, bad input."""
import numpy as np
import pytest

from ftkit.evaluate import classification as cm

Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 0])


def _proba(pred, k=3, p=0.8):
    out = np.full((len(pred), k), (1 - p) / (k - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def test_metrics_pinned_by_hand():
    m = cm.classification_metrics(Y_TRUE, _proba(Y_PRED), minority=[2])
    # per-class F1: 0.75 (3/4 and 3/4), 0.8 (P 2/3, R 1), 2/3 (P 1, R 1/2)
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["macro_f1"] == pytest.approx((0.75 + 0.8 + 2 / 3) / 3)
    assert m["minority_f1"] == pytest.approx(2 / 3) and m["minority_recall"] == pytest.approx(0.5)
    # κ = (p_o - p_e) / (1 - p_e), p_e = (4·4 + 2·3 + 2·1) / 64 = 0.375
    assert m["kappa"] == pytest.approx((0.75 - 0.375) / 0.625)
    assert set(m) == set(cm.METRICS)


def test_pr_auc_pinned_by_hand():
    scores = np.array([0.1, 0.4, 0.35, 0.8])
    proba = np.stack([1 - scores, scores], axis=1)
    # class 1 ranked pos, neg, pos, neg: AP = ½·1 + ½·⅔; class 0 likewise
    assert cm.pr_auc(np.array([0, 0, 1, 1]), proba) == pytest.approx(5 / 6)


def test_perfect_predictions_score_one():
    m = cm.classification_metrics(Y_TRUE, _proba(Y_TRUE), minority=[1, 2])
    assert all(v == pytest.approx(1.0) for v in m.values())


def test_accuracy_can_hide_a_missed_minority_class():
    y = np.array([0] * 95 + [1] * 5)
    m = cm.classification_metrics(y, _proba(np.zeros(100, dtype=int), k=2), minority=[1])
    assert m["accuracy"] == pytest.approx(0.95)
    assert m["minority_recall"] == 0 and m["minority_f1"] == 0 and m["kappa"] == 0


def test_confusion_matrix_rows_are_true_classes():
    matrix = cm.confusion(Y_TRUE, _proba(Y_PRED))
    assert matrix.tolist() == [[3, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_bad_inputs():
    with pytest.raises(ValueError, match="need probabilities"):
        cm.classification_metrics(Y_TRUE, np.ones(8), minority=[0])
    with pytest.raises(ValueError, match="need probabilities"):
        cm.pr_auc(np.array([], dtype=int), np.ones((0, 2)))
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.1"):
        cm.confusion(np.array([0, 2]), np.ones((2, 2)) / 2)


def test_figures():
    import pandas as pd

    table = pd.DataFrame({"macro_f1": [0.6, 0.8], "minority_f1": [0.2, 0.7],
                          "pr_auc": [0.9, 0.92]}, index=["baseline", "focal"])
    fig = cm.comparison_figure(table)
    assert len(fig.axes[0].patches) == 6
    fig = cm.confusion_figure({"a": np.eye(3, dtype=int), "b": np.eye(3, dtype=int)}, list("xyz"))
    assert len(fig.axes) == 2


def test_moving_the_threshold_is_chosen_on_validation_and_raises_minority_recall():
    from ftkit.evaluate import classification as cl

    rng = np.random.default_rng(0)
    y = np.array([0] * 90 + [1] * 10)
    # a model that is right but timid about the rare class: its probability rarely wins
    p1 = np.where(y == 1, rng.uniform(0.2, 0.45, 100), rng.uniform(0.0, 0.15, 100))
    proba = np.stack([1 - p1, p1], 1)
    assert cl.classification_metrics(y, proba, [1])["minority_recall"] < 0.2
    weight, curve = cl.choose_weight(y, proba, [1])
    assert weight > 1 and list(curve.columns) == ["weight", "precision", "recall", "minority_f1"]
    moved = cl.reweight(proba, [1], weight)
    assert np.allclose(moved.sum(1), 1) and moved.argmax(1).tolist() == y.tolist()
    assert curve.minority_f1.max() == 1.0 and curve.minority_f1.iloc[0] < 0.5
    # weight 1 leaves the decisions as trained; recall never falls as the weight grows
    assert np.array_equal(cl.reweight(proba, [1], 1.0).argmax(1), proba.argmax(1))
    assert curve.recall.is_monotonic_increasing
