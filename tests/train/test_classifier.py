"""ftkit.train: losses, samplers, embedding heads, bagging, recipes and LoRA classification."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ftkit.models import load
from ftkit.train import classifier, imbalance, lora_classifier
from ftkit.train import params as train_params
from ftkit.train.losses import LOSSES, focal_loss, make_loss
from ftkit.train.sampling import balanced_sampler, make_sampler

LOGITS = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.3, 0.2], [-0.5, 3.0, 0.0], [0.0, 0.0, 1.5]])
TARGET = torch.tensor([0, 2, 1, 0])


def _blobs(n_per_class=(60, 60, 8), seed=0, dim=8):
    """Gaussian blobs, one per class, the last class rare."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=3.0, size=(len(n_per_class), dim))
    X = np.concatenate([c + rng.normal(size=(n, dim)) for c, n in zip(centres, n_per_class)])
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    return X.astype(np.float32), y


def test_focal_with_gamma_zero_is_cross_entropy():
    assert torch.allclose(focal_loss(LOGITS, TARGET, gamma=0.0), F.cross_entropy(LOGITS, TARGET))
    w = torch.tensor([0.5, 1.0, 3.0])
    assert torch.allclose(focal_loss(LOGITS, TARGET, 0.0, weight=w),
                          F.cross_entropy(LOGITS, TARGET, weight=w))


def test_focal_down_weights_easy_examples():
    easy, hard = torch.tensor([[4.0, 0.0]]), torch.tensor([[0.2, 0.0]])
    t = torch.tensor([0])
    ratio = lambda x: float(focal_loss(x, t, 2.0) / F.cross_entropy(x, t))  # noqa: E731
    p_easy = float(easy.softmax(-1)[0, 0])
    assert ratio(easy) == pytest.approx((1 - p_easy) ** 2, rel=1e-5)
    assert ratio(easy) < 0.001 < 0.2 < ratio(hard)


def test_focal_pinned_value():
    assert float(focal_loss(LOGITS, TARGET, 2.0)) == pytest.approx(0.459917, abs=1e-5)  # numpy reference


def test_loss_dispatch():
    assert set(LOSSES) == {"ce", "weighted", "focal"}
    w = torch.tensor([1.0, 2.0, 4.0])
    assert torch.allclose(make_loss("weighted", w)(LOGITS, TARGET),
                          F.cross_entropy(LOGITS, TARGET, weight=w))
    with pytest.raises(ValueError, match="needs class weights"):
        make_loss("weighted")
    with pytest.raises(ValueError, match="unknown loss 'hinge'"):
        make_loss("hinge")


def test_balanced_sampler_class_frequencies():
    y = np.array([0] * 900 + [1] * 90 + [2] * 10)
    drawn = y[list(balanced_sampler(y, num_samples=30000, seed=0))]
    share = np.bincount(drawn) / len(drawn)
    assert np.allclose(share, 1 / 3, atol=0.02)
    plain = y[list(make_sampler("shuffle", y, seed=0))]
    assert np.bincount(plain).tolist() == [900, 90, 10]  # a permutation
    with pytest.raises(ValueError, match="unknown sampler"):
        make_sampler("stratified-ish", y)


def test_train_head_learns_separable_blobs():
    X, y = _blobs()
    head = classifier.train_head(X, y, 3, epochs=20, lr=1e-2, seed=0)
    proba = classifier.predict_proba(head, X)
    assert proba.shape == (len(y), 3) and np.allclose(proba.sum(1), 1, atol=1e-5)
    assert (proba.argmax(1) == y).mean() > 0.95


def test_bagging_ensemble_averages_members():
    X, y = _blobs()
    idx = classifier.balanced_bootstrap(y, seed=0)
    assert np.bincount(y[idx]).tolist() == [60, 60, 60]  # median class size per class
    ens = classifier.bagging(X, y, 3, n_members=3, seed=0, epochs=10, lr=1e-2)
    x = torch.as_tensor(X[:5])
    mean = torch.stack([h(x).softmax(-1) for h in ens.heads]).mean(0)
    assert len(ens.heads) == 3
    assert np.allclose(classifier.predict_proba(ens, X[:5]), mean.detach().numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="at least one member"):
        classifier.bagging(X, y, 3, n_members=0)


def test_every_recipe_trains_and_compare_heads_reports_metrics():
    X, y = _blobs(seed=1)
    table, probas = imbalance.compare_heads(list(imbalance.RECIPES), X, y, X, y, minority=[2],
                                            seeds=[0, 1], epochs=3, lr=5e-2,
                                            ensemble_size=2)
    assert list(table.index) == list(imbalance.RECIPES)
    assert {"macro_f1", "minority_f1", "pr_auc", "kappa", "macro_f1_std"} <= set(table.columns)
    assert ((table["accuracy"] > 0.5) & (table["accuracy"] <= 1)).all()
    assert probas["smote"].shape == (len(y), 3)
    counts = imbalance.resampled_counts(["baseline", "undersample", "ensemble"], X, y,
                                        ["a", "b", "c"])
    assert counts["undersample"] == {"a": 8, "b": 8, "c": 8}
    assert counts["ensemble"] == {"a": 60, "b": 60, "c": 60}


def test_balance_config_rejects_unknown_methods():
    from ftkit.core.config import ConfigError

    assert train_params.BalanceConfig(llm_methods=[]).llm_methods == []  # [] skips the LLM runs
    with pytest.raises(ConfigError, match=r"llm_methods.*'smote'.*choose one of"):
        train_params.BalanceConfig(llm_methods=["smote"])
    with pytest.raises(ConfigError, match="must include 'baseline'"):
        train_params.BalanceConfig(head_methods=["focal", "smote"])
    with pytest.raises(ConfigError, match="head_methods.*must not be empty"):
        train_params.BalanceConfig(head_methods=[])


def test_cached_embeddings_reads_back(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr("ftkit.train.imbalance.encode",
                        lambda m, t, texts, batch_size: calls.append(1) or torch.ones(len(texts), 4))
    first = imbalance.cached_embeddings(["a", "b"], "tiny-bert", tmp_path)
    again = imbalance.cached_embeddings(["a", "b"], "tiny-bert", tmp_path)
    assert first.shape == (2, 4) and np.array_equal(first, again) and len(calls) == 1


@pytest.mark.parametrize("name,pooling", [("tiny-llama", "last"), ("tiny-bert", "mean")])
def test_lora_classifier_end_to_end(name, pooling):
    model, tokenizer = load(name)
    texts = ["the cat sat on the mat", "a dog ran", "the model learns", "fine tuning works"] * 4
    y = np.array([0, 1, 0, 1] * 4)
    clf = lora_classifier.lora_classifier(model, 2, lora_r=4, seed=0)
    assert clf.pooling == pooling
    trainable = {n for n, p in clf.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    losses = lora_classifier.finetune(clf, tokenizer, texts, y, steps=15, batch_size=8, lr=1e-2,
                                      loss="focal", sampler="balanced", bf16=False)
    assert len(losses) == 15 and np.isfinite(losses).all()
    assert np.mean(losses[-3:]) < np.mean(losses[:3])
    proba = lora_classifier.predict_proba(clf, tokenizer, texts, batch_size=5, bf16=False)
    assert proba.shape == (16, 2) and np.allclose(proba.sum(1), 1, atol=1e-5)


def test_train_llm_recipe_with_class_weights():
    texts = ["alpha beta", "gamma", "delta epsilon zeta", "eta"] * 3
    y = np.array([0, 0, 0, 1] * 3)
    clf, tokenizer, losses = imbalance.train_llm("class_weight", "tiny-llama", texts, y, 2,
                                                 steps=2, batch_size=4, bf16=False,
                                                 adapter={"lora_r": 2})
    assert len(losses) == 2 and clf.head.out_features == 2
    with pytest.raises(ValueError, match="not available for LLM"):
        imbalance.train_llm("smote", "tiny-llama", texts, y, 2)


def test_llm_threshold_moves_the_minority_weight_chosen_on_validation(monkeypatch):
    texts = [f"word{i} other{i % 3}" for i in range(20)]
    y = np.array([0] * 15 + [1] * 5)
    chosen = []
    real = imbalance.choose_weight
    monkeypatch.setattr(imbalance, "choose_weight",
                        lambda yv, p, m: chosen.append(len(yv)) or real(yv, p, m))
    table, probas = imbalance.compare_llm_methods(
        ["baseline", "threshold"], "tiny-llama", texts, y, texts[:6], y[:6], 2, [1],
        adapter={"lora_r": 2}, max_length=16, bf16=False, steps=2, batch_size=4,
        val_fraction=0.25)
    assert chosen == [5], "the weight is chosen on a quarter of the training rows, once"
    assert list(table.index) == ["baseline", "threshold"]
    assert probas["threshold"].shape == (6, 2) and np.allclose(probas["threshold"].sum(1), 1)
