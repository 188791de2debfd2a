"""The parameter schema of every notebook: one declaration read by the ``parameters`` cell, the
panel, the profiles and ``ftkit run``.

Each entry takes fields from the stage sections (their types, help texts and ranges live where
the stage is written) with this notebook's defaults, which are also its ``parameters`` cell
(``tests/ui/test_schemas.py`` checks that they agree). Names are local to a notebook.

In a notebook: ``params = ft.config_from_params(globals(), "06_lora_vs_dora")``.
"""
from __future__ import annotations

from typing import Any

from ftkit.align.params import (
    DPOSettings,
    FamilySettings,
    GRPOSettings,
    PPOSettings,
    RewardConfig,
)
from ftkit.asr.params import ASRConfig
from ftkit.compress.params import CompressConfig
from ftkit.core import results, versions
from ftkit.core.config import (
    AdapterConfig,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    SetupConfig,
    TrainConfig,
    closest,
)
from ftkit.core.schema import (
    PLAIN,
    NotebookParams,
    cell_parameters,
    notebook_schema,
    resolve,
)
from ftkit.data.params import PreferenceConfig, PrepConfig
from ftkit.evaluate.params import EvalConfig
from ftkit.evaluate.probes import ProbeSettings
from ftkit.memory.params import MemoryConfig
from ftkit.deploy.params import DeployConfig
from ftkit.monitor.params import MonitorConfig
from ftkit.train.params import (BalanceConfig, ExperimentConfig, MergeConfig, MoEConfig,
                                ScaleConfig, SearchConfig, SweepConfig, TrainingSetupConfig)
from ftkit.vqa.params import VQAConfig

TASKS = "../data/instruct_tasks/tasks.jsonl"
# Notebooks 08 and 09 align on the same preference pairs and judge the same held-out prompts.
PREFERENCE = (PreferenceConfig, {"prefs_path": "../data/preferences/preferences.jsonl",
                                 "n_pairs": 0, "n_heldout": 32, "gen_batch_size": 16})


def _run(notebook: str) -> tuple[type, dict[str, Any]]:
    return RunConfig, {"profile": "workshop", "seed": 42, "output_dir": f"outputs/{notebook}"}


def _schema(notebook: str, class_name: str, **groups) -> type:
    return notebook_schema(notebook, class_name, run=_run(notebook), **groups)


SCHEMAS: dict[str, type] = {s.NOTEBOOK: s for s in [
    _schema(
        "00_setup_and_environment", "SetupParams",
        setup=(SetupConfig, {"matmul_size": 1024, "matmul_seconds": 2.0, "check_packs": True})),
    _schema(
        "01_data_preparation", "DataPreparationParams",
        prep=(PrepConfig, {"data_dir": "data/support_records", "dedup_threshold": 0.5,
                           "min_words": 3, "max_words": 250, "stopword_share": 0.15,
                           "n_folds": 5, "augment_copies": 1, "n_synthetic": 16, "n_shots": 4}),
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 512,
                             "max_new_tokens": 32}),
        data=(DataConfig, {"eval_fraction": 0.2})),
    _schema(
        "02_data_balancing", "DataBalancingParams",
        balance=(BalanceConfig, {
            "csv_path": "../data/tickets/tickets.csv", "minority_share": 0.06,
            "encoder_name": "minilm-l6",
            "head_methods": ["baseline", "oversample", "undersample", "smote", "class_weight",
                             "focal", "balanced_batches", "ensemble", "threshold"],
            "head_epochs": 30, "head_lr": 3e-3, "head_seeds": 3, "focal_gamma": 2.0,
            "ensemble_size": 5, "llm_methods": ["baseline", "balanced_batches", "threshold"],
            "llm_steps": 24}),
        data=(DataConfig, {"text_column": "text", "label_column": "label", "max_samples": 0,
                           "eval_fraction": 0.25}),
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 64}),
        train=(TrainConfig, {"lr": 1e-3, "batch_size": 16}),
        adapter=(AdapterConfig, {"lora_r": 8, "lora_alpha": 16.0})),
    _schema(
        "03_model_initialisation", "ModelInitialisationParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "dtype": "float32",
                             "quantization": "int8-weight", "max_new_tokens": 40}),
        probes=(ProbeSettings, {"n_questions": 8})),
    _schema(
        "04_training_setup_and_hpo", "TrainingSetupParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 128}),
        setup=(TrainingSetupConfig, {
            "top_layers": 2, "n_train_rows": 24, "n_eval_rows": 12, "steps": 12,
            "batch_size": 4, "optimisers": ["gd", "sgd", "minibatch_sgd", "adagrad", "rmsprop",
                                            "adadelta", "adam", "adamw"],
            "optimiser_lrs": {"gd": [0.1, 0.3], "sgd": [0.03, 0.1], "minibatch_sgd": [0.1, 0.3],
                              "adagrad": [0.01, 0.03], "rmsprop": [3e-4, 1e-3, 3e-3],
                              "adadelta": [1.0, 10.0], "adam": [1e-3, 3e-3, 1e-2],
                              "adamw": [1e-3, 3e-3, 1e-2]},
            "sweep_steps": 4, "schedules": ["constant", "linear", "cosine"],
            "warmups": [0.0, 0.25], "clip_optimiser": "minibatch_sgd", "clip_lr": 1.0,
            "clip_norm": 0.3, "accum_steps": 4, "precision_steps": 1}),
        search=(SearchConfig, {
            "samplers": ["grid", "random", "tpe"], "search_seeds": 3, "n_trials": 8,
            "trial_steps": 6, "eval_every": 3, "pruner": "median",
            "search_space": {"lr": [1e-4, 1e-2], "lora_r": [2, 16], "lora_alpha": [4.0, 64.0],
                             "lora_dropout": [0.0, 0.3], "warmup_ratio": [0.0, 0.3]},
            "storage_url": "", "n_workers": 1, "final_steps": 24})),
    _schema(
        "05_full_vs_peft", "FullVsPeftParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 160,
                             "max_new_tokens": 40}),
        experiment=(ExperimentConfig, {
            "tasks_path": TASKS, "tasks": ["extract"], "n_train": 160, "n_test": 48,
            "methods": ["full", "half", "lora", "ia3"],
            "method_lrs": {"full": 2e-4, "half": 2e-4, "lora": 1e-3, "dora": 1e-3, "ia3": 5e-3},
            "eval_batch_size": 16}),
        train=(TrainConfig, {"max_steps": 20, "batch_size": 8, "eval_steps": 10,
                             "warmup_ratio": 0.1}),
        adapter=(AdapterConfig, {"lora_r": 4, "lora_alpha": 16.0, "half_round_steps": 0})),
    _schema(
        "06_lora_vs_dora", "LoraVsDoraParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 160,
                             "max_new_tokens": 32}),
        experiment=(ExperimentConfig, {
            "tasks_path": TASKS, "tasks": ["extract", "date"], "methods": ["lora", "dora"],
            "n_train": 40, "n_test": 24,
            "method_lrs": {"full": 2e-4, "lora": 1e-3, "dora": 1e-3}, "eval_batch_size": 16}),
        sweep=(SweepConfig, {"ranks": [2, 8], "analysis_rank": 8, "seeds": 3,
                             "latency_rounds": 30}),
        train=(TrainConfig, {"max_steps": 10, "batch_size": 8, "eval_steps": 10,
                             "warmup_ratio": 0.1}),
        adapter=(AdapterConfig, {"lora_alpha": 16.0})),
    _schema(
        "07_adapter_merging", "AdapterMergingParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 160,
                             "max_new_tokens": 32}),
        experiment=(ExperimentConfig, {
            "tasks_path": TASKS, "tasks": ["extract", "date"], "n_train": 96, "n_test": 24,
            "methods": ["lora"], "method_lrs": {"lora": 1e-3}, "eval_batch_size": 16}),
        merge=(MergeConfig, {"combinations": ["cat", "linear", "svd", "ties", "dare_ties"],
                             "weight_sets": [[1.0, 1.0], [0.5, 0.5]], "density": 0.5}),
        train=(TrainConfig, {"max_steps": 16, "batch_size": 8, "eval_steps": 16,
                             "warmup_ratio": 0.1}),
        adapter=(AdapterConfig, {"lora_r": 8, "lora_alpha": 16.0})),
    _schema(
        "08_dpo_alignment", "DPOAlignmentParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 96,
                             "max_new_tokens": 16}),
        preference=PREFERENCE,
        dpo=(DPOSettings, {"betas": [0.05, 0.1, 1.0], "beta": 0.1, "nll_weight": 1.0}),
        family=(FamilySettings, {"methods": ["ipo", "simpo", "orpo", "kto"], "simpo_beta": 2.0,
                                 "simpo_gamma": 0.5, "orpo_lambda": 0.1}),
        train=(TrainConfig, {"lr": 5e-4, "max_steps": 16, "batch_size": 4, "warmup_ratio": 0.0,
                             "lr_scheduler": "constant"}),
        adapter=(AdapterConfig, {"lora_r": 8, "lora_alpha": 16.0})),
    _schema(
        "09_rlhf_reward_and_ppo", "RewardAndPPOParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 96,
                             "max_new_tokens": 12}),
        preference=PREFERENCE,
        reward=(RewardConfig, {"reward_model": "minilm-l6", "rm_epochs": 2, "rm_lr": 1e-4,
                               "rm_batch_size": 16, "rm_max_length": 64}),
        ppo=(PPOSettings, {"ppo_iterations": 10, "ppo_prompts": 4, "ppo_samples": 4,
                           "ppo_epochs": 2, "ppo_lr": 3e-4, "kl_coef": 0.2}),
        dpo=(DPOSettings, {"beta": 0.1}),
        train=(TrainConfig, {"lr": 5e-4, "max_steps": 12, "batch_size": 4, "warmup_ratio": 0.0,
                             "lr_scheduler": "constant"}),
        adapter=(AdapterConfig, {"lora_r": 8})),
    _schema(
        "10_moe_and_moa", "MoEAndMoAParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 256,
                             "max_new_tokens": 32}),
        experiment=(ExperimentConfig, {"tasks_path": TASKS, "tasks": ["extract", "date", "route"],
                                       "n_train": 32, "n_test": 12, "eval_batch_size": 24}),
        moe=(MoEConfig, {"n_experts": 4, "top_k": 2, "aux_coef": 0.02, "router_std": 0.02,
                         "moe_steps": 16, "moe_lr": 5e-4, "moa_layers": 2, "n_boot": 2000}),
        train=(TrainConfig, {"batch_size": 4, "warmup_ratio": 0.0, "lr_scheduler": "constant"})),
    _schema(
        "11_memory_tuning_and_rag", "MemoryTuningParams",
        model=(ModelConfig, {"model_name": "smollm2-135m"}),
        memory=(MemoryConfig, {
            "facts_dir": "../data/shop_facts", "n_facts": 32, "n_updated": 10,
            "methods": ["base", "lora", "memory", "rag"], "lora_epochs": 2.0, "lora_lr": 1e-3,
            "n_experts": 4, "expert_r": 16, "expert_layers": 8, "memory_lr": 2e-3,
            "target_loss": 0.05, "max_epochs": 20, "route_threshold": 0.6, "top_k": 3,
            "index_kind": "flat",
            "encoder": "minilm-l6", "confident": 0.5, "max_new_tokens": 24,
            "gen_batch_size": 16}),
        adapter=(AdapterConfig, {"lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0})),
    _schema(
        "12_pruning_and_quantisation", "CompressionParams",
        compress=(CompressConfig, {
            "calibration_rows": 32, "eval_rows": 12, "n_questions": 4, "max_new_tokens": 24,
            "sparsities": [0.1, 0.3, 0.7], "head_groups": 1, "timing_rounds": 5,
            "recover_sparsity": 0.3,
            "recover_steps": 20, "recover_lr": 1e-3, "train_rows": 0,
            "quant_methods": ["fp32", "bf16", "int8", "int4"], "qlora_methods": ["fp32", "int8"],
            "qlora_steps": 6, "gguf_types": ["Q8_0", "Q4_0"]})),
    _schema(
        "13_evaluation_and_safety", "EvaluationParams",
        evaluation=(EvalConfig, {
            "ppl_rows": 48, "n_boot": 1000, "curve_steps": 18, "few_steps": 4, "small_rows": 8,
            "curve_lr": 1e-3, "curve_batch": 4, "eval_every": 3, "curve_eval_rows": 12,
            "patience": 2, "noise_examples": 24, "noise_batches": [1, 2, 4, 8, 16],
            "tasks": ["shop_knowledge", "shop_intent", "general_knowledge", "shop_answer"],
            "task_limit": 20, "harness_batch": 8, "chat_template": False, "ece_bins": 10,
            "coverage": 0.5, "guard_max_fpr": 0.05, "refusal_prompts": 36,
            "safety_examples": 60, "safety_repeats": 8, "reply_tokens": 24})),
    _schema(
        "14_deployment", "DeploymentParams",
        deploy=(DeployConfig, {
            "n_questions": 4, "system_prompt": DeployConfig().system_prompt, "max_tokens": 48,
            "load_tokens": 16, "latency_requests": 50, "concurrency_levels": [1, 2, 4, 8],
            "requests_per_level": 16, "engine": "transformers", "served_weights": "int8",
            "continuous_batching": True,
            "request_timeout": 120.0, "max_seconds": 240.0})),
    _schema(
        "15_monitoring", "MonitoringParams",
        monitor=(MonitorConfig, {
            "days": 30, "per_day": 40, "reference_days": 3, "shift_start": 12,
            "new_intent_day": 20, "new_intent_share": 0.3, "burst_day": 25, "burst_share": 0.4,
            "window": 3, "n_permutations": 200, "alert_k": 3.0, "detector": "drift_recent",
            "replies_per_day": 2, "replay_tokens": 16, "max_tokens": 48, "use_server": True,
            "continuous_batching": False, "concurrency": 4, "request_timeout": 120.0,
            "label_delay": 2, "retrain_days": 3, "new_topic_repeats": 2, "replay_rows": 40,
            "retrain_steps": 120, "retrain_lr": 2e-3, "retrain_batch": 4, "eval_new": 15,
            "eval_old": 30,
            "fact_threshold": 0.5, "min_gain": 0.5, "max_drop": 0.02})),
    _schema(
        "16_whisper_asr", "WhisperASRParams",
        model=(ModelConfig, {"model_name": "whisper-tiny.en", "max_new_tokens": 48}),
        asr=(ASRConfig, {
            "manifest_path": "../data/asr_jargon/manifest.jsonl", "n_train_domain": 48,
            "n_train_everyday": 24, "renderings": 2, "n_val": 12, "n_test_domain": 60,
            "n_test_everyday": 40, "augment_share": 0.5, "snr_choices": [5.0, 10.0, 20.0],
            "speed_delta": 0.1, "pitch_semitones": 2.0, "asr_methods": ["full", "lora"],
            "lora_lr": 1e-3, "patience": 2}),
        train=(TrainConfig, {"lr": 1e-4, "num_epochs": 3.0, "max_steps": 0, "batch_size": 16,
                             "eval_steps": 9, "warmup_ratio": 0.1}),
        adapter=(AdapterConfig, {"lora_r": 16, "lora_alpha": 32.0})),
    _schema(
        "17_multimodal_vqa", "MultimodalVQAParams",
        model=(ModelConfig, {"model_name": "smollm2-135m"}),
        vqa=(VQAConfig, {
            "vlm_name": "offline", "text_encoder": "minilm-l6",
            "vqa_data": "../data/vqa_shapes/manifest.json", "n_scenes": 1200,
            "n_eval_scenes": 40, "image_size": 32, "patch_size": 8, "vision_hidden": 128,
            "vision_layers": 4, "clip_steps": 200, "clip_batch_size": 128, "clip_lr": 2e-3,
            "caption_steps": 10, "caption_lora_steps": 10, "vqa_steps": 150, "full_steps": 3,
            "projector_lr": 2e-3, "vqa_batch_size": 40, "grid_images": 8}),
        train=(TrainConfig, {"lr": 2e-3, "batch_size": 16, "warmup_ratio": 0.1}),
        adapter=(AdapterConfig, {"lora_r": 8, "lora_alpha": 16.0})),
    _schema(
        "18_grpo_verifiable_rewards", "GRPOParams",
        model=(ModelConfig, {"model_name": "smollm2-135m"}),
        grpo=(GRPOSettings, {
            "tasks_dir": "../data/extraction_tasks", "n_train": 0, "n_eval": 32,
            "cold_start": 8, "cold_lr": 2e-3, "cold_epochs": 2.0,
            "grpo_steps": 12, "prompts_per_step": 2, "group_size": 4, "grpo_lr": 5e-4,
            "kl_beta": 0.04, "clip_eps": 0.2, "temperature": 1.0, "max_completion": 32,
            "rewards": ["valid_json", "exact_fields", "stops_after_record"], "samples": 4,
            "pass_k": [4], "compare_sft": True, "kl_off_run": True, "hack_steps": 10}),
        adapter=(AdapterConfig, {"lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0})),
    _schema(
        "19_scaling_out", "ScalingOutParams",
        model=(ModelConfig, {"model_name": "smollm2-135m", "max_length": 256}),
        scale=(ScaleConfig, {"global_batch": 8, "scale_steps": 8, "scale_rows": 64,
                             "scale_lr": 1e-3, "processes": 2, "launcher": "torchrun",
                             "allow_oversubscribe": False, "loss_tol": 1e-3,
                             "adapter_tol": 0.05, "devices": 8, "device_gb": 80.0}),
        adapter=(AdapterConfig, {"lora_r": 8})),
]}


def schema_for(notebook: str) -> type:
    """The schema class of ``notebook`` (its stem); an unknown stem names the closest."""
    try:
        return SCHEMAS[notebook]
    except KeyError:
        raise ConfigError(f"no parameter schema for notebook {notebook!r}"
                          f"{closest(notebook, SCHEMAS)}") from None


def config_from_params(namespace: dict[str, Any], notebook: str) -> NotebookParams:
    """The validated parameters of ``notebook`` from its ``parameters`` cell (``globals()``).

    Unknown names stop here, naming the closest valid one; ``profile`` loads that profile's
    values, and values given explicitly win. Points ``ft.record`` at ``output_dir``.
    """
    schema = schema_for(notebook)
    shadowed = sorted(k for k in schema.names() if k in namespace
                      and not isinstance(namespace[k], PLAIN))
    if shadowed:  # e.g. `from ftkit import quantization` replaced the parameter of that name
        raise ConfigError(f"parameter(s) {shadowed} of {notebook} were overwritten by non-literal "
                          f"values ({', '.join(type(namespace[k]).__name__ for k in shadowed)}); "
                          "rename the variable or import that replaced them")
    params = resolve(schema, cell_parameters(namespace), f"notebook {notebook}")
    versions.check()
    results.set_output_dir(params.run.output_dir)
    results.record_params(params.to_params())
    return params


__all__ = ["SCHEMAS", "config_from_params", "schema_for"]
