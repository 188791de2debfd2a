"""The one trainer factory: every training path that a library trainer fits gets it here.

``build`` wraps a transformers or TRL trainer class with what every ftkit run shares: the live
loss plot (or a path's own live curves), one compact log line per evaluation, integrity
markers on checkpoints (``ftkit.train.checkpoints``; resume with ``ftkit.train.sft.train``),
the speed layer's callbacks, TensorBoard event files under ``output_dir/runs`` (or MLflow,
trackio: ``TrainConfig.report_to``), and a ``ftkit_path`` tag that says which path built it.
The paths:

- ``sft``: causal-LM fine-tuning (``ftkit.train.sft.make_trainer``; notebooks 05-07, 02's LLM);
- ``dpo``: TRL's DPOTrainer (``ftkit.align.dpo.make_dpo_trainer``; notebooks 08, 09);
- ``whisper``: decoder fine-tuning on cached encoder states (``ftkit.asr.whisper``; notebook 16);
- ``vqa``: a vision-language stage (``ftkit.vqa.train.trainer``; notebook 17).

Seeding happens in the TrainingArguments every path builds (``seed``), which the Trainer
applies before it creates the model's optimiser state.
"""
from __future__ import annotations

import os
from typing import Any

from transformers.integrations import TensorBoardCallback

from ftkit.train.callbacks import compact_logs, live_plot
from ftkit.train.checkpoints import IntegrityCallback

PATHS = ("sft", "dpo", "whisper", "vqa")


def saves_checkpoints(args) -> bool:
    """Whether ``args`` (TrainingArguments or a TRL config) writes checkpoints."""
    return getattr(args.save_strategy, "value", args.save_strategy) != "no"


def build(trainer_cls: type, model, args, *, path: str, title: str = "training",
          plot=None, callbacks: list | None = None, **trainer_kwargs: Any):
    """``trainer_cls(model=model, args=args, ...)`` with ftkit's shared callbacks.

    Args:
        trainer_cls: a ``transformers.Trainer`` subclass (TRL's trainers are).
        path: which training path asks (one of :data:`PATHS`), kept as ``trainer.ftkit_path``.
        title: title of the live loss plot.
        plot: a live-plot callback of the path's own (e.g. DPO's reward-margin curves);
            default ``live_plot(title)``.
        callbacks: further callbacks (the speed layer's, early stopping, timers).
        trainer_kwargs: datasets, collator, processing class … as the trainer takes them.
    """
    if path not in PATHS:
        raise ValueError(f"unknown training path {path!r}; the factory builds {list(PATHS)}")
    integrity = [IntegrityCallback()] if saves_checkpoints(args) else []
    shared = [plot if plot is not None else live_plot(title), *(callbacks or []), *integrity]
    trainer = trainer_cls(model=model, args=args, callbacks=shared, **trainer_kwargs)
    trainer.ftkit_path = path
    for callback in trainer.callback_handler.callbacks:
        # event files under output_dir/runs, also when the first log is an evaluation before
        # training (transformers would otherwise write them below the current directory)
        if isinstance(callback, TensorBoardCallback) and callback.logging_dir is None:
            callback.logging_dir = os.path.join(args.output_dir, "runs")
    return compact_logs(trainer)


__all__ = ["PATHS", "build", "saves_checkpoints"]
