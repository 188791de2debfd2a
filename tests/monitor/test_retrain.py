"""Retraining an adapter version, the promotion rule and the version registry."""
import json

import pandas as pd
import pytest

from ftkit import models
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.monitor import retrain
from ftkit.train import adapters


def test_labelled_window_keeps_answered_rows_of_its_days():
    frame = pd.DataFrame({"day": [1, 2, 2, 3, 4], "prompt": list("abcde"),
                          "answer": ["x", "y", "", "z", "w"]})
    assert retrain.labelled_window(frame, 2, 3).prompt.tolist() == ["b", "d"]
    with pytest.raises(ConfigError, match="ends \\(day 1\\) before it starts"):
        retrain.labelled_window(frame, 2, 1)


def scores(v1_new, v2_new, v1_old, v2_old):
    rows = [("v1", "new", v1_new, 0.1, 0.5), ("v2", "new", v2_new, 0.9, 0.9),
            ("v1", "old", v1_old, 0.3, v1_old), ("v2", "old", v2_old, 0.3, v2_old)]
    columns = ["version", "slice", "answer_accuracy", "answer_recall", "topic_accuracy"]
    return pd.DataFrame(rows, columns=columns).set_index(["version", "slice"])


def test_decide_promotes_only_a_winner_that_does_not_forget():
    ok, why = retrain.decide(scores(0.0, 0.9, 0.6, 0.6), "v1", "v2", "new", "old", 0.5, 0.02)
    assert ok and why.startswith("promote v2")
    ok, why = retrain.decide(scores(0.0, 0.3, 0.6, 0.6), "v1", "v2", "new", "old", 0.5, 0.02)
    assert not ok and "gains +0.30 answer_accuracy" in why
    ok, why = retrain.decide(scores(0.0, 0.9, 0.6, 0.5), "v1", "v2", "new", "old", 0.5, 0.02)
    assert not ok and "loses 0.10 answer_accuracy on old" in why
    ok, why = retrain.decide(scores(0.0, 0.9, 0.6, 0.5), "v1", "v2", "new", "old", 0.5, 0.02,
                             kept=("answer_recall",))
    assert ok, "only the metrics asked for are kept"


def test_versions_promote_rollback_and_survive_a_reload(tmp_path):
    versions = retrain.Versions(tmp_path)
    versions.add(retrain.Version("v1", "/a/v1"))
    versions.promote("v1")
    versions.add(retrain.Version("v2", "/a/v2", parent="v1", data_window=[20, 22], rows=80))
    versions.promote("v2")
    versions.promote("v2")  # again: nothing changes
    again = retrain.Versions(tmp_path)
    assert again.live == "v2" and again.history == ["v1"]
    assert again.versions["v2"].data_window == [20, 22]
    assert again.rollback() == "v1" and retrain.Versions(tmp_path).live == "v1"
    with pytest.raises(ConfigError, match="no earlier version"):
        again.rollback()
    with pytest.raises(ConfigError, match="exists already with adapter /a/v1"):
        again.add(retrain.Version("v1", "/elsewhere"))
    with pytest.raises(ConfigError, match="no version 'v3'"):
        again.promote("v3")
    assert json.loads((tmp_path / "versions.json").read_text())["live"] == "v1"


def test_retrain_continues_an_adapter_and_reads_back_the_same_run(tmp_path):
    model, tokenizer = models.load("tiny-llama")
    adapters.apply_method(model, AdapterConfig(peft_method="lora", lora_r=4)).save_pretrained(
        str(tmp_path / "v1"))
    questions = ["How do I check my gift card balance?", "Where is my parcel?"] * 4
    answers = ["Under Account, then Gift cards.", "It leaves the warehouse tomorrow."] * 4
    cfg = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, warmup_ratio=0.0, eval_steps=2)
    made = retrain.retrain("tiny-llama", tmp_path / "v1", questions, answers, tmp_path / "out",
                           cfg, max_length=64)
    assert made["rows"] == 8 and made["fit_loss_after"] < made["fit_loss_before"]
    assert (tmp_path / "out" / made["key"] / "adapter" / "adapter_model.safetensors").exists()
    assert not (tmp_path / "out" / made["key"] / "run").exists()
    assert retrain.retrain("tiny-llama", tmp_path / "v1", questions, answers, tmp_path / "out",
                           cfg, max_length=64) == made, "the same retrain is read back"
    model2, _ = retrain.load_version("tiny-llama", made["adapter"])
    assert not model2.training
    with pytest.raises(ConfigError, match="2 questions and 1 answers"):
        retrain.retrain("tiny-llama", tmp_path / "v1", questions[:2], answers[:1], tmp_path, cfg)
