"""LoRA on all layers of SmolLM2-135M vs LoRA on its top layers over cached states.

Notebook 04 trains dozens of short runs with ftkit.train.toplayers: the adapter on the top
``k`` layers, the states entering them computed once per row. This script measures, side by
side in one process on the same support records and batch size, the seconds per optimiser
step of (a) ftkit's default causal-LM path (ftkit.train.sft, LoRA on every layer) and (b) the
top-layer runs for a few ``k``, prints the ratios, and the one-time cost of the cached states.

    .venv/bin/python benchmarks/top_layers_step.py [--steps 8] [--layers 1 2 4]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("FTKIT_HEADLESS", "1")

from ftkit import models  # noqa: E402
from ftkit.core.config import AdapterConfig, TrainConfig  # noqa: E402
from ftkit.data.formatting import pairs_dataset  # noqa: E402
from ftkit.train import adapters, assistant, sft  # noqa: E402
from ftkit.train.toplayers import RunSpec, TopLayers  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rows", type=int, default=24)
    parser.add_argument("--max-length", type=int, default=128)
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()

    data = assistant.records()
    model, tokenizer = models.load(args.model)
    train = assistant.fitting(data["train"], tokenizer, args.max_length, args.rows)
    test = assistant.fitting(data["test"], tokenizer, args.max_length, 8)
    pairs = (train["instruction"], train["response"])

    full = adapters.apply_method(models.load(args.model)[0], AdapterConfig(lora_r=8))
    cfg = TrainConfig(lr=1e-3, max_steps=args.steps, batch_size=args.batch_size,
                      eval_steps=10_000, report_to="none", warmup_ratio=0.0)
    trainer = sft.make_trainer(full, tokenizer, pairs_dataset(tokenizer, *pairs, args.max_length),
                               pairs_dataset(tokenizer, test["instruction"], test["response"],
                                             args.max_length), cfg, "/tmp/ftkit-bench-full")
    t0 = time.perf_counter()
    trainer.train()
    full_step = (time.perf_counter() - t0) / args.steps
    print(f"LoRA on all {model.config.num_hidden_layers} layers: {full_step:.3f} s/step")

    for k in args.layers:
        t0 = time.perf_counter()
        task = TopLayers(model, tokenizer, pairs, (test["instruction"], test["response"]), k,
                         args.max_length)
        states = time.perf_counter() - t0
        result = task.run(RunSpec(steps=args.steps, batch_size=args.batch_size))
        print(f"LoRA on the top {k} layer(s): {result.seconds_per_step:.3f} s/step "
              f"({full_step / result.seconds_per_step:.1f}x faster per step); cached states "
              f"for {len(task.train) + len(task.eval)} rows took {states:.1f} s once")


if __name__ == "__main__":
    main()
