"""ftkit.train.finetune: parsing the experiment's lists, memory and step timing, train_method and
score_model on the tiny model, and adapters that load back with plain peft."""
import math

import numpy as np
import pytest
import torch

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data import formatting
from ftkit.train import finetune
from ftkit.train import params as train_params

METHODS = ["full", "half", "lora", "dora", "ia3"]
PROMPTS = ["Capital of France?", "Red planet?", "Days in a week?", "Largest ocean?",
           "What do bees make?", "Colour of the sky?", "Author of Hamlet?", "Water freezes at?"]
ANSWERS = ["Paris.", "Mars.", "Seven.", "Pacific.", "Honey.", "Blue.", "Shakespeare.", "0 C."]
ROW_KEYS = {"trainable_params", "trainable_share", "step_seconds", "train_seconds",
            "peak_memory_mb", "train_loss", "eval_loss"}


# --- parameters -------------------------------------------------------------------------


@pytest.mark.parametrize("changes, message", [
    ({"methods": "full,lora"}, r"must be a list.*not comma-separated"),
    ({"methods": ["full", "qlora"]}, r"ExperimentConfig\.methods = .*item 1.*'qlora'.*choose one of"),
    ({"methods": []}, r"must not be empty"),
    ({"method_lrs": {"full": 0.0}}, r"method_lrs.*key 'full'.*> 0"),
    ({"method_lrs": "lora:1e-3"}, r"method_lrs.*must be a mapping"),
    ({"methods": ["lora", "dora"], "method_lrs": {"lora": 1e-3}},
     r"no learning rate for \['dora'\]"),
])
def test_experiment_lists_are_checked_item_by_item(changes, message):
    with pytest.raises(ConfigError, match=message):
        train_params.ExperimentConfig(**changes)


def test_sweep_ranks_are_distinct_and_hold_the_analysis_rank():
    assert train_params.SweepConfig(ranks=[2, 4], analysis_rank=4).ranks == [2, 4]
    with pytest.raises(ConfigError, match="each rank once"):
        train_params.SweepConfig(ranks=[2, 2], analysis_rank=2)
    with pytest.raises(ConfigError, match=r"item 0.*>= 1"):
        train_params.SweepConfig(ranks=[0, 2], analysis_rank=2)
    with pytest.raises(ConfigError, match="one of the swept ranks"):
        train_params.SweepConfig(ranks=[2, 4], analysis_rank=8)


def test_experiment_config_checks_methods_and_their_rates():
    assert train_params.ExperimentConfig().methods == ["full", "half", "lora", "ia3"]
    with pytest.raises(ConfigError, match="qlora"):
        train_params.ExperimentConfig(methods=["lora", "qlora"])
    with pytest.raises(ConfigError, match=r"no learning rate for \['dora'\]"):
        train_params.ExperimentConfig(methods=["lora", "dora"], method_lrs={"lora": 1e-3})
    assert train_params.METHOD_NAMES == METHODS


# --- memory and timing --------------------------------------------------------------------


def test_memory_tracker_sees_an_allocation_inside_the_block():
    assert env.current_rss_mb() > 0
    with env.MemoryTracker() as mem:
        block = np.ones(50 * 2**20 // 8)  # 50 MB of float64, every page written
        assert block.sum() > 0
    assert mem.delta_mb >= 40
    assert mem.peak_mb >= mem.start_mb + mem.delta_mb - 1e-9
    del block


def test_step_timer_median_leaves_out_the_first_step():
    timer = finetune.StepTimer()
    assert math.isnan(timer.median)
    for _ in range(3):
        timer.on_step_begin(None, None, None)
        timer.on_step_end(None, None, None)
    assert len(timer.seconds) == 3 and all(s >= 0 for s in timer.seconds)
    timer.seconds = [10.0, 1.0, 3.0, 2.0]
    assert timer.median == 2.0
    timer.seconds = [4.0]
    assert timer.median == 4.0


# --- train_method and score_model on tiny-llama ------------------------------------------


def _datasets():
    _, tok = models.load("tiny-llama")
    ds = formatting.pairs_dataset(tok, PROMPTS, ANSWERS, max_length=32)
    return ds, ds.select(range(2))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Each method trained once for 3 steps (evaluated at step 3): method -> (model, row)."""
    train_ds, eval_ds = _datasets()
    train = TrainConfig(max_steps=3, batch_size=2, eval_steps=3, lr=1e-2, warmup_ratio=0.0,
                        lr_scheduler="constant", bf16=False)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTKIT_HEADLESS", "1")
        for method in ("full", "half", "lora", "dora"):
            adapter = AdapterConfig(peft_method=method, lora_r=4, lora_dropout=0.0)
            out[method] = finetune.train_method(
                "tiny-llama", adapter, train, train_ds, eval_ds,
                str(tmp_path_factory.mktemp(method)), seed=0)
    return out


@pytest.mark.parametrize("method", ["full", "half", "lora", "dora"])
def test_train_method_returns_the_model_and_a_finite_cost_row(trained, method):
    model, row = trained[method]
    assert set(row) == ROW_KEYS
    assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in row.values()), row
    assert row["trainable_params"] > 0 and 0 < row["trainable_share"] <= 1
    assert row["step_seconds"] > 0 and row["train_seconds"] > 0
    assert row["peak_memory_mb"] >= 0 and row["train_loss"] > 0 and row["eval_loss"] > 0
    assert not model.training and model.config.use_cache


def test_train_method_shares_order_the_methods(trained):
    share = {m: row["trainable_share"] for m, (_, row) in trained.items()}
    assert share["full"] == 1.0
    assert 0 < share["half"] < share["full"]
    # half trains half of the block weights (embeddings and final norm stay frozen)
    model = trained["half"][0]
    total = sum(p.numel() for p in model.parameters())
    block = sum(p.numel() for n, p in model.named_parameters() if ".layers." in n)
    assert 0.3 * block / total < share["half"] < 0.7 * block / total
    assert share["lora"] < 0.5 and share["dora"] > share["lora"]


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


@pytest.mark.parametrize("method", ["lora", "dora"])
def test_saved_adapter_loads_with_plain_peft(trained, method, tmp_path):
    from peft import PeftModel

    model, _ = trained[method]
    model.save_pretrained(tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter_config.json").is_file()
    loaded = PeftModel.from_pretrained(models.load("tiny-llama")[0], tmp_path).eval()
    ids = torch.tensor([[2, 17, 45, 300, 9, 128, 77, 5]])
    trained_logits, base_logits = _logits(model, ids), _logits(models.load("tiny-llama")[0], ids)
    assert not torch.allclose(trained_logits, base_logits, atol=1e-5)  # training did something
    assert torch.allclose(_logits(loaded, ids), trained_logits, atol=1e-5)


def test_score_model_reports_tasks_perplexity_and_facts():
    model, tok = models.load("tiny-llama")
    rows = [{"task": "date", "instruction": "[date] Convert the date below to ISO format.\n"
                                            "Invoice issued 3.4.2021.",
             "response": "2021-04-03", "split": "test"},
            {"task": "route", "instruction": "[route] Name the Lumen Works team for this "
                                             "request.\nQuick question regarding error 404.",
             "response": "Osprey", "split": "test"}]
    table, row = finetune.score_model(model, tok, rows, max_new_tokens=3, batch_size=4)
    assert len(table) == 2 and list(table.task) == ["date", "route"]
    assert set(row) == {"task_score", "score_date", "score_route", "general_perplexity",
                        "fact_accuracy"}
    assert 0 <= row["score_date"] <= 1 and 0 <= row["score_route"] <= 1
    assert row["task_score"] == pytest.approx((row["score_date"] + row["score_route"]) / 2)
    assert math.isfinite(row["general_perplexity"]) and row["general_perplexity"] > 1
    assert 0 <= row["fact_accuracy"] <= 1
    _, short = finetune.score_model(model, tok, rows, max_new_tokens=3, general=False)
    assert set(short) == {"task_score", "score_date", "score_route"}


# --- the notebooks' experiments as functions -----------------------------------------------

SCORE_ROWS = [{"task": "date", "instruction": "[date] Convert the date below to ISO format.\n"
                                              "Invoice issued 3.4.2021.",
               "response": "2021-04-03", "split": "test"}]
TINY = TrainConfig(max_steps=1, batch_size=2, eval_steps=1, lr=1e-2, bf16=False)


def test_compare_methods_trains_and_scores_each_and_keeps_what_is_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    train_ds, eval_ds = _datasets()
    _, tok = models.load("tiny-llama")
    out = finetune.compare_methods("tiny-llama", AdapterConfig(lora_r=2), TINY, ["lora", "ia3"],
                                   {"lora": 1e-2, "ia3": 1e-2}, train_ds, eval_ds, tok,
                                   SCORE_ROWS, 3, 4, str(tmp_path), keep=("lora",))
    assert list(out.rows) == ["lora", "ia3"] and set(out.kept) == {"lora"}
    assert all(ROW_KEYS | {"task_score", "general_perplexity"} <= set(r) for r in out.rows.values())
    assert all(len(a) == len(SCORE_ROWS) for a in out.answers.values())


def test_rank_sweep_rows_and_merged_latency(tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    train_ds, eval_ds = _datasets()
    base, tok = models.load("tiny-llama")
    batch = tok(PROMPTS[:2], return_tensors="pt", padding=True)
    table, merged = finetune.rank_sweep("tiny-llama", AdapterConfig(lora_dropout=0.0), TINY,
                                        {"lora": 1e-2, "dora": 1e-2}, [4, 2], train_ds, eval_ds,
                                        tok, SCORE_ROWS, 3, 4, base, batch, str(tmp_path),
                                        keep_rank=2)
    assert list(table.index) == [("lora", 2), ("dora", 2), ("lora", 4), ("dora", 4)]
    assert table.merge_keeps_outputs.all() and (table.merged_over_base > 0).all()
    assert (table.loc["dora", "trainable_params"] > table.loc["lora", "trainable_params"]).all()
    assert set(merged) == {"lora", "dora"} and not hasattr(merged["lora"], "peft_config")
