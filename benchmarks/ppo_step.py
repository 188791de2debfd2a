"""PPO iterations on a CPU: TRL's RLOOTrainer as shipped, set up well, and ftkit's PPO loop.

TRL 1.16 ships no PPO trainer; its nearest online trainer is ``RLOOTrainer``: rollouts scored
by a reward, a KL penalty to the reference subtracted from the reward, each completion's
advantage measured against the other completions of its prompt, and a clipped probability
ratio over ``num_iterations`` updates per rollout — the loop of ``ftkit.align.ppo`` (no value
network, the per-prompt mean as baseline). Every variant works on the same budget: per
iteration ``--prompts`` prompts of notebook 09 (the shop's preference prompts), ``--samples``
completions each of at most ``--tokens`` tokens, scored by one reward model (all-MiniLM-L6-v2
trained once on the 147 training pairs, as in notebook 09, and shared through a safetensors
file), then ``--epochs`` optimiser steps on those rollouts; SmolLM2-135M-Instruct (offline
pack) with LoRA r=16 on every Linear layer, the reference being its adapter switched off.

- ``trl defaults``: ``RLOOTrainer`` with ``RLOOConfig``'s own defaults (learning rate 1e-6,
  KL weight 0.05, gradient checkpointing, bf16, advantages not normalised); only the budget
  and shape set (prompts, samples, tokens, updates per rollout, CPU);
- ``trl tuned``: the same trainer with the settings ftkit's loop trains with (its learning
  rate, KL weight, clipping, normalised advantages, constant schedule, gradient clipping at 1,
  AdamW's weight decay 0.01), no gradient checkpointing, bf16 only where the CPU has bf16
  instructions: its rewards compare with ftkit's;
- ``ftkit``: ``ftkit.align.ppo.train_ppo`` (the trainer factory's speed layer through its
  callback loop, completion-only log-probabilities, and its rollout levers).

Each variant runs in its own process (its own peak resident memory), one untimed iteration and
then ``--iterations`` timed ones, the variants taking turns over ``--repeats`` rounds. Printed:
median seconds per iteration, ratios, peak RSS, the mean reward-model score of the timed
iterations' rollouts, and the mean score of greedy replies to the 48 held-out prompts after
training (one scoring function for every variant).

    python benchmarks/ppo_step.py                   # 2 rounds x 3 timed iterations, 4 x 4
    python benchmarks/ppo_step.py --repeats 1 --iterations 2 --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

import torch  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.align import ppo, reward  # noqa: E402
from ftkit.align.params import PPOSettings, RewardConfig  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import AdapterConfig  # noqa: E402
from ftkit.data import preferences  # noqa: E402
from ftkit.models.generation import chat_batch  # noqa: E402
from ftkit.train.adapters import apply_method  # noqa: E402

VARIANTS = ("trl defaults", "trl tuned", "ftkit")
ROOT = Path(__file__).resolve().parents[1]
RM = RewardConfig(rm_epochs=2, rm_lr=1e-4, rm_max_length=64)  # notebook 09's workshop values


def split_rows() -> tuple[list[dict], list[dict]]:
    loaded = preferences.load(ROOT / "data/preferences/preferences.jsonl")
    return (preferences.select(loaded.rows, "train", 0, 0),
            preferences.select(loaded.rows, "test", 0, 0))


def train_reward_file(path: Path) -> None:
    """Notebook 09's reward model, trained once and saved for every variant to load."""
    from safetensors.torch import save_file

    rm, tok = reward.load_reward_model(RM.reward_model, 0)
    reward.train_reward_model(rm, tok, split_rows()[0], RM, seed=0)
    save_file({k: v.contiguous() for k, v in rm.state_dict().items()}, str(path))


def load_scorer(path: str):
    from safetensors.torch import load_file

    rm, tok = reward.load_reward_model(RM.reward_model, 0)
    rm.load_state_dict(load_file(path))
    return reward.scorer(rm.eval(), tok, RM.rm_max_length)


def rloo_trainer(name: str, model, tokenizer, prompts: list[str], score, settings: PPOSettings,
                 tokens: int, steps: int, folder: str):
    from datasets import Dataset
    from trl import RLOOConfig, RLOOTrainer

    def rm_reward(prompts, completions, **_) -> list[float]:
        return score([p[-1]["content"] for p in prompts],
                     [c[-1]["content"] for c in completions]).tolist()

    shape = dict(output_dir=folder, seed=0, max_steps=steps,
                 per_device_train_batch_size=settings.ppo_prompts * settings.ppo_samples,
                 num_generations=settings.ppo_samples, max_completion_length=tokens,
                 num_iterations=settings.ppo_epochs, use_cpu=not torch.cuda.is_available(),
                 logging_steps=1, save_strategy="no", report_to=[], disable_tqdm=True)
    if name == "trl tuned":
        shape.update(learning_rate=settings.ppo_lr, beta=settings.kl_coef,
                     epsilon=settings.clip_range, temperature=settings.temperature,
                     normalize_advantages=True, lr_scheduler_type="constant", warmup_steps=0,
                     max_grad_norm=1.0, weight_decay=0.01, gradient_checkpointing=False,
                     bf16=env.use_bf16(True))
    data = Dataset.from_list([{"prompt": [{"role": "user", "content": p}]} for p in prompts])
    return RLOOTrainer(model=model, reward_funcs=rm_reward, args=RLOOConfig(**shape),
                       train_dataset=data, processing_class=tokenizer)


def one_variant(name: str, rm_path: str, settings: PPOSettings, tokens: int,
                iterations: int) -> dict:
    """One untimed and ``iterations`` timed rollout-and-update iterations of ``name``."""
    import resource

    train_rows, test_rows = split_rows()
    prompts = [r["prompt"] for r in train_rows]
    score = load_scorer(rm_path)
    env.seed_everything(0)
    model, tokenizer = models.load("smollm2-135m")
    model = apply_method(model, AdapterConfig(lora_r=16, lora_alpha=32.0, lora_dropout=0.0))
    total = iterations + 1
    if name == "ftkit":
        run = dataclasses.replace(settings, ppo_iterations=total)
        history = ppo.train_ppo(model, tokenizer, prompts, score, run, tokens, seed=0)
        ends = [h["seconds"] for h in history]
        times = [b - a for a, b in zip(ends, ends[1:])]
        rewards = [h["reward"] for h in history[1:]]
    else:
        step_s, logged = [], []
        with tempfile.TemporaryDirectory() as tmp:
            trainer = rloo_trainer(name, model, tokenizer, prompts, score, settings, tokens,
                                   total * settings.ppo_epochs, tmp)
            trainer.add_callback(anchors.step_clock(step_s, logged))
            trainer.train()
        k = settings.ppo_epochs  # one rollout, then k updates: k trainer steps per iteration
        times = [sum(step_s[i:i + k]) for i in range(k, len(step_s), k)]
        # each rollout's reward is logged at its first update; the first rollout is untimed
        rewards = [r for step, r in logged if step > k and (step - 1) % k == 0]
        model = trainer.model
    model.eval()
    replies = chat_batch(model, tokenizer, [r["prompt"] for r in test_rows], tokens)
    return {"iteration_s": times, "rewards": rewards,
            "heldout_reward": float(score([r["prompt"] for r in test_rows], replies).mean()),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=2, help="optimiser steps per rollout")
    parser.add_argument("--tokens", type=int, default=16)
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--reward-file", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    settings = PPOSettings(ppo_prompts=args.prompts, ppo_samples=args.samples,
                           ppo_epochs=args.epochs)
    shape = ["--iterations", str(args.iterations), "--prompts", str(args.prompts),
             "--samples", str(args.samples), "--epochs", str(args.epochs),
             "--tokens", str(args.tokens)]
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.reward_file, settings, args.tokens,
                                     args.iterations)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        rm_path = Path(tmp) / "reward_model.safetensors"
        started = time.perf_counter()
        train_reward_file(rm_path)
        print(f"reward model trained in {time.perf_counter() - started:.0f} s", flush=True)
        for round_ in range(args.repeats):
            for v in VARIANTS:
                runs[v].append(anchors.child(__file__, ["--variant", v, "--reward-file",
                                                        str(rm_path), *shape]))
                print(f"round {round_ + 1} {v}: {runs[v][-1]['iteration_s']}", flush=True)
    result = {}
    for v, rs in runs.items():
        result[v] = {"median_iteration_s": statistics.median(t for r in rs
                                                             for t in r["iteration_s"]),
                     "mean_reward": statistics.mean(x for r in rs for x in r["rewards"]),
                     "heldout_reward": statistics.mean(r["heldout_reward"] for r in rs),
                     "peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "runs": rs}
    ftkit_s = result["ftkit"]["median_iteration_s"]
    print(f"\n{'variant':<14}{'s/iteration':>12}{'ftkit vs':>10}{'rollout reward':>16}"
          f"{'held-out reward':>17}{'peak RSS MB':>13}")
    for v, r in result.items():
        r["ftkit_vs"] = r["median_iteration_s"] / ftkit_s
        print(f"{v:<14}{r['median_iteration_s']:>12.2f}{r['ftkit_vs']:>9.2f}x"
              f"{r['mean_reward']:>16.3f}{r['heldout_reward']:>17.3f}{r['peak_rss_mb']:>13.0f}")
    tuned = result["trl tuned"]["ftkit_vs"]
    print(f"\nftkit vs TRL RLOO tuned: {tuned:.2f}x "
          f"({'goal met' if tuned >= 1.3 else 'goal missed'}: >= 1.3x); held-out reward "
          f"{result['ftkit']['heldout_reward']:.3f} vs {result['trl tuned']['heldout_reward']:.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
