"""Where a training step's time goes: TRL at its defaults against ftkit, op by op (torch.profiler).

The paths whose ratio to the library's defaults misses its target (SFT + LoRA, DPO + LoRA, the
reward model) each run twice, every run in its own process: the library trainer as
``train_throughput.py``, ``dpo_step.py`` and ``reward_step.py`` build it at its defaults, and
ftkit's path, on the same model, data, batch and step count. Each run trains once on two batches
(the kernels' one-time setup), then for the step count without the profiler (its plain time),
then again under ``torch.profiler``; the self time of every operator is summed into kinds:

- matmul: ``mm``/``addmm``/``bmm`` and their kin (the work the FLOP count describes);
- attention: the fused attention kernels and the eager softmax;
- vocabulary head and loss: ``log_softmax``, ``nll_loss``, ``logsumexp`` and their backward;
- casts and copies: dtype casts, ``copy_``, ``clone``, ``cat``, embedding look-ups;
- optimiser: the fused or for-each Adam(W) kernels;
- other operators: norms, activations, elementwise arithmetic, reductions;
- Python and framework: the wall time no operator accounts for (the trainer's loop, data
  collation, autograd's bookkeeping, the profiler's own cost).

Printed per path and variant: seconds per step in each kind, and the *ceiling*: the default's
seconds per step over ftkit's matmul seconds per step, the ratio ftkit would reach if everything
but its matmuls took no time at all. A target above the ceiling cannot be met by removing
overhead; only by fewer or faster matmuls. The kinds are measured under the profiler, which
adds a cost per operator (more for a step of many small operators); the plain times and their
ratio are printed beside them.

    python benchmarks/step_profile.py                       # sft, dpo and reward
    python benchmarks/step_profile.py --paths dpo --steps 6 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

import torch  # noqa: E402

from ftkit.core import env  # noqa: E402

PATHS = ("sft", "dpo", "reward")
VARIANTS = ("defaults", "ftkit")
PREFS = HERE.parent / "data/preferences/preferences.jsonl"
TARGETS = {"sft": 3.5, "dpo": 2.5, "reward": 2.5}  # the ratios against the defaults
TOP = 15  # the operators with the most self time, kept per run
KINDS = ("matmul", "attention", "vocabulary head and loss", "casts and copies", "optimiser",
         "other operators", "Python and framework")
MATMUL = ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::addbmm",
          "aten::_addmm_activation", "aten::matmul", "aten::linear", "aten::_weight_int8pack_mm")
LOSS = ("log_softmax", "nll_loss", "logsumexp", "cross_entropy")
COPIES = ("aten::copy_", "aten::_to_copy", "aten::to", "aten::clone", "aten::cat",
          "aten::contiguous", "aten::embedding", "aten::index_select", "aten::stack",
          "aten::embedding_dense_backward", "aten::_local_scalar_dense", "aten::fill_",
          "aten::zero_", "aten::zeros", "aten::empty")


def kind(name: str) -> str:
    """The kind of one profiler event (by operator name); events that are not operators (the
    trainer's and autograd's own annotations) count as framework time."""
    if not name.startswith(("aten::", "mkldnn::", "torchao::")):
        return "Python and framework"
    if name in MATMUL or name.startswith("mkldnn::") and "linear" in name:
        return "matmul"
    if "scaled_dot_product" in name or "attention" in name or name in (
            "aten::_softmax", "aten::softmax", "aten::_softmax_backward_data"):
        return "attention"
    if any(k in name for k in LOSS):
        return "vocabulary head and loss"
    if name in COPIES or name.startswith("aten::_foreach_zero"):
        return "casts and copies"
    if name.startswith(("aten::_foreach", "aten::_fused_adam")):
        return "optimiser"
    return "other operators"


def profiled(train) -> dict:
    """Run ``train()`` under torch.profiler: wall seconds and seconds per kind."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        started = time.perf_counter()
        steps = train()
        wall = time.perf_counter() - started
    seconds = dict.fromkeys(KINDS, 0.0)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    for event in events:
        seconds[kind(event.key)] += event.self_cpu_time_total / 1e6
    top = [[e.key, kind(e.key), e.self_cpu_time_total / 1e6 / steps] for e in events[:TOP]]
    counted = sum(seconds.values())
    seconds["Python and framework"] += max(wall - counted, 0.0)
    return {"wall": wall, "steps": steps, "seconds": seconds, "top": top}


# ---------------------------------------------------------------- the three paths
def preference_rows(n: int) -> list[dict]:
    """The first ``n`` training pairs of notebooks 08-09, as dpo_step and reward_step read them."""
    from ftkit.data import preferences

    return preferences.select(preferences.load(PREFS).rows, "train", n, 0)


def sft_run(variant: str, steps: int, batch: int, warm: bool, folder: str):
    import train_throughput as tt

    n = (2 if warm else steps) * batch
    tok, rows, pairs = tt.examples(max(n, 3), "smollm2-135m", seed=0)
    if variant == "defaults":
        trainer = tt.run_trl("smollm2-135m", pairs[:n], n // batch, batch, 16, folder)[0]
    else:
        trainer = tt.run_ftkit("smollm2-135m", tok, rows[:n], n // batch, batch, 16, folder)[0]
    return lambda: trainer.train().global_step  # as train_throughput times it: training


def dpo_run(variant: str, steps: int, batch: int, warm: bool, folder: str):
    import dpo_step

    from ftkit import models
    from ftkit.core.config import AdapterConfig
    from ftkit.data import preferences
    from ftkit.train.adapters import apply_method

    rows = preference_rows((2 if warm else steps) * batch)
    env.seed_everything(0)
    model, tokenizer = models.load("smollm2-135m")
    model = apply_method(model, AdapterConfig(lora_r=16, lora_alpha=32.0, lora_dropout=0.0))
    name = "trl defaults" if variant == "defaults" else "ftkit"
    n_steps = math.ceil(len(rows) / batch)

    def train() -> int:  # as dpo_step times it: building the trainer, then training
        trainer = dpo_step.trainer_for(name, model, tokenizer, preferences.dpo_dataset(rows),
                                       n_steps, batch, folder)
        return trainer.train().global_step
    return train


def reward_run(variant: str, steps: int, batch: int, warm: bool, folder: str):
    import reward_step

    rows = preference_rows((2 if warm else steps) * batch)
    env.seed_everything(0)
    n_steps = math.ceil(len(rows) / batch)

    def train() -> int:  # as reward_step times it: building the trainer, then training
        run = (reward_step.train_ftkit("minilm-l6", rows, 1, batch) if variant == "ftkit"
               else reward_step.train_trl("trl defaults", "minilm-l6", rows, n_steps, batch))
        return run["steps"]
    return train


RUNS = {"sft": (sft_run, 8), "dpo": (dpo_run, 8), "reward": (reward_run, 16)}


def one_run(path: str, variant: str, steps: int) -> dict:
    build, batch = RUNS[path]
    with tempfile.TemporaryDirectory() as folder:
        build(variant, steps, batch, True, folder)()
        env.release_memory()
        train = build(variant, steps, batch, False, folder)
        started = time.perf_counter()
        train()
        plain = time.perf_counter() - started
        env.release_memory()
        return {"path": path, "variant": variant, "plain_wall": plain,
                **profiled(build(variant, steps, batch, False, folder))}


def per_step(run: dict) -> dict[str, float]:
    return {k: v / run["steps"] for k, v in run["seconds"].items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS))
    parser.add_argument("--steps", type=int, default=8, help="profiled optimiser steps")
    parser.add_argument("--run", nargs=2, help=argparse.SUPPRESS)  # path variant, in a child
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.run:
        print(json.dumps(one_run(*args.run, args.steps)))
        return
    print(f"bf16 matmul instructions: {'yes' if env.bf16_fast() else 'no'}; "
          f"torch threads {torch.get_num_threads()}", flush=True)
    runs = []
    for path in args.paths:
        for variant in VARIANTS:
            runs.append(anchors.child(__file__, ["--run", path, variant,
                                                 "--steps", str(args.steps)]))
            print(f"{path} {variant}: {runs[-1]['steps']} steps in {runs[-1]['wall']:.1f} s",
                  flush=True)
    short = {k: k.split()[0] for k in KINDS}
    print(f"\n{'path':<8}{'variant':<10}{'plain':>8}{'profiled':>9}"
          + "".join(f"{short[k]:>11}" for k in KINDS))
    for r in runs:
        p = per_step(r)
        print(f"{r['path']:<8}{r['variant']:<10}{r['plain_wall'] / r['steps']:>8.2f}"
              f"{r['wall'] / r['steps']:>9.2f}" + "".join(f"{p[k]:>11.3f}" for k in KINDS))
    print("\n(seconds per step, plain and under the profiler; the kinds under the profiler: "
          + ", ".join(KINDS) + ")\n")
    by = {(r["path"], r["variant"]): r for r in runs}
    for path in args.paths:
        default, ours = by[path, "defaults"], by[path, "ftkit"]
        d_step, o_step = (r["plain_wall"] / r["steps"] for r in (default, ours))
        d_prof, o_prof = (r["wall"] / r["steps"] for r in (default, ours))
        o_mm = per_step(ours)["matmul"]
        ceiling = d_step / o_mm
        print(f"{path}: ftkit {d_step / o_step:.2f}x the defaults ({d_prof / o_prof:.2f}x under "
              f"the profiler); its matmuls {o_mm:.3f} s of its {o_prof:.3f} s profiled step "
              f"({o_mm / o_prof:.0%}); ceiling {ceiling:.2f}x against the {TARGETS[path]}x "
              f"target ({'above' if ceiling >= TARGETS[path] else 'below'} it)")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2))


if __name__ == "__main__":
    main()
