"""Many short fine-tuning runs on a CPU: LoRA on a model's top layers over cached features.

The training-setup experiments (notebook 04, paper §5.3-5.6) need dozens of runs: eight
optimisers with a learning-rate sweep each, schedules, clipping, accumulation, precision, and
searches of tens of trials. On 2 CPU cores one LoRA step of SmolLM2-135M on four support
records takes about 2.7 s, nearly all of it the forward and backward passes through 30 layers.

When only the top ``k`` layers carry an adapter, the layers below never change, so their
output for each training row is the same in every run. :class:`TopLayers` computes it once
(the hidden states entering layer ``L-k``), then builds a ``k``-layer model of the same class
from the top layers, final norm and output head of the loaded one (weights copied, nothing
re-initialised). That model takes the cached states as ``inputs_embeds``: positions, the
causal mask and the loss are the full model's, so a run here is LoRA on the top ``k`` layers
of the real model, at a fraction of the cost. Every run goes through the trainer factory
(path ``top_layers``): transformers' Trainer with the chosen ``torch.optim`` optimiser, its
schedule, clipping, accumulation and precision, and a callback that hands each evaluation to
a pruner (ftkit.train.search).
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from transformers import Trainer, TrainerCallback

from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.data.formatting import pairs_dataset
from ftkit.train import adapters, factory, optimisers
from ftkit.train.speed.fastloss import IGNORE_INDEX, label_only_loss
from ftkit.train.trainers import loss_arguments, run_folder

SCHEDULES = ("constant", "linear", "cosine")
SEARCHABLE = {"lr": "log", "lora_r": "int", "lora_alpha": "log", "lora_dropout": "float",
              "warmup_ratio": "float"}  # RunSpec fields a search may vary, and their scale


@dataclass(frozen=True)
class RunSpec:
    """One run: optimiser and rate, steps and batch, schedule, clipping, precision, adapter."""
    optimiser: str = "adamw"
    lr: float = 1e-3
    steps: int = 12
    batch_size: int = 4
    grad_accum: int = 1
    schedule: str = "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: float = 1.0  # 0: no clipping
    bf16: bool = False  # bf16 autocast, also on a CPU without fast bf16 (to measure it)
    lora_r: int = 8
    lora_alpha: float = 16.0
    lora_dropout: float = 0.0
    eval_every: int = 0  # 0: evaluate once, at the end
    seed: int = 0
    report_to: str = "none"

    def check(self) -> None:
        optimisers.check_name(self.optimiser)
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"schedule {self.schedule!r}: choose one of {list(SCHEDULES)}")
        if self.steps < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ConfigError(f"steps, batch_size and grad_accum must be >= 1, not "
                              f"{self.steps}, {self.batch_size}, {self.grad_accum}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr = {self.lr}: must be a positive number")


@dataclass
class RunResult:
    """What a run measured: eval loss at the end and at each evaluation, train loss, gradient
    norm before clipping and learning rate per step, time per step and optimiser state."""
    spec: RunSpec
    eval_loss: float
    evals: list[tuple[int, float]] = field(default_factory=list)
    losses: list[tuple[int, float]] = field(default_factory=list)
    grad_norms: list[tuple[int, float]] = field(default_factory=list)
    lrs: list[tuple[int, float]] = field(default_factory=list)
    steps: int = 0
    seconds_per_step: float = 0.0
    state_bytes_per_weight: float = 0.0
    pruned: bool = False

    def row(self) -> dict[str, Any]:
        """The scalar results, for a table."""
        return {"eval_loss": self.eval_loss, "steps": self.steps,
                "seconds_per_step": self.seconds_per_step,
                "state_bytes_per_weight": self.state_bytes_per_weight, "pruned": self.pruned}


class FeatureTrainer(Trainer):
    """Trainer whose batches are cached hidden states: the loss is computed at the labelled
    positions only, summed over the accumulated micro-batches' label count, so accumulating
    ``n`` batches of ``b`` rows gives the gradient of one batch of ``n·b`` rows. Runs under
    bf16 autocast when ``args.bf16``."""
    model_accepts_loss_kwargs = True

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        # the decoder is called directly, outside the Trainer's autocast wrapper of forward
        device = inputs["inputs_embeds"].device.type
        with torch.autocast(device, dtype=torch.bfloat16, enabled=self.args.bf16):
            loss = label_only_loss(model, None, inputs["attention_mask"], inputs["labels"],
                                   num_items_in_batch, inputs_embeds=inputs["inputs_embeds"])
        return (loss.float(), {}) if return_outputs else loss.float()


class _Watch(TrainerCallback):
    """Collects each evaluation and asks ``report(step, eval_loss)`` whether to stop."""

    def __init__(self, report: Callable[[int, float], bool] | None):
        self.report, self.evals, self.pruned = report, [], False

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        loss = float((metrics or {}).get("eval_loss", math.nan))
        self.evals.append((state.global_step, loss))
        if self.report is not None and self.report(state.global_step, loss):
            self.pruned = control.should_training_stop = True
        return control


def pad_batch(rows: list[dict]) -> dict[str, torch.Tensor]:
    """Right-pad cached rows to the batch's longest: states with zeros, labels with -100."""
    n = max(len(r["labels"]) for r in rows)
    width = rows[0]["inputs_embeds"].shape[-1]
    states = torch.zeros(len(rows), n, width)
    labels = torch.full((len(rows), n), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros(len(rows), n, dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["labels"])
        states[i, :k], labels[i, :k], mask[i, :k] = r["inputs_embeds"], r["labels"], 1
    return {"inputs_embeds": states, "labels": labels, "attention_mask": mask}


def top_model(model, k: int):
    """A ``k``-layer model of ``model``'s class: its top ``k`` decoder layers, final norm and
    output head, weights copied (taking hidden states as ``inputs_embeds``)."""
    n = getattr(model.config, "num_hidden_layers", None)
    if not isinstance(n, int) or not 1 <= k < n:
        raise ConfigError(f"top_layers = {k}: must be between 1 and the model's layer count "
                          f"minus one ({n} layers)")
    config = copy.deepcopy(model.config)
    config.num_hidden_layers = k
    if getattr(config, "layer_types", None):
        config.layer_types = config.layer_types[n - k:]
    top = type(model)(config)
    state = {}
    for name, value in model.state_dict().items():
        if ".layers." in name:
            head, rest = name.split(".layers.", 1)
            index, tail = rest.split(".", 1)
            if int(index) < n - k:
                continue
            name = f"{head}.layers.{int(index) - (n - k)}.{tail}"
        state[name] = value
    missing, unexpected = top.load_state_dict(state, strict=False)
    missing = [m for m in missing if m != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise ConfigError(f"top_model: {type(model).__name__} does not keep its decoder layers "
                          f"as model.layers.N (missing {missing[:3]}, unexpected "
                          f"{unexpected[:3]})")
    top.config.use_cache = False
    return top.eval()


@torch.no_grad()
def hidden_states(model, dataset, layer: int, batch_size: int = 8) -> list[dict]:
    """For each row of a ``pairs_dataset``, the hidden states entering decoder layer
    ``layer`` (trimmed to the row's length) with the row's labels."""
    rows = []
    model.eval()
    for start in range(0, len(dataset), batch_size):
        chunk = dataset[start:start + batch_size]
        lengths = [len(ids) for ids in chunk["input_ids"]]
        ids = torch.zeros(len(lengths), max(lengths), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, seq in enumerate(chunk["input_ids"]):
            ids[i, :len(seq)], mask[i, :len(seq)] = torch.tensor(seq), 1
        states = model(input_ids=ids, attention_mask=mask,
                       output_hidden_states=True).hidden_states[layer]
        for i, n in enumerate(lengths):
            rows.append({"inputs_embeds": states[i, :n].float().clone(),
                         "labels": torch.tensor(chunk["labels"][i])})
    return rows


class TopLayers:
    """A training task whose runs adapt the top ``k`` layers over cached lower-layer states.

    Args:
        model, tokenizer: the loaded causal LM (Llama-style ``model.layers``).
        train_pairs, eval_pairs: ``(questions, answers)``, formatted with the chat template.
        top_layers: ``k``, the layers that carry the adapter.
        max_length: tokens per row.
    """

    def __init__(self, model, tokenizer, train_pairs: tuple[list[str], list[str]],
                 eval_pairs: tuple[list[str], list[str]], top_layers: int = 2,
                 max_length: int = 256):
        n = model.config.num_hidden_layers
        self.top = top_model(model, top_layers)
        self.top_layers, self.layers = top_layers, n
        t0 = time.perf_counter()
        self.train = hidden_states(model, pairs_dataset(tokenizer, *train_pairs, max_length),
                                   n - top_layers)
        self.eval = hidden_states(model, pairs_dataset(tokenizer, *eval_pairs, max_length),
                                  n - top_layers)
        self.feature_seconds = time.perf_counter() - t0
        if not self.train or not self.eval:
            raise ConfigError("TopLayers needs at least one training and one evaluation row")
        rows = hashlib.sha256()
        for row in [*self.train, *self.eval]:
            rows.update(row["labels"].numpy().tobytes())
        self.signature = {"model": type(model).__name__, "config": model.config.to_json_string(),
                          "top_layers": top_layers, "max_length": max_length,
                          "rows": rows.hexdigest()[:16]}

    def run(self, spec: RunSpec, report: Callable[[int, float], bool] | None = None,
            output_dir: str | None = None, live: bool = False, title: str = "") -> RunResult:
        """Train a fresh LoRA adapter as ``spec`` says; ``report(step, eval_loss)`` is asked
        after each evaluation and stops the run when it returns True (a pruned trial)."""
        spec.check()
        env.seed_everything(spec.seed)
        watch = _Watch(report)
        with run_folder(output_dir) as folder, warnings.catch_warnings():
            # transformers 5 warns on every run that a property peft and the Trainer read is
            # renamed; one run of a search would print it dozens of times
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing.*", FutureWarning)
            model = adapters.apply_method(copy.deepcopy(self.top), AdapterConfig(
                peft_method="lora", lora_r=spec.lora_r, lora_alpha=spec.lora_alpha,
                lora_dropout=spec.lora_dropout))
            trainable = [p for p in model.parameters() if p.requires_grad]
            trainer = factory.build(
                FeatureTrainer, model, self._arguments(spec, folder), path="top_layers",
                title=title or f"{spec.optimiser} lr={spec.lr:g}",
                plot=None if live else TrainerCallback(), callbacks=[watch],
                train_dataset=self.train, eval_dataset=self.eval, data_collator=pad_batch,
                optimizers=(optimisers.make_optimiser(spec.optimiser, trainable, spec.lr), None))
            t0 = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - t0
            if not watch.evals or watch.evals[-1][0] != trainer.state.global_step:
                trainer.evaluate()
        history = trainer.state.log_history
        return RunResult(
            spec, watch.evals[-1][1], watch.evals,
            losses=[(h["step"], h["loss"]) for h in history if "loss" in h],
            grad_norms=[(h["step"], float(h["grad_norm"])) for h in history if "grad_norm" in h],
            lrs=[(h["step"], h["learning_rate"]) for h in history if "learning_rate" in h],
            steps=trainer.state.global_step,
            seconds_per_step=seconds / max(1, trainer.state.global_step),
            state_bytes_per_weight=optimisers.state_bytes(trainer.optimizer) / sum(
                p.numel() for p in trainable), pruned=watch.pruned)

    def _arguments(self, spec: RunSpec, folder: str):
        schedule = spec.schedule
        if schedule == "constant" and spec.warmup_ratio > 0:
            schedule = "constant_with_warmup"
        evals = {"eval_strategy": "steps", "eval_steps": spec.eval_every} if spec.eval_every \
            else {}
        args = loss_arguments(
            folder, lr=min(spec.lr, 1.0), max_steps=spec.steps, seed=spec.seed, warmup=spec.warmup_ratio,
            batch_size=optimisers.batch_size_for(spec.optimiser, spec.batch_size,
                                                 len(self.train)),
            schedule=schedule, max_grad_norm=spec.max_grad_norm, report_to=spec.report_to,
            gradient_accumulation_steps=spec.grad_accum,
            per_device_eval_batch_size=len(self.eval), prediction_loss_only=True,
            label_names=["labels"], **evals)
        # the rate as given (AdaDelta's and SGD's can exceed TrainConfig's bound of 1), and
        # bf16 as asked, also where this CPU runs it slowly: the precision runs measure it
        return dataclasses.replace(args, learning_rate=spec.lr, bf16=spec.bf16 or args.bf16)


class TrialRun:
    """A search objective (ftkit.train.search): one run of ``task`` with ``base`` and the
    trial's parameters (any of :data:`SEARCHABLE`), returning its eval loss."""

    def __init__(self, task: TopLayers, base: RunSpec):
        self.task, self.base = task, base

    def __call__(self, params: dict, report: Callable[[int, float], bool]) -> float:
        unknown = sorted(set(params) - set(SEARCHABLE))
        if unknown:
            raise ConfigError(f"search space: {unknown} cannot be searched; choose from "
                              f"{sorted(SEARCHABLE)}")
        spec = dataclasses.replace(self.base, **params)
        return self.task.run(spec, report=report).eval_loss


__all__ = ["FeatureTrainer", "RunResult", "RunSpec", "SCHEDULES", "SEARCHABLE", "TopLayers",
           "TrialRun", "hidden_states", "pad_batch", "top_model"]
