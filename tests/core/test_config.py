"""Config validation, error messages and the flat papermill round trip."""
import dataclasses

import pytest

from ftkit.core.config import (
    AdapterConfig,
    Config,
    ConfigError,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ftkit.ui.schemas import config_from_params


@pytest.mark.parametrize("cls, name, value, words", [
    (TrainConfig, "lr", -1e-4, ["TrainConfig.lr", "-0.0001", "> 0"]),
    (TrainConfig, "lr", 0.0, ["TrainConfig.lr", "> 0"]),
    (TrainConfig, "batch_size", 0, ["batch_size", ">= 1"]),
    (TrainConfig, "batch_size", 2.5, ["batch_size", "an int"]),
    (TrainConfig, "lr_scheduler", "cosin", ["lr_scheduler", "'cosine'", "'linear'"]),
    (TrainConfig, "bf16", "yes", ["bf16", "True or False"]),
    (TrainConfig, "lr", float("nan"), ["lr", "finite"]),
    (AdapterConfig, "lora_r", 0, ["AdapterConfig.lora_r", ">= 1"]),
    (AdapterConfig, "lora_alpha", 0, ["lora_alpha", "> 0"]),
    (AdapterConfig, "target_modules", " ", ["target_modules", "all-linear"]),
    (ModelConfig, "dtype", "fp8", ["dtype", "'bfloat16'"]),
    (ModelConfig, "model_name", "", ["model_name", "known_models"]),
    (RunConfig, "profile", "laptop", ["profile", "'smoke'", "'workshop'", "'gpu'"]),
    (RunConfig, "seed", -1, ["seed", ">= 0"]),
])
def test_bad_value_names_field_value_and_rule(cls, name, value, words):
    with pytest.raises(ConfigError) as err:
        cls(**{name: value})
    for word in words:
        assert word in str(err.value)


def test_values_are_coerced_where_unambiguous():
    assert TrainConfig(lr="1e-4").lr == pytest.approx(1e-4)  # YAML reads 1e-4 as a string
    assert TrainConfig(batch_size=4.0).batch_size == 4
    assert isinstance(TrainConfig(lr=1).lr, float)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TrainConfig().lr = 0.1
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().run = RunConfig()


def test_round_trip_through_flat_params():
    sections = {"run": RunConfig, "model": ModelConfig, "train": TrainConfig,
                "adapter": AdapterConfig}
    cfg = Config.from_params({"lr": 3e-4, "lora_r": 4, "model_name": "tiny-llama", "seed": 7},
                             sections)
    assert list(cfg.sections) == ["run", "model", "train", "adapter"]
    again = Config.from_params(cfg.to_params(), sections)
    assert again == cfg
    assert again.train.lr == 3e-4 and again.adapter.lora_r == 4 and again.run.seed == 7


def test_unknown_names_are_refused_with_the_closest_and_replace_validates():
    sections = {"run": RunConfig, "train": TrainConfig}
    with pytest.raises(ConfigError, match="lrr: unknown parameter; did you mean lr"):
        Config.from_params({"lrr": 1.0}, sections)
    cfg = Config.from_params({"lr": 1e-3}, sections)
    assert cfg.replace(lr=5e-4).train.lr == 5e-4
    with pytest.raises(ConfigError, match="lr"):
        cfg.replace(lr=-5)
    with pytest.raises(ConfigError, match="lora_r: unknown"):
        cfg.replace(lora_r=4)  # not a field of this config's sections


def test_config_from_params_ignores_non_literals_and_sets_output(tmp_path, monkeypatch):
    monkeypatch.delenv("FTKIT_METRICS_FILE", raising=False)
    params = {"profile": "smoke", "output_dir": str(tmp_path / "o"), "n_questions": 3,
              "pd": object(), "_private": 1}
    cfg = config_from_params(params, "03_model_initialisation")
    assert cfg.run.profile == "smoke" and cfg.probes.n_questions == 3
    from ftkit.core import results
    assert results.metrics_path().parent == (tmp_path / "o").resolve()


def test_config_from_params_catches_a_shadowed_parameter():
    import ftkit.compress.quantization as module
    with pytest.raises(ConfigError, match="quantization.*overwritten"):
        config_from_params({"quantization": module}, "03_model_initialisation")
