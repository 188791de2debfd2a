"""ftkit: a notebook-first kit for fine-tuning LLMs, offline on a CPU.

Notebooks use one import, ``import ftkit as ft``, and call the names below; each lives in the
package of its pipeline stage. The packages form layers, each importing only from layers below
it (``tests/test_layers.py`` checks this)::

    core                      config schemas, results, profiles, hardware, versions
    models                    registry, offline packs, quantised loading, generation
    data                      stage 1: load, clean, PII, format, split, balance, synthesise
    evaluate                  stage 5: metrics, perplexity, curves, harness, calibration, safety
    train                     stages 3-4: the trainer factory, its speed layer, PEFT methods
    align | compress | memory preference methods, reward models, PPO | quantisation |
                              memory tuning and retrieval
    asr | vqa                 Whisper speech recognition | visual question answering
    deploy | monitor          stages 6-7: serving | drift, alerts, retraining, versions
    ui                        parameter panels and figures
    batch                     papermill runner, reports, the ``ftkit`` command

Where each notebook's code lives::

    00_setup_and_environment   core.env, batch.packcheck
    01_data_preparation        data.prep, data.clean (the running example: train.assistant)
    02_data_balancing          train.imbalance, data.balance
    03_model_initialisation    models.registry, compress.quantization
    04_training_setup_and_hpo  train.tuning, train.search
    05_full_vs_peft            train.finetune, train.assistant
    06_lora_vs_dora            train.finetune, train.dora
    07_adapter_merging         train.merging
    08_dpo_alignment           align.family, align.dpo, data.preferences
    09_rlhf_reward_and_ppo     align.reward, align.ppo
    10_moe_and_moa             train.moe, align.moa
    11_memory_tuning_and_rag   memory.tuning, memory.retrieval, memory.facts
    12_pruning_and_quantisation  compress.pruning, compress.quantization, compress.gguf_file
    13_evaluation_and_safety   evaluate.harness, evaluate.curves, evaluate.safety (runs: train.curves)
    14_deployment              deploy.server, deploy.client
    15_monitoring              monitor.signals, monitor.responses, monitor.retrain
    16_whisper_asr             asr.whisper, asr.audio
    17_multimodal_vqa          vqa.train, vqa.model
    18_grpo_verifiable_rewards align.grpo, align.verifiable
    19_scaling_out             train.distributed, train.scaling, batch (runner, shard, merge)

Imports are lazy so that the ``ftkit`` command starts without loading torch.
"""
from __future__ import annotations

import importlib
import logging

__version__ = "0.1.0"

# peft imports torchao when it builds LoRA layers; torchao then logs every optional GPU kernel
# it cannot load and torch warns about torchao's enum registrations. Neither concerns a run.
for _noisy in ("torchao", "torch.utils._pytree"):
    logging.getLogger(_noisy).setLevel(logging.ERROR)

_EXPORTS = {
    # core: typed configs, recorded results, hardware
    "Config": "core.config", "ConfigError": "core.config",
    "config_from_params": "ui.schemas", "RunConfig": "core.config",
    "ModelConfig": "core.config", "DataConfig": "core.config", "TrainConfig": "core.config",
    "AdapterConfig": "core.config",
    "record": "core.results", "record_table": "core.results", "claim": "core.results",
    "save_figure": "core.results", "output_dir": "core.results",
    "seed_everything": "core.env", "device_info": "core.env", "measure_matmul": "core.env",
    "peak_rss_mb": "core.env", "progress": "core.env", "best_device": "core.env",
    # models: the registry and offline packs
    "load": "models.registry", "load_model": "models.registry",
    "load_tokenizer": "models.registry", "known_models": "models.registry",
    # ui: thin layers over the above
    "panel": "ui.panel", "show": "ui.plots", "reading": "ui.plots",
    # train: live loss plot for any transformers Trainer
    "live_plot": "train.callbacks",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'ftkit' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_EXPORTS))
