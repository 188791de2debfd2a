"""Optimisers side by side: the Trainer uses the one given, state memory is measured."""
import numpy as np
import pytest

from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data import formatting
from ftkit.models import load_tokenizer
from ftkit.train import optimisers

TRAIN = TrainConfig(lr=1e-2, max_steps=3, batch_size=2, eval_steps=3, bf16=False,
                    warmup_ratio=0.0, lr_scheduler="constant", report_to="none")


@pytest.fixture(scope="module")
def data():
    tok = load_tokenizer("tiny-llama")
    ds = formatting.pairs_dataset(tok, ["Capital of France?", "Two plus two?"] * 3,
                                  ["Paris.", "Four."] * 3, 32)
    return {"model_name": "tiny-llama", "adapter": AdapterConfig(lora_r=2, lora_dropout=0.0),
            "train_ds": ds, "eval_ds": ds, "seed": 0}


@pytest.mark.parametrize("name", list(optimisers.OPTIMISERS))
def test_each_optimiser_trains_and_its_state_is_as_the_arithmetic_says(name, data, tmp_path):
    row = optimisers.train_with(name, 1e-2, train=TRAIN, output_dir=str(tmp_path), **data)
    assert np.isfinite(row["eval_loss"]) and len(row["losses"]) == 3
    assert row["state_bytes_per_weight"] == pytest.approx(row["arithmetic_bytes_per_weight"])
    assert row["batch_size"] == {"gd": 6, "sgd": 1}.get(name, 2)


def test_compare_picks_each_rate_from_its_own_sweep(data, tmp_path):
    run = optimisers.full_model_run(TRAIN, output_dir=str(tmp_path), **data)
    result = optimisers.compare_optimisers(
        ["sgd", "adamw"], {"sgd": [1e-4, 1e-1], "adamw": [1e-4, 1e-2]}, run, run)
    assert list(result.table.index) == ["sgd", "adamw"]
    for name, sweep in result.sweeps.items():
        assert result.table.loc[name, "lr"] == sweep.eval_loss.idxmin()
    assert set(result.curves) == {"sgd", "adamw"}


def test_bad_names_and_missing_rates_are_refused(data, tmp_path):
    with pytest.raises(ConfigError, match="optimiser 'lion'"):
        optimisers.make_optimiser("lion", [], 1e-3)
    with pytest.raises(ConfigError, match="no candidate learning rates for optimiser 'adam'"):
        run = optimisers.full_model_run(TRAIN, output_dir=str(tmp_path), **data)
        optimisers.compare_optimisers(["adam"], {}, run, run)
