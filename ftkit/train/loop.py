"""The Trainer's callbacks and checkpoints for a loop that no library trainer fits (PPO).

A PPO iteration is a rollout, a scoring pass and several optimiser updates on the same
samples, so it is not one ``Trainer`` step, and TRL 1.16 ships no PPO trainer. Such a loop
still gets everything the factory gives a library trainer (``ftkit.train.factory``): the
live plot, TensorBoard/MLflow/trackio through the same reporting callbacks, progress bar,
seeding, and ``checkpoint-<step>`` folders in the Trainer's layout (weights as safetensors,
``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth``, ``trainer_state.json``) with the
integrity marker of ``ftkit.train.checkpoints``, so the same resume finds the newest valid one.

A loop calls :meth:`CallbackLoop.begin` (which resumes when a valid checkpoint exists),
:meth:`CallbackLoop.step` once per iteration with that iteration's numbers, and
:meth:`CallbackLoop.end`.
"""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch
from transformers import TrainerControl, TrainerState
from transformers.integrations import get_reporting_integration_callbacks
from transformers.trainer import DEFAULT_PROGRESS_CALLBACK
from transformers.trainer_callback import CallbackHandler, DefaultFlowCallback

from ftkit.train import factory
from ftkit.train.checkpoints import PREFIX, STATE, latest_valid_checkpoint
from ftkit.train.speed import layer
from ftkit.train.speed.layer import Levers


class CallbackLoop:
    """A hand-written loop's side of the Trainer protocol.

    Args:
        model: the module being trained (a peft model saves only its adapter).
        optimizer: its optimiser; ``scheduler`` defaults to a constant rate.
        args: ``TrainingArguments`` (``output_dir``, ``logging_steps``, ``save_steps``,
            ``report_to``, ``seed``), e.g. from ``ftkit.train.trainers.loss_arguments``.
        path: the training path (one of ``factory.LOOPS``), kept as ``ftkit_path``.
        plot, callbacks, levers, title: as for :func:`ftkit.train.factory.build` (the speed
            layer's levers act on ``model`` here too; its bf16 is ``args.bf16``).
    """

    def __init__(self, model, optimizer, args, *, path: str, plot=None,
                 callbacks: list | None = None, scheduler=None, title: str = "training",
                 levers: Levers | None = None):
        if path not in factory.LOOPS:
            raise ValueError(f"unknown loop {path!r}; hand-written loops are {list(factory.LOOPS)}")
        self.model, self.optimizer, self.args, self.ftkit_path = model, optimizer, args, path
        self.scheduler = scheduler or torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
        flow = [DefaultFlowCallback, *([] if args.disable_tqdm else [DEFAULT_PROGRESS_CALLBACK]),
                *get_reporting_integration_callbacks(args.report_to)]
        _, callbacks = layer.prepare(model, bool(args.bf16), levers, path, callbacks)
        shared = factory.shared_callbacks(args, title, plot, callbacks)
        self.callback_handler = CallbackHandler([*flow, *shared], model, None, optimizer,
                                                self.scheduler)
        factory.route_event_files(self.callback_handler.callbacks, args)
        self.state, self.control = TrainerState(), TrainerControl()

    def begin(self, max_steps: int, resume: bool = True) -> int:
        """Start (or resume) a run of ``max_steps`` steps; returns the step to continue after."""
        folder = latest_valid_checkpoint(self.args.output_dir) if resume else None
        if folder is not None:
            self._load(folder)
            print(f"resuming from {folder} (step {self.state.global_step})", flush=True)
        self.state.max_steps, self.state.logging_steps = max_steps, self.args.logging_steps
        self.state.save_steps = self.args.save_steps
        self.control = self.callback_handler.on_train_begin(self.args, self.state, self.control)
        return self.state.global_step

    def step(self, values: dict[str, float]) -> None:
        """One finished iteration: log ``values``, save when ``save_steps`` says so."""
        self.state.global_step += 1
        self.state.epoch = self.state.global_step / max(1, self.state.max_steps)
        self.control = self.callback_handler.on_step_end(self.args, self.state, self.control)
        logs = {**values, "learning_rate": self.scheduler.get_last_lr()[0]}
        self.state.log_history.append({**logs, "step": self.state.global_step})
        self.control = self.callback_handler.on_log(self.args, self.state, self.control, logs)
        self.control.should_log = False
        if self.control.should_save:
            self._save()
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
            self.control.should_save = False

    def end(self) -> None:
        self.control = self.callback_handler.on_train_end(self.args, self.state, self.control)

    def _save(self) -> Path:
        folder = Path(self.args.output_dir) / f"{PREFIX}{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        if hasattr(self.model, "save_pretrained"):
            self.model.save_pretrained(str(folder))  # peft: adapter_model.safetensors
        else:
            from safetensors.torch import save_file

            save_file(self.model.state_dict(), str(folder / "model.safetensors"))
        torch.save(self.optimizer.state_dict(), folder / "optimizer.pt")
        torch.save(self.scheduler.state_dict(), folder / "scheduler.pt")
        torch.save({"python": random.getstate(), "numpy": np.random.get_state(),
                    "cpu": torch.random.get_rng_state()}, folder / "rng_state.pth")
        self.state.save_to_json(str(folder / STATE))
        return folder

    def _load(self, folder: Path) -> None:
        from safetensors.torch import load_file
        from transformers.trainer_pt_utils import safe_globals

        weights = load_file(str(next(folder.glob("*.safetensors"))))
        if hasattr(self.model, "peft_config"):
            from peft import set_peft_model_state_dict

            set_peft_model_state_dict(self.model, weights)
        else:
            self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(torch.load(folder / "optimizer.pt", weights_only=True))
        self.scheduler.load_state_dict(torch.load(folder / "scheduler.pt", weights_only=True))
        with safe_globals():
            rng = torch.load(folder / "rng_state.pth", weights_only=True)
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        torch.random.set_rng_state(rng["cpu"])
        self.state = TrainerState.load_from_json(str(folder / STATE))


__all__ = ["CallbackLoop"]
