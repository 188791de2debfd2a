"""GRPO step time on a CPU: TRL's GRPOTrainer as shipped vs the kit's rollout speed layer.

One process, SmolLM2-135M-Instruct (offline pack), LoRA r=16 on every Linear layer, the
support-record task of notebook 18 (data/extraction_tasks), the same prompts, group size,
completion length and seed for every variant. Variants (``ftkit.align.grpo``):

- ``trl defaults``: TRL's ``GRPOTrainer`` with ``GRPOConfig``'s own defaults (learning rate
  1e-6, gradient checkpointing, bf16), only the budget and shape set: the default anchor;
- ``trl``: TRL's ``GRPOTrainer`` with peft's LoRA layers and the settings the kit trains with
  (no gradient checkpointing, bf16 autocast only where the CPU has bf16 instructions, its
  learning rate, loss and reward scaling), nothing switched: the tuned anchor, whose rewards
  compare with ftkit's;
- ``+completion_logits``: log-probabilities from the vocabulary head at completion positions
  only (TRL's chunked head projects every position where Triton is missing);
- ``+merged_rollouts``: the LoRA update merged into the weights while sampling;
- ``+shared_prompts``: each prompt computed once for its group's completions;
- ``ftkit``: the three levers and the fused LoRA layers (``ftkit.train.speed.fused_lora``), the
  path ``train_grpo`` uses.

Each variant runs in its own process (so that each peak resident memory is its own), one
untimed step and then ``--steps`` timed ones; the variants take turns over ``--repeats``
rounds, so that a noisy machine slows all of them alike. Printed: median step time, its ratio
to ``trl``, peak resident memory, and the mean reward of the timed steps (same seed and data:
the first step's rollouts agree, later ones drift apart as the updates differ in rounding).

    python benchmarks/grpo_step.py                   # 2 rounds x 2 timed steps, 4 prompts x 4
    python benchmarks/grpo_step.py --repeats 3 --steps 3 --json out.json
    python benchmarks/grpo_step.py --only ftkit     # the two anchors and ftkit only
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

from ftkit import models  # noqa: E402
from ftkit.align import grpo  # noqa: E402
from ftkit.align.params import GRPOSettings  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import AdapterConfig  # noqa: E402
from ftkit.train.adapters import apply_method  # noqa: E402
from ftkit.train.speed.fused_lora import use_fused_lora  # noqa: E402

# (completion_logits, merged_rollouts, shared_prompts, fused LoRA); None: TRL's own defaults
VARIANTS = {"trl defaults": None,
            "trl": (False, False, False, False), "+completion_logits": (True, False, False, False),
            "+merged_rollouts": (False, True, False, False),
            "+shared_prompts": (False, False, True, False), "ftkit": (True, True, True, True)}


def defaults_trainer(settings: GRPOSettings, rows, steps: int, folder: str, model, tokenizer):
    """TRL's GRPOTrainer with GRPOConfig's own defaults (learning rate 1e-6, gradient
    checkpointing, bf16, its loss and reward scaling); only the budget and shape are the
    benchmark's: steps, prompts x group size, completion length, CPU."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=folder, seed=0, max_steps=steps,
                      per_device_train_batch_size=settings.prompts_per_step * settings.group_size,
                      num_generations=settings.group_size,
                      max_completion_length=settings.max_completion,
                      use_cpu=not torch.cuda.is_available(), logging_steps=1,
                      save_strategy="no", report_to=[], disable_tqdm=True)
    return GRPOTrainer(model=model, reward_funcs=grpo.rewards_by_name(settings.rewards), args=args,
                       train_dataset=grpo.grpo_dataset(rows), processing_class=tokenizer)


def trainer_for(levers: tuple[bool, bool, bool, bool] | None, settings: GRPOSettings, rows,
                steps: int, folder: str):
    env.seed_everything(0)
    model, tokenizer = models.load("smollm2-135m")
    model = apply_method(model, AdapterConfig(lora_r=16, lora_alpha=32.0, lora_dropout=0.0))
    if levers is None:
        return defaults_trainer(settings, rows, steps, folder, model, tokenizer)
    logits, merged, shared, fused = levers
    if fused:
        use_fused_lora(model)
    cls = grpo.rollout_trainer_class(logits, merged, shared)
    args = grpo.grpo_arguments(settings, folder, seed=0, max_steps=steps, disable_tqdm=True)
    return cls(model=model, reward_funcs=grpo.rewards_by_name(settings.rewards), args=args,
               train_dataset=grpo.grpo_dataset(rows), processing_class=tokenizer)


def one_variant(name: str, settings: GRPOSettings, steps: int) -> dict:
    """Train ``name`` for one untimed and ``steps`` timed steps; its step times and rewards."""
    import resource

    root = Path(__file__).resolve().parents[1]
    rows = grpo.load_records(root / "data/extraction_tasks/train.jsonl")
    times, logged = [], []

    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(VARIANTS[name], settings, rows, steps + 1, tmp)
        trainer.add_callback(anchors.step_clock(times, logged))
        trainer.train()
    return {"steps_s": times[1:], "rewards": [r for _, r in logged][1:],
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--only", nargs="+", choices=list(VARIANTS),
                        help="these variants (the two anchors and ftkit are always run)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = GRPOSettings(prompts_per_step=args.prompts, group_size=args.group,
                            max_completion=args.tokens, kl_beta=0.04)
    if args.variant:
        print(json.dumps(one_variant(args.variant, settings, args.steps)))
        return
    wanted = set(args.only or VARIANTS) | {"trl defaults", "trl", "ftkit"}
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS if v in wanted}
    for round_ in range(args.repeats):
        for v in runs:
            child = subprocess.run(
                [sys.executable, __file__, "--variant", v, "--steps", str(args.steps),
                 "--prompts", str(args.prompts), "--group", str(args.group),
                 "--tokens", str(args.tokens)], capture_output=True, text=True, check=True)
            runs[v].append(json.loads(child.stdout.strip().splitlines()[-1]))
            print(f"round {round_ + 1} {v}: {runs[v][-1]['steps_s']}", flush=True)
    base = statistics.median(t for r in runs["trl"] for t in r["steps_s"])
    default = statistics.median(t for r in runs["trl defaults"] for t in r["steps_s"])
    result = {}
    print(f"{'variant':<22}{'median step s':>14}{'vs trl':>8}{'vs defaults':>12}"
          f"{'peak RSS MB':>13}{'mean reward':>13}")
    for v, rs in runs.items():
        med = statistics.median(t for r in rs for t in r["steps_s"])
        peak = max(r["peak_rss_mb"] for r in rs)
        reward = statistics.mean(x for r in rs for x in r["rewards"])
        result[v] = {"median_step_s": med, "speedup": base / med, "vs_defaults": default / med,
                     "peak_rss_mb": peak, "mean_reward": reward, "runs": rs}
        print(f"{v:<22}{med:>14.1f}{base / med:>8.2f}{default / med:>12.2f}{peak:>13.0f}"
              f"{reward:>13.3f}")
    ratio = base / result["ftkit"]["median_step_s"]
    print(f"\nftkit vs its tuned anchor (trl: TRL's trainer with the kit's settings): {ratio:.2f}x "
          f"({'goal met' if ratio >= 1.3 else 'goal missed'}: >= 1.3x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
