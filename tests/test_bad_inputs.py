"""Strict about bad input, before any compute is spent.

One table of bad configs, papermill parameters, data sets and training requests. Each must
raise ONE ConfigError (a ValueError) whose message names the field or row, the bad value and
what is allowed; it must be raised by ftkit's own code (no frame of torch, transformers, peft
or datasets in the traceback); and no training may have started: ``Trainer.train`` and
``AdamW.step`` are replaced by a guard for every case, and the trainer cases also pass a
callback that counts optimiser steps.
"""
from __future__ import annotations

import types
from functools import cached_property
from pathlib import Path

import datasets
import numpy as np
import pandas as pd
import pytest
import torch
import transformers

import ftkit
from ftkit import models
from ftkit.align import family, grpo, moa
from ftkit.compress import gguf_file, pruning, quantization
from ftkit.core import profiles
from ftkit.core.config import (
    AdapterConfig,
    Config,
    ConfigError,
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ftkit.core.schema import resolve
from ftkit.data import balance, formatting, instruct, load, validate
from ftkit.evaluate import harness, perplexity
from ftkit.memory import facts as memfacts
from ftkit.memory import retrieval
from ftkit.memory import tuning as memtuning
from ftkit.models.tiny import tiny_bert
from ftkit.monitor import drift, signals
from ftkit.train import (adapters, classifier, distributed, finetune, lora_classifier, merging,
                         moe, search, sft, tuning)
from ftkit.train import params as train_params
from ftkit.ui.schemas import config_from_params, schema_for

BASE = {"run": RunConfig, "model": ModelConfig, "data": DataConfig, "train": TrainConfig,
        "adapter": AdapterConfig}


def P(params: dict) -> Config:
    return Config.from_params(params, BASE)


FTKIT_DIR = Path(ftkit.__file__).resolve().parent


class TrainingStarted(AssertionError):
    """Raised by the guard: a bad input got as far as training."""


class StepCounter(transformers.TrainerCallback):
    def __init__(self) -> None:
        self.steps = 0

    def on_step_end(self, args, state, control, **kwargs):
        self.steps += 1


class Ctx:
    """What the cases share, built on first use: a tiny Llama (max_position_embeddings 256),
    its tokenizer, small tokenised data sets and a folder of bad files."""

    def __init__(self, folder: Path) -> None:
        self.dir = folder
        self.counter = StepCounter()

    def model(self):
        return models.load_model("tiny-llama")  # fresh: adapters change the model in place

    @cached_property
    def tok(self):
        return models.load_tokenizer("tiny-llama")

    @cached_property
    def pairs(self):  # 4 tokenised prompt/completion rows
        return formatting.pairs_dataset(self.tok, ["Capital of France?"] * 4, ["Paris."] * 4, 32)

    @cached_property
    def long_pairs(self):  # rows longer than the model's 256 positions
        return formatting.pairs_dataset(self.tok, ["a b c d e f " * 60] * 2, ["Paris."] * 2, 1024)

    def trainer(self, train_ds, eval_ds, **train):
        return sft.make_trainer(self.model(), self.tok, train_ds, eval_ds,
                                TrainConfig(**{"batch_size": 2, "max_steps": 2, **train}),
                                str(self.dir / "out"), callbacks=[self.counter])

    def file(self, name: str, data: bytes | str, extra: dict[str, str] | None = None) -> Path:
        for other, text in (extra or {}).items():  # files beside it (a task's data)
            (self.dir / other).write_text(text, encoding="utf-8")
        path = self.dir / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    def facts_dir(self, facts: str) -> Path:
        """A fact base folder whose facts.jsonl holds ``facts`` (questions and updates empty)."""
        folder = self.dir / "facts"
        folder.mkdir(exist_ok=True)
        for name, text in (("facts.jsonl", facts), ("questions.jsonl", ""), ("updates.jsonl", "")):
            (folder / name).write_text(text, encoding="utf-8")
        return folder

    def tasks_file(self):
        return instruct.load_tasks(self.file("tasks.jsonl", "\n".join(
            f'{{"task": "{t}", "instruction": "i", "response": "r", "split": "train"}}'
            for t in ("extract", "route"))))

    def profiles_dir(self, **files: str) -> Path:
        folder = self.dir / "profiles"
        folder.mkdir(exist_ok=True)
        (folder / "mini.yaml").write_text("params: {profile: smoke}\n")
        for name, text in files.items():
            (folder / f"{name}.yaml").write_text(text)
        return folder

    def dora_model(self):
        from peft import LoraConfig, get_peft_model

        cfg = lambda: LoraConfig(r=2, target_modules=["q_proj"], use_dora=True)  # noqa: E731
        peft_model = get_peft_model(self.model(), cfg(), adapter_name="one")
        peft_model.add_adapter("two", cfg())
        return peft_model

    def lora_clf(self):
        return lora_classifier.lora_classifier(self.model(), 3, lora_r=2)


TASK_ROW = '{"task": "extract", "instruction": "i", "response": "r", "split": "train"}'
VALID_ROWS = {"id": ["r0", "r1"], "instruction": ["a", "b"], "response": ["c", "d"]}


def case(id: str, make, match: str):
    return pytest.param(make, match, id=id)


CASES = [
    # ---- TrainConfig / papermill parameters --------------------------------------------
    case("lr-zero", lambda c: TrainConfig(lr=0),
         r"TrainConfig\.lr = 0 is out of range: must be a float > 0\.0"),
    case("lr-negative", lambda c: P({"lr": -1e-4}),
         r"TrainConfig\.lr = -0\.0001 is out of range: must be a float > 0\.0"),
    case("lr-wrong-type-papermill", lambda c: P({"lr": "fast"}),
         r"TrainConfig\.lr = 'fast' must be a float > 0\.0"),
    case("lr-nan", lambda c: P({"lr": float("nan")}),
         r"TrainConfig\.lr = nan must be a finite number"),
    case("max-steps-float-papermill", lambda c: P({"max_steps": 2.5}),
         r"TrainConfig\.max_steps = 2\.5 must be an int >= 0"),
    case("bf16-string-papermill", lambda c: P({"bf16": "yes"}),
         r"TrainConfig\.bf16 = 'yes' must be True or False"),
    case("batch-size-bool-papermill", lambda c: P({"batch_size": True}),
         r"TrainConfig\.batch_size = True must be an int >= 1"),
    case("num-epochs-none-papermill", lambda c: P({"num_epochs": None}),
         r"TrainConfig\.num_epochs = None must be a float > 0\.0"),
    case("warmup-ratio-above-half", lambda c: P({"warmup_ratio": 0.6}),
         r"TrainConfig\.warmup_ratio = 0\.6 is out of range: must be a float >= 0\.0 <= 0\.5"),
    case("lr-scheduler-unknown", lambda c: P({"lr_scheduler": "step"}),
         r"TrainConfig\.lr_scheduler = 'step' is not allowed; choose one of \['linear'"),
    # ---- AdapterConfig ---------------------------------------------------------------
    case("lora-rank-zero", lambda c: AdapterConfig(lora_r=0),
         r"AdapterConfig\.lora_r = 0 is out of range: must be an int >= 1"),
    case("lora-alpha-zero", lambda c: P({"lora_alpha": 0}),
         r"AdapterConfig\.lora_alpha = 0 is out of range: must be a float > 0\.0"),
    case("lora-alpha-negative", lambda c: P({"lora_alpha": -8.0}),
         r"AdapterConfig\.lora_alpha = -8\.0 is out of range: must be a float > 0\.0"),
    case("lora-dropout-one", lambda c: P({"lora_dropout": 1.0}),
         r"AdapterConfig\.lora_dropout = 1\.0 is out of range: must be a float >= 0\.0 <= 0\.9"),
    case("peft-method-unknown", lambda c: P({"peft_method": "qlora"}),
         r"AdapterConfig\.peft_method = 'qlora' is not allowed; choose one of \['full'"),
    case("target-modules-blank", lambda c: AdapterConfig(target_modules="  "),
         r"AdapterConfig\.target_modules = '  ': must name modules .* or 'all-linear'"),
    # ---- Run / model / data configs ----------------------------------------------------
    case("eval-fraction-zero", lambda c: P({"eval_fraction": 0.0}),
         r"DataConfig\.eval_fraction = 0\.0 is out of range: must be a float > 0\.0 <= 0\.9"),
    case("eval-fraction-above-0.9", lambda c: P({"eval_fraction": 0.95}),
         r"DataConfig\.eval_fraction = 0\.95 is out of range: must be a float > 0\.0 <= 0\.9"),
    case("max-length-below-8", lambda c: P({"max_length": 4}),
         r"ModelConfig\.max_length = 4 is out of range: must be an int >= 8"),
    case("model-name-wrong-type", lambda c: P({"model_name": 135}),
         r"ModelConfig\.model_name = 135 must be a string"),
    case("run-profile-unknown", lambda c: P({"profile": "huge"}),
         r"RunConfig\.profile = 'huge' is not allowed; choose one of "
         r"\['smoke', 'workshop', 'gpu'\]"),
    case("seed-negative", lambda c: P({"seed": -1}),
         r"RunConfig\.seed = -1 is out of range: must be an int >= 0"),
    case("unknown-param", lambda c: P({"lr": 1e-3, "learning_rate": 1e-3}),
         r"learning_rate: unknown parameter"),
    case("unknown-param-in-replace", lambda c: P({"lr": 1e-3}).replace(lrr=1e-3),
         r"lrr: unknown parameter; did you mean lr\?"),
    case("misspelt-params-of-a-notebook",
         lambda c: resolve(schema_for("08_dpo_alignment"),
                           {"beta": 0.1, "betaa": 0.2, "lr": 1e-3, "lora_rr": 4}),
         r"betaa: unknown parameter of 08_dpo_alignment; did you mean beta\?; "
         r"lora_rr: unknown parameter of 08_dpo_alignment; did you mean lora_r\?"),
    case("param-shadowed-by-import",
         lambda c: config_from_params({"quantization": types.ModuleType("quantization")},
                                      "03_model_initialisation"),
         r"parameter\(s\) \['quantization'\] of 03_model_initialisation were overwritten by "
         r"non-literal values \(module\)"),
    # ---- Monitoring (notebook 15) --------------------------------------------------------
    case("monitor-too-few-stable-days",
         lambda c: resolve(schema_for("15_monitoring"), {"reference_days": 3, "shift_start": 5}),
         r"MonitorConfig\.shift_start = 5: must leave at least two stable days"),
    case("monitor-window-past-the-month",
         lambda c: resolve(schema_for("15_monitoring"), {"new_intent_day": 28, "retrain_days": 3}),
         r"MonitorConfig\.retrain_days = 3: the training window must end before the last day"),
    case("monitor-prompts-in-another-column",
         lambda c: signals.daily_signals(pd.DataFrame({"day": [1], "text": ["hi"]}), np.ones, [1]),
         r"no prompt column 'prompt'; its columns are \['day', 'text'\]"),
    case("monitor-reference-too-small",
         lambda c: drift.mmd_test(np.ones((3, 2)), np.ones((9, 2))),
         r"the reference window has 3 rows; the test needs at least 5"),
    # ---- Evaluation (notebook 13) --------------------------------------------------------
    case("eval-task-missing-fields",
         lambda c: harness.load_task(c.file("t.yaml", "task: t\ndataset_path: json\n")),
         r"t\.yaml: missing \['output_type', 'doc_to_text', 'doc_to_target'\]"),
    case("eval-task-row-missing-field",
         lambda c: harness.load_task(c.file("rows.yaml", (
             "task: r\ndataset_path: json\noutput_type: multiple_choice\n"
             "doc_to_text: '{{question}}'\ndoc_to_choice: '{{choices}}'\ndoc_to_target: answer\n"
             "dataset_kwargs: {data_files: {test: rows.jsonl}}\n"),
             extra={"rows.jsonl": '{"question": "q", "answer": 0}\n'})),
         r"rows\.jsonl:1: row lacks \['choices'\], which the task rows\.yaml reads"),
    case("eval-not-a-causal-lm",
         lambda c: harness.check_causal_lm(tiny_bert()[0]),
         r"BertModel is not a causal language model"),
    case("eval-empty-set",
         lambda c: perplexity.token_nll(c.model(), c.tok, []),
         r"token_nll: no texts to score"),
    case("eval-curve-too-short",
         lambda c: resolve(schema_for("13_evaluation_and_safety"), {"few_steps": 2}),
         r"EvalConfig\.few_steps = 2"),
    # ---- GRPO (notebook 18) ---------------------------------------------------------------
    case("grpo-group-of-one",
         lambda c: resolve(schema_for("18_grpo_verifiable_rewards"), {"group_size": 1}),
         r"GRPOSettings\.group_size = 1: must be at least 2"),
    case("grpo-unknown-reward",
         lambda c: resolve(schema_for("18_grpo_verifiable_rewards"),
                           {"rewards": ["valid_json", "exact_field"]}),
         r"GRPOSettings\.rewards = \['valid_json', 'exact_field'\]: \['exact_field'\] unknown"),
    case("grpo-task-row-missing-field",
         lambda c: grpo.load_records(c.file("t.jsonl", '{"message": "hi", "category": "x"}\n')),
         r"t\.jsonl line 1: missing \['order', 'total'\]"),
    case("grpo-pass-k-above-samples",
         lambda c: resolve(schema_for("18_grpo_verifiable_rewards"), {"samples": 2, "pass_k": [4]}),
         r"GRPOSettings\.pass_k = \[4\]: each k must be at most samples = 2"),
    # ---- Mixture of experts and of agents (notebook 10) -----------------------------------
    case("moe-top-k-above-experts",
         lambda c: resolve(schema_for("10_moe_and_moa"), {"top_k": 6}),
         r"MoEConfig\.top_k = 6: each token can go to at most n_experts = 4 experts"),
    case("moe-upcycle-top-k-above-experts",
         lambda c: moe.upcycle(c.model(), n_experts=2, top_k=3),
         r"top_k = 3: must be between 1 and n_experts = 2"),
    case("moa-no-proposers",
         lambda c: moa.mixture([], moa.Proposer("a", c.model()), c.tok, [{"instruction": "x"}]),
         r"Mixture of Agents needs at least one proposer"),
    # ---- Memory tuning and retrieval (notebook 11) ----------------------------------------
    case("memory-empty-fact-base",
         lambda c: memfacts.load(c.facts_dir("")),
         r"the fact base .*facts\.jsonl has no facts"),
    case("memory-too-many-experts",
         lambda c: memtuning.Router.build(
             [{"fact": "f0", "subject": "kettle", "question": "Price of the kettle?"}],
             retrieval.load_encoder("tiny-bert"), 3),
         r"n_experts = 3, but the chosen facts have 1 subjects"),
    case("memory-index-other-encoder",
         lambda c: retrieval.Retriever.build([("f0", "The kettle costs 9."), ("f1", "Lyon opens at 9.")],
                                             retrieval.load_encoder("tiny-bert")).retrieve(
             ["kettle?"], 1, retrieval.Encoder("minilm-l6", *models.load("tiny-bert"))),
         r"this index was built with encoder 'tiny-bert'; vectors from 'minilm-l6'"),
    case("memory-top-k-above-facts",
         lambda c: retrieval.Retriever.build([("f0", "The kettle costs 9.")],
                                             retrieval.load_encoder("tiny-bert")).retrieve(["kettle?"], 3),
         r"top_k = 3, but the index holds 1 facts"),
    case("memory-unknown-method",
         lambda c: resolve(schema_for("11_memory_tuning_and_rag"), {"methods": ["rag", "rag"]}),
         r"MemoryConfig\.methods = \['rag', 'rag'\]: name each of"),
    case("memory-more-updated-than-facts",
         lambda c: resolve(schema_for("11_memory_tuning_and_rag"), {"n_facts": 4, "n_updated": 6}),
         r"MemoryConfig\.n_updated = 6: 6 updated facts cannot be among 4 facts"),
    # ---- Scaling out (notebook 19) --------------------------------------------------------
    case("scale-more-processes-than-cores",
         lambda c: distributed.check_plan(4, 8, cores=2),
         r"processes = 4 but this machine has 2 cores"),
    case("scale-batch-not-divided-by-world",
         lambda c: resolve(schema_for("19_scaling_out"), {"global_batch": 9, "processes": 2}),
         r"ScaleConfig\.global_batch = 9: must split evenly over processes = 2"),
    case("scale-backend-not-installed",
         lambda c: distributed.check_backend({"distributed_type": "DEEPSPEED",
                                              "num_processes": 2}),
         r"this config uses DeepSpeed .* not installed here: pip install deepspeed"),
    # ---- The preference family (notebook 08) -------------------------------------------
    case("family-unknown-method",
         lambda c: resolve(schema_for("08_dpo_alignment"), {"methods": ["ipo", "cpo"]}),
         r"FamilySettings\.methods = \['ipo', 'cpo'\]: \['cpo'\] unknown; choose from"),
    case("family-pairs-missing-field",
         lambda c: family.train_kto([{"prompt": "q", "chosen": "a", "rejected": "b"},
                                     {"prompt": "q", "chosen": "a"}], "tiny-llama",
                                    AdapterConfig(), TrainConfig(batch_size=1), str(c.dir)),
         r"preference row 1: missing field\(s\) \['rejected'\]"),
    # ---- Compression and export (notebook 12) --------------------------------------------
    case("compress-sparsity-one",
         lambda c: resolve(schema_for("12_pruning_and_quantisation"), {"sparsities": [0.3, 1.0]}),
         r"CompressConfig\.sparsities = .*: each sparsity must lie in \[0, 1\)"),
    case("compress-recover-sparsity-not-swept",
         lambda c: resolve(schema_for("12_pruning_and_quantisation"), {"recover_sparsity": 0.4}),
         r"CompressConfig\.recover_sparsity = 0\.4: must be one of sparsities"),
    case("prune-sparsity-negative",
         lambda c: pruning.magnitude_prune(models.load_model("tiny-llama"), -0.2),
         r"sparsity=-0\.2: give a fraction in \[0, 1\)"),
    case("quantise-bitsandbytes-without-gpu",
         lambda c: quantization.check_method("nf4"),
         r"quantisation 'nf4' \(bitsandbytes 4-bit\) needs a CUDA GPU and this machine has none"),
    case("gguf-type-unknown",
         lambda c: gguf_file.check_type("Q4_K"),
         r"GGUF type 'Q4_K' is not written here; choose one of"),
    # ---- Training setup and search (notebook 04) ---------------------------------------
    case("search-sampler-unknown",
         lambda c: resolve(schema_for("04_training_setup_and_hpo"), {"samplers": ["bayes"]}),
         r"SearchConfig\.samplers = \['bayes'\] \(item 0: 'bayes'\) is not allowed; choose "
         r"one of \['grid', 'random', 'tpe'\]"),
    case("search-workers-over-budget",
         lambda c: resolve(schema_for("04_training_setup_and_hpo"),
                           {"n_trials": 4, "n_workers": 8}),
         r"SearchConfig\.n_workers = 8: is larger than the trial budget n_trials = 4"),
    case("search-range-inverted",
         lambda c: tuning.search_space({"lr": [1e-2, 1e-4]}),
         r"search_space\['lr'\]: range \[0\.01, 0\.0001\] is empty or inverted"),
    case("search-range-not-a-pair",
         lambda c: resolve(schema_for("04_training_setup_and_hpo"),
                           {"search_space": {"lr": [1e-4]}}),
         r"SearchConfig\.search_space = .*lr: give \[low, high\]"),
    case("search-space-unknown-name",
         lambda c: tuning.search_space({"beta": [0.1, 1.0]}),
         r"search_space: 'beta' cannot be searched; choose from \["),
    case("search-storage-unreachable",
         lambda c: search.open_storage("postgresql://nobody@127.0.0.1:1/none"),
         r"storage_url = 'postgresql://nobody@127\.0\.0\.1:1/none' cannot be opened"),
    case("setup-optimiser-without-rates",
         lambda c: train_params.TrainingSetupConfig(optimisers=["adamw"], optimiser_lrs={}),
         r"TrainingSetupConfig\.optimiser_lrs = \{\}: gives no candidate learning rates for "
         r"\['adamw'\]"),
    # ---- Experiment, sweep and merge configs -------------------------------------------
    case("experiment-method-unknown",
         lambda c: train_params.ExperimentConfig(methods=["full", "qlora"]),
         r"ExperimentConfig\.methods = \['full', 'qlora'\] \(item 1: 'qlora'\) is not "
         r"allowed; choose one of \['full'"),
    case("experiment-methods-comma-string",
         lambda c: train_params.ExperimentConfig(methods="full,lora"),
         r"ExperimentConfig\.methods = 'full,lora' must be a list"),
    case("experiment-lr-missing",
         lambda c: train_params.ExperimentConfig(methods=["full", "lora"], method_lrs={"full": 1e-4}),
         r"ExperimentConfig\.method_lrs = .* gives no learning rate for \['lora'\]"),
    case("experiment-lr-negative",
         lambda c: train_params.ExperimentConfig(methods=["lora"], method_lrs={"lora": -1e-3}),
         r"ExperimentConfig\.method_lrs = .*key 'lora'.* out of range"),
    case("experiment-lr-not-a-number",
         lambda c: train_params.ExperimentConfig(methods=["lora"], method_lrs={"lora": "fast"}),
         r"ExperimentConfig\.method_lrs = .*key 'lora'.* must be a float"),
    case("sweep-rank-zero", lambda c: train_params.SweepConfig(ranks=[0, 2], analysis_rank=2),
         r"SweepConfig\.ranks = \[0, 2\] \(item 0: 0\) is out of range: must be an int >= 1"),
    case("sweep-rank-repeated", lambda c: train_params.SweepConfig(ranks=[2, 2], analysis_rank=2),
         r"SweepConfig\.ranks = \[2, 2\]: name each rank once"),
    case("sweep-analysis-rank-not-swept",
         lambda c: train_params.SweepConfig(ranks=[2, 4], analysis_rank=8),
         r"SweepConfig\.analysis_rank = 8: must be one of the swept ranks \[2, 4\]"),
    case("merge-combination-unknown",
         lambda c: train_params.MergeConfig(combinations=["cat", "avg"]),
         r"MergeConfig\.combinations = \['cat', 'avg'\] \(item 1: 'avg'\) is not allowed"),
    case("merge-weight-sets-not-numbers",
         lambda c: train_params.MergeConfig(weight_sets=[[1.0, "x"]]),
         r"weight_sets = .*\(item 1: 'x'\) must be a float"),
    case("merge-weight-sets-uneven", lambda c: train_params.MergeConfig(weight_sets=[[1, 1], [1]]),
         r"weight_sets = .*: every set needs one weight per adapter"),
    case("merge-dora-adapters",
         lambda c: merging.check_mergeable(c.dora_model(), ["one", "two"], [1.0, 1.0], "cat",
                                           None),
         r"adapter 'one' is DoRA \(use_dora=True\): .* merge plain LoRA adapters"),
    # ---- Models and profiles -----------------------------------------------------------
    case("model-name-unknown", lambda c: models.load("no-such-model"),
         r"unknown model 'no-such-model'\. Known names: .*tiny-llama"),
    case("profile-unknown", lambda c: profiles.load_profile("nope", c.profiles_dir()),
         r"unknown profile 'nope'; known profiles: mini"),
    case("profile-timeout-negative",
         lambda c: profiles.load_profile("neg", c.profiles_dir(neg="timeout_s: -1\n")),
         r"neg\.yaml: timeout_s must be a positive number of seconds, got -1"),
    # ---- Files and data sets -----------------------------------------------------------
    case("tasks-file-not-utf8",
         lambda c: instruct.load_tasks(c.file("latin1.jsonl", TASK_ROW.encode()[:-2] +
                                              b'\xe9"}\n')),
         r"latin1\.jsonl is not UTF-8 text \(byte \d+\)"),
    case("tasks-file-empty", lambda c: instruct.load_tasks(c.file("empty.jsonl", "\n")),
         r"empty\.jsonl holds no examples"),
    case("tasks-row-missing-column",
         lambda c: instruct.load_tasks(c.file("nocol.jsonl", TASK_ROW + "\n" + TASK_ROW.replace(
             '"response": "r", ', ""))),
         r"nocol\.jsonl line 2: missing or empty \['response'\]; each row needs \['task'"),
    case("csv-not-utf8",
         lambda c: load.load_file(c.file("legacy.csv", b"text,label\nok,a\ncaf\xe9,b\n")),
         r"legacy\.csv: 1 line\(s\) are not valid UTF-8 \(lines \[3\]\); re-export"),
    case("select-unknown-task", lambda c: instruct.select(c.tasks_file(), "extract,dates", "train"),
         r"tasks = 'extract,dates': unknown \['dates'\]; the file has \['extract', 'route'\]"),
    case("validate-missing-column",
         lambda c: validate.validate(datasets.Dataset.from_dict(
             {k: v for k, v in VALID_ROWS.items() if k != "response"}),
             validate.Schema(label_column=None)),
         r"missing column\(s\) \['response'\] in all 2 rows; .* required: \['id', 'instruction', "
         r"'response'\]"),
    case("validate-label-not-in-set",
         lambda c: validate.validate(datasets.Dataset.from_dict(
             {**VALID_ROWS, "category": ["billing", "misc"]}),
             validate.Schema(labels=("billing", "shipping")), on_bad="raise"),
         r"label not in set: 1 of 2 rows in column\(s\) category \(e\.g\. ids \['r1'\]\); "
         r"allowed: one of the schema's labels"),
    case("balance-missing-label-column",
         lambda c: balance.check_dataset(datasets.Dataset.from_dict({"text": ["a"], "y": ["b"]})),
         r"column\(s\) \['label'\] not found; the data set has \['text', 'y'\]"),
    case("balance-empty-dataset",
         lambda c: balance.check_dataset(datasets.Dataset.from_dict({"text": [], "label": []})),
         r"the data set is empty"),
    case("pairs-empty", lambda c: formatting.pairs_dataset(c.tok, [], [], 32),
         r"pairs_dataset: 0 prompts and 0 completions; need the same, non-zero number"),
    case("pairs-answer-truncated",
         lambda c: formatting.pairs_dataset(c.tok, ["What is LoRA? " * 20], ["x"], 8),
         r"1 of 1 examples have no completion token left after truncation to max_length=8"),
    # ---- Building a trainer (no step may run) ------------------------------------------
    case("trainer-batch-larger-than-data", lambda c: c.trainer(c.pairs, c.pairs, batch_size=8),
         r"TrainConfig\.batch_size = 8 is larger than the training set \(4 examples\)"),
    case("trainer-train-set-empty", lambda c: c.trainer(c.pairs.select([]), c.pairs),
         r"train_ds is empty \(0 examples\)"),
    case("trainer-eval-set-empty", lambda c: c.trainer(c.pairs, c.pairs.select([])),
         r"eval_ds is empty \(0 examples\)"),
    case("trainer-untokenised-text",
         lambda c: c.trainer(datasets.Dataset.from_dict({"text": ["a b"] * 4}), c.pairs),
         r"train_ds has columns \['text'\], missing \['input_ids', 'labels'\]"),
    case("trainer-no-labels-column",
         lambda c: c.trainer(c.pairs.remove_columns("labels"), c.pairs),
         r"train_ds has columns .*, missing \['labels'\]"),
    case("trainer-longer-than-model", lambda c: c.trainer(c.long_pairs, c.pairs),
         r"longest train_ds example \(tokens\) = \d+: must be <= the model's "
         r"max_position_embeddings \(256\)"),
    case("max-length-beyond-model", lambda c: sft.check_lengths(c.model(), 512),
         r"ModelConfig\.max_length = 512: must be <= the model's max_position_embeddings "
         r"\(256\)"),
    case("target-modules-unknown-lora",
         lambda c: adapters.apply_method(c.model(), AdapterConfig(target_modules="q_proj,qkv")),
         r"AdapterConfig\.target_modules = 'q_proj,qkv': \['qkv'\] are not Linear layers of "
         r"this model; it has \[.*'v_proj'\]"),
    case("target-modules-unknown-ia3",
         lambda c: adapters.apply_method(c.model(), AdapterConfig(peft_method="ia3",
                                                                  target_modules="attn")),
         r"AdapterConfig\.target_modules = 'attn': \['attn'\] are not Linear layers"),
    case("train-method-model-unknown",
         lambda c: finetune.train_method("no-such-model", AdapterConfig(), TrainConfig(
             batch_size=2), c.pairs, c.pairs, str(c.dir / "out")),
         r"unknown model 'no-such-model'"),
    case("train-method-data-checked-before-model-load",
         lambda c: finetune.train_method("no-such-model", AdapterConfig(), TrainConfig(
             batch_size=8), c.pairs, c.pairs, str(c.dir / "out")),
         r"TrainConfig\.batch_size = 8 is larger than the training set \(4 examples\)"),
    case("train-method-longer-than-model",
         lambda c: finetune.train_method("tiny-llama", AdapterConfig(), TrainConfig(
             batch_size=2), c.long_pairs, c.pairs, str(c.dir / "out")),
         r"longest train_ds example \(tokens\) = \d+: must be <= the model's "
         r"max_position_embeddings \(256\)"),
    # ---- Classifiers -------------------------------------------------------------------
    case("classifier-target-modules-unknown",
         lambda c: lora_classifier.lora_classifier(c.model(), 3, target_modules="q_proj,qkv"),
         r"target_modules = 'q_proj,qkv': \['qkv'\] are not Linear layers"),
    case("classifier-label-above-num-labels",
         lambda c: lora_classifier.finetune(c.lora_clf(), c.tok, ["a b", "c d"], np.array([0, 3]),
                                            steps=1, batch_size=2, bf16=False),
         r"labels y = \[3\] at rows \[1\] are out of range: must be in \[0, 2\] for n_classes "
         r"\(num_labels\) = 3"),
    case("classifier-label-count-mismatch",
         lambda c: lora_classifier.finetune(c.lora_clf(), c.tok, ["a b", "c d"], np.array([0]),
                                            steps=1, batch_size=2, bf16=False),
         r"labels y has 1 values for 2 rows; give one label per row"),
    case("head-label-negative",
         lambda c: classifier.train_head(np.zeros((3, 4)), np.array([0, -1, 1]), 2, epochs=1),
         r"labels y = \[-1\] at rows \[1\] are out of range: must be in \[0, 1\]"),
    case("head-label-names-not-ids",
         lambda c: classifier.train_head(np.zeros((2, 4)), np.array(["a", "b"]), 2, epochs=1),
         r"labels y have dtype <U1: must be integer class ids in \[0, 1\]"),
]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    return Ctx(tmp_path_factory.mktemp("bad_inputs"))


@pytest.fixture(autouse=True)
def no_training(monkeypatch):
    """Any attempt to train raises TrainingStarted (and is recorded) instead of computing."""
    started: list[str] = []

    def guard(what):
        def refuse(*args, **kwargs):
            started.append(what)
            raise TrainingStarted(f"{what} ran: the bad input was not refused before training")
        return refuse

    monkeypatch.setattr(transformers.Trainer, "train", guard("Trainer.train"))
    monkeypatch.setattr(torch.optim.AdamW, "step", guard("AdamW.step"))
    return started


def _own_frame(path) -> bool:
    """A frame of this file, of ftkit, or generated code (a dataclass ``__init__``)."""
    if str(path).startswith("<"):
        return True
    path = Path(path).resolve()
    return path == Path(__file__).resolve() or FTKIT_DIR in path.parents


def test_the_table_is_large_and_ids_are_unique():
    ids = [p.id for p in CASES]
    assert len(ids) >= 30 and len(set(ids)) == len(ids)


@pytest.mark.parametrize("make, match", CASES)
def test_bad_input_raises_one_clear_config_error(make, match, ctx, no_training):
    steps_before = ctx.counter.steps
    with pytest.raises(ConfigError, match=match) as err:
        make(ctx)
    assert isinstance(err.value, ValueError)
    message = str(err.value)
    assert message.strip() and "\n" not in message, "one clear line, not a dump"
    foreign = [str(e.path) for e in err.traceback if not _own_frame(e.path)]
    assert not foreign, f"raised from inside a dependency: {foreign}"
    assert not no_training, f"training started: {no_training}"
    assert ctx.counter.steps == steps_before


def test_the_guard_would_catch_a_training_step(ctx, no_training, monkeypatch):
    """Control: a valid request reaches Trainer.train, which the guard refuses."""
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    trainer = ctx.trainer(ctx.pairs, ctx.pairs)
    with pytest.raises(TrainingStarted):
        trainer.train()
    assert no_training == ["Trainer.train"]
