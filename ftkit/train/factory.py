"""The one trainer factory: every training path that a library trainer fits gets it here.

``build`` wraps a transformers or TRL trainer class with what every ftkit run shares: the live
loss plot (or a path's own live curves), one compact log line per evaluation, integrity
markers on checkpoints (``ftkit.train.checkpoints``; resume with ``ftkit.train.sft.train``),
the speed layer (``ftkit.train.speed.layer``: fused LoRA updates, frozen weights recast and
held in bf16 under autocast; one printed line per run says which levers are on), TensorBoard
event files under ``output_dir/runs`` (or MLflow, trackio: ``TrainConfig.report_to``), and a
``ftkit_path`` tag that says which path built it. The paths:

- ``sft``: causal-LM fine-tuning (``ftkit.train.sft.make_trainer``; notebooks 05-07, 02's LLM);
- ``dpo``: TRL's DPOTrainer, DPO and IPO (``ftkit.align.dpo.make_dpo_trainer``,
  ``ftkit.align.family``; notebooks 08, 09);
- ``cpo``, ``orpo``, ``kto``: TRL's CPO trainer (as SimPO), ORPO and KTO trainers, the rest
  of the preference family (``ftkit.align.family``; notebook 08);
- ``grpo``: TRL's GRPOTrainer with the rollout speed layer (``ftkit.align.grpo``; notebook 18);
- ``whisper``: decoder fine-tuning on cached encoder states (``ftkit.asr.whisper``; notebook 16);
- ``vqa``: a vision-language stage (``ftkit.vqa.train.trainer``; notebook 17);
- ``classifier``: a LoRA backbone with a classification head, its loss and row sampler by name
  (``ftkit.train.lora_classifier.finetune``; notebook 02);
- ``reward``: a reward model on preference pairs (``ftkit.align.reward``; notebook 09);
- ``contrastive``: CLIP-style pretraining of an image encoder (``ftkit.vqa.contrastive``;
  notebook 17);
- ``top_layers``: LoRA on a causal LM's top layers over cached lower-layer states, the many
  short runs of the training-setup experiments (``ftkit.train.toplayers``; notebook 04).

The last three train plain ``nn.Module`` objects with a loss of their own
(``ftkit.train.trainers.LossTrainer``). Two loops stay hand-written: PPO (TRL 1.16 ships no
PPOTrainer, and one PPO iteration is a rollout plus several updates, not one Trainer step),
which uses the same callbacks and checkpoints through ``ftkit.train.loop``; and the linear
heads on frozen sentence embeddings of notebook 02 (``ftkit.train.classifier``), dozens per
run, where the Trainer's set-up costs more than the training (a 600-row head, 30 epochs:
0.12 s in the plain loop, 0.96 s through ``LossTrainer``, measured side by side).

Seeding happens in the TrainingArguments every path builds (``seed``), which the Trainer
applies before it creates the model's optimiser state.
"""
from __future__ import annotations

import os
from typing import Any

from transformers.integrations import TensorBoardCallback

from ftkit.train.callbacks import compact_logs, live_plot
from ftkit.train.checkpoints import IntegrityCallback
from ftkit.train.speed import layer
from ftkit.train.speed.layer import Levers

PATHS = ("sft", "dpo", "cpo", "orpo", "kto", "grpo", "whisper", "vqa", "classifier", "reward",
         "contrastive", "top_layers")
LOOPS = ("ppo",)  # hand-written, with the same callbacks and checkpoints (ftkit.train.loop)


def saves_checkpoints(args) -> bool:
    """Whether ``args`` (TrainingArguments or a TRL config) writes checkpoints."""
    return getattr(args.save_strategy, "value", args.save_strategy) != "no"


def build(trainer_cls: type, model, args, *, path: str, title: str = "training",
          plot=None, callbacks: list | None = None, levers: Levers | None = None,
          **trainer_kwargs: Any):
    """``trainer_cls(model=model, args=args, ...)`` with ftkit's shared callbacks, ``model``
    switched to the speed layer's forms first.

    Args:
        trainer_cls: a ``transformers.Trainer`` subclass (TRL's trainers are).
        path: which training path asks (one of :data:`PATHS`), kept as ``trainer.ftkit_path``.
        title: title of the live loss plot.
        plot: a live-plot callback of the path's own (e.g. DPO's reward-margin curves);
            default ``live_plot(title)``.
        callbacks: further callbacks (early stopping, timers).
        levers: the speed layer's levers (``ftkit.train.speed.layer.Levers``; default all
            layer levers on); a path names its own levers in it for the log line.
        trainer_kwargs: datasets, collator, processing class … as the trainer takes them.
    """
    if path not in PATHS:
        raise ValueError(f"unknown training path {path!r}; the factory builds {list(PATHS)}")
    levers, callbacks = layer.prepare(model, bool(getattr(args, "bf16", False)), levers, path,
                                      callbacks)
    shared = shared_callbacks(args, title, plot, callbacks)
    trainer = trainer_cls(model=model, args=args, callbacks=shared, **trainer_kwargs)
    trainer.ftkit_path = path
    trainer.ftkit_levers = levers
    route_event_files(trainer.callback_handler.callbacks, args)
    return compact_logs(trainer)


def shared_callbacks(args, title: str = "training", plot=None,
                     callbacks: list | None = None) -> list:
    """What every run gets: its live plot, the given callbacks, integrity markers on saves."""
    integrity = [IntegrityCallback()] if saves_checkpoints(args) else []
    return [plot if plot is not None else live_plot(title), *(callbacks or []), *integrity]


def route_event_files(callbacks: list, args) -> None:
    """TensorBoard event files under ``output_dir/runs``, also when the first log is an
    evaluation before training (transformers would otherwise write them below the current
    directory)."""
    for callback in callbacks:
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = os.path.join(args.output_dir, "runs")


__all__ = ["LOOPS", "PATHS", "build", "route_event_files", "saves_checkpoints",
           "shared_callbacks"]
