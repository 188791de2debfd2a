"""A short, deterministic LoRA run on tiny-llama with checkpoints, for tests/train/test_checkpoints.py.

The test imports :func:`run` for the uninterrupted reference and starts this file as a process
(``python tests/train/_resume_worker.py OUT_DIR [--resume] [--step-delay S]``, headless) that it
SIGKILLs mid-run and then resumes. The process writes ``OUT_DIR/history.json`` (the Trainer's
log history) when training has finished.

16 examples in batches of 4 make 4 optimiser steps per epoch, and checkpoints come every 4
steps, i.e. at epoch ends: ftkit trains with transformers' length-grouped sampler, which draws
each epoch's order from torch's global generator, and the Trainer restores that generator
before an epoch starts but only after it has fast-forwarded through the batches of a resumed
epoch, so only a checkpoint at an epoch end replays the data order exactly.
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from transformers import TrainerCallback

from ftkit.data import formatting

STEPS, SAVE_STEPS = 40, 4
PROMPTS = [f"Question {i}: what is {i} plus {i}?" + " Please answer." * (i % 3) for i in range(16)]
COMPLETIONS = [f" The answer is {2 * i}." for i in range(16)]


class StepDelay(TrainerCallback):
    """Sleeps after each optimiser step, so a test can kill the process mid-run."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_end(self, args, state, control, **kwargs):
        time.sleep(self.seconds)


def make(out: str | os.PathLike, step_delay: float = 0.0, save_steps: int = SAVE_STEPS):
    """The Trainer: fixed seed, fp32 (no bf16), dropout 0, checkpoints every ``save_steps``."""
    from ftkit import models
    from ftkit.core import env
    from ftkit.core.config import AdapterConfig, TrainConfig
    from ftkit.train import adapters, sft

    env.seed_everything(0)
    model, tok = models.load("tiny-llama")
    model = adapters.apply_method(model, AdapterConfig(peft_method="lora", lora_r=4,
                                                       lora_dropout=0.0))
    ds = formatting.pairs_dataset(tok, PROMPTS, COMPLETIONS, max_length=48)
    train = TrainConfig(lr=5e-3, batch_size=4, max_steps=STEPS, eval_steps=20, warmup_ratio=0.1,
                        bf16=False)
    return sft.make_trainer(model, tok, ds, ds.select(range(8)), train, str(out), seed=0,
                            save_steps=save_steps,
                            callbacks=[StepDelay(step_delay)] if step_delay else None)


def run(out: str | os.PathLike, resume: bool = False, step_delay: float = 0.0,
        save_steps: int = SAVE_STEPS) -> list[dict]:
    """Train (resuming from the newest valid checkpoint when ``resume``); the log history."""
    from ftkit.train import sft

    trainer = make(out, step_delay, save_steps)
    sft.train(trainer, resume=resume)
    return trainer.state.log_history


if __name__ == "__main__":
    os.environ["FTKIT_HEADLESS"] = "1"
    out_dir = sys.argv[1]
    delay = float(sys.argv[sys.argv.index("--step-delay") + 1]) if "--step-delay" in sys.argv \
        else 0.0
    history = run(out_dir, resume="--resume" in sys.argv, step_delay=delay)
    Path(out_dir, "history.json").write_text(json.dumps(history))
