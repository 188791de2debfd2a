"""Reward models on a CPU: TRL's RewardTrainer as shipped, TRL set up well, and ftkit's reward
path, side by side.

all-MiniLM-L6-v2 (offline pack, 22 M parameters, every one trained), the shop's preference
pairs of notebooks 08-09 (data/preferences), the same pairs, batch, number of steps and seed for
every variant; the Bradley-Terry loss ``-log σ(r_chosen - r_rejected)`` in all three:

- ``trl defaults``: TRL's ``RewardTrainer`` with ``RewardConfig``'s own defaults (TRL 1.16:
  learning rate 1e-4 decaying linearly to 0, no warmup, no weight decay, gradients clipped at 1,
  gradient checkpointing on, bf16 autocast on, dropout switched off, fused AdamW) on
  ``AutoModelForSequenceClassification`` of the encoder with ``num_labels=1`` (BERT's [CLS]
  pooler and one linear score), loaded from the same pack folder (safetensors, no remote code).
  Rows in TRL's standard (not conversational) preference format with an explicit prompt, which
  TRL joins as the text ``prompt + reply + EOS`` and filters (not truncates) at ``max_length``.
  This tokenizer has no EOS token and TRL then raises a TypeError, so ``eos_token="[SEP]"`` is
  the one setting added to the budget, batch and length: the default anchor;
- ``trl tuned``: the same trainer as a practised user sets it up on this machine: no gradient
  checkpointing, bf16 only where the machine has bf16 instructions (``ftkit.core.env.bf16_fast``),
  ftkit's learning rate (``RewardConfig.rm_lr``, constant), weight decay 0.01 and clipping at 1,
  and pairs of similar length in a batch (``train_sampling_strategy="group_by_length"`` over a
  ``length`` column; RewardTrainer has no padding-free mode): the tuned anchor, whose held-out
  loss compares with ftkit's. Its batches hold other pairs than the other two variants';
- ``ftkit``: ``ftkit.align.reward.train_reward_model`` — mean pooling and one linear score over
  prompt and reply read as a sentence pair, through the trainer factory (path ``reward``), bf16
  autocast where the machine has bf16 instructions with the pooled states and scores in fp32,
  each step's texts in length-sorted sub-batches (``rm_chunks``); dropout stays on as the
  encoder ships it (0.1); batches shuffled by the Trainer's seeded sampler, as in ``trl defaults``.

Each variant runs in its own process (its own peak resident memory), the variants taking turns
over ``--repeats`` rounds. The clock runs from building the trainer (where TRL tokenises the
pairs) to the end of training. Printed: pairs/s and tokens/s (prompt + chosen and prompt +
rejected as the encoder tokenises a sentence pair, without padding; one count for every
variant), their ratios, peak RSS, and held-out pairwise accuracy and Bradley-Terry loss on the
48 test pairs, fp32, from one scoring function that reads each model through a callable
``(prompts, replies) -> rewards`` that feeds it text the way it was trained.

    python benchmarks/reward_step.py              # 1 round, batch 16, 3 passes over 147 pairs
    python benchmarks/reward_step.py --repeats 2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

import torch  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.align import reward  # noqa: E402
from ftkit.align.params import RewardConfig  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.data import preferences  # noqa: E402

VARIANTS = ("trl defaults", "trl tuned", "ftkit")
ROOT = Path(__file__).resolve().parents[1]
RM = RewardConfig()  # ftkit's defaults: rm_lr 5e-5, rm_max_length 96
WEIGHT_DECAY = 0.01  # as ftkit.align.reward.train_reward_model


def pair_tokens(tokenizer, rows: list[dict]) -> float:
    """Mean non-padding tokens per pair: prompt + chosen and prompt + rejected."""
    total = 0
    for r in rows:
        enc = reward.encode(tokenizer, [r["prompt"]] * 2, [r["chosen"], r["rejected"]],
                            RM.rm_max_length)
        total += int(enc["attention_mask"].sum())
    return total / len(rows)


def heldout(reward_fn, rows: list[dict]) -> dict:
    """Pairwise accuracy and mean Bradley-Terry loss of ``reward_fn`` on ``rows``."""
    prompts = [r["prompt"] for r in rows]
    chosen = reward_fn(prompts, [r["chosen"] for r in rows]).float()
    rejected = reward_fn(prompts, [r["rejected"] for r in rows]).float()
    return {"heldout_accuracy": (chosen > rejected).float().mean().item(),
            "heldout_loss": reward.pairwise_loss(chosen, rejected).item()}


def trl_scorer(model, tokenizer, batch_size: int = 32):
    """``(prompts, replies) -> rewards`` of a TRL reward model, fed as TRL trained it: the
    text ``prompt + reply + EOS``, fp32, without dropout."""
    @torch.inference_mode()
    def reward_fn(prompts: list[str], replies: list[str]) -> torch.Tensor:
        model.eval()
        texts = [p + r + tokenizer.eos_token for p, r in zip(prompts, replies)]
        out = []
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i:i + batch_size], padding=True, truncation=True,
                            max_length=RM.rm_max_length, return_tensors="pt").to(model.device)
            out.append(model(input_ids=enc["input_ids"],
                              attention_mask=enc["attention_mask"]).logits.squeeze(-1))
        return torch.cat(out).float().cpu()
    return reward_fn


def trl_dataset(tokenizer, rows: list[dict]):
    """Standard preference rows with an explicit prompt, and each pair's token count (the
    ``length`` column that length grouping reads)."""
    from datasets import Dataset

    def length(r):
        return sum(len(tokenizer(r["prompt"] + r[k] + tokenizer.sep_token)["input_ids"])
                   for k in ("chosen", "rejected"))
    return Dataset.from_list([{"prompt": r["prompt"], "chosen": r["chosen"],
                               "rejected": r["rejected"], "length": length(r)} for r in rows])


def trl_settings(name: str) -> dict:
    """What each TRL variant sets beyond the budget, batch and length."""
    tuned = {"gradient_checkpointing": False, "bf16": env.bf16_fast(),
             "learning_rate": RM.rm_lr, "lr_scheduler_type": "constant", "warmup_steps": 0,
             "weight_decay": WEIGHT_DECAY, "max_grad_norm": 1.0,
             "train_sampling_strategy": "group_by_length", "remove_unused_columns": False}
    return {"trl defaults": {}, "trl tuned": tuned}[name]


def train_trl(name: str, model_name: str, rows: list[dict], steps: int, batch: int) -> dict:
    from transformers import AutoModelForSequenceClassification
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    tokenizer = models.load_tokenizer(model_name)
    model = AutoModelForSequenceClassification.from_pretrained(
        models.resolve(model_name), num_labels=1, use_safetensors=True, trust_remote_code=False)
    data = trl_dataset(tokenizer, rows)
    with tempfile.TemporaryDirectory() as tmp:
        args = TRLRewardConfig(output_dir=tmp, seed=0, max_steps=steps,
                               per_device_train_batch_size=batch, max_length=RM.rm_max_length,
                               use_cpu=not torch.cuda.is_available(), save_strategy="no",
                               report_to=[], disable_tqdm=True, eos_token=tokenizer.sep_token,
                               **trl_settings(name))
        started = time.perf_counter()
        trainer = RewardTrainer(model=model, args=args, train_dataset=data,
                                processing_class=tokenizer)
        trainer.train()
        seconds = time.perf_counter() - started
    return {"seconds": seconds, "steps": trainer.state.global_step,
            "pairs_kept": len(trainer.train_dataset), "bf16": bool(args.bf16),
            "reward_fn": trl_scorer(trainer.model, tokenizer), "tokenizer": tokenizer}


def train_ftkit(model_name: str, rows: list[dict], epochs: int, batch: int) -> dict:
    model, tokenizer = reward.load_reward_model(model_name, seed=0)
    cfg = RewardConfig(reward_model=model_name, rm_epochs=epochs, rm_lr=RM.rm_lr,
                       rm_batch_size=batch, rm_max_length=RM.rm_max_length)
    started = time.perf_counter()
    losses = reward.train_reward_model(model, tokenizer, rows, cfg, seed=0)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "steps": len(losses), "pairs_kept": len(rows),
            "bf16": env.use_bf16(cfg.rm_bf16),
            "reward_fn": reward.scorer(model, tokenizer, cfg.rm_max_length),
            "tokenizer": tokenizer}


def one_variant(name: str, batch: int, epochs: int, model_name: str, n_pairs: int) -> dict:
    import resource

    loaded = preferences.load(ROOT / "data/preferences/preferences.jsonl")
    train_rows = preferences.select(loaded.rows, "train", n_pairs, 0)
    test_rows = preferences.select(loaded.rows, "test", 0, 0)
    steps = epochs * math.ceil(len(train_rows) / batch)
    env.seed_everything(0)
    run = (train_ftkit(model_name, train_rows, epochs, batch) if name == "ftkit"
           else train_trl(name, model_name, train_rows, steps, batch))
    if (run["steps"], run["pairs_kept"]) != (steps, len(train_rows)):
        raise RuntimeError(f"{name}: {run['steps']} steps over {run['pairs_kept']} pairs, "
                           f"expected {steps} over {len(train_rows)}")
    pairs = epochs * len(train_rows)
    return {"seconds": run["seconds"], "steps": steps, "bf16": run["bf16"],
            "pairs_per_s": pairs / run["seconds"],
            "tokens_per_s": pairs * pair_tokens(run["tokenizer"], train_rows) / run["seconds"],
            **heldout(run["reward_fn"], test_rows),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_child(variant: str, args) -> dict:
    return anchors.child(__file__, ["--variant", variant, "--batch", str(args.batch), "--epochs",
                                    str(args.epochs), "--model", args.model, "--pairs",
                                    str(args.pairs)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=RM.rm_batch_size)
    parser.add_argument("--epochs", type=int, default=RM.rm_epochs)
    parser.add_argument("--model", default="minilm-l6")
    parser.add_argument("--pairs", type=int, default=0, help="training pairs (0 = all 147)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.batch, args.epochs, args.model,
                                     args.pairs)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for round_ in range(args.repeats):
        for v in VARIANTS:
            runs[v].append(run_child(v, args))
            print(f"round {round_ + 1} {v}: {runs[v][-1]['seconds']:.1f} s", flush=True)
    result = anchors.summarise(runs, medians=("pairs_per_s",),
                               means=("heldout_accuracy", "heldout_loss"))
    print(f"\n{runs['ftkit'][0]['steps']} steps of {args.batch} pairs per variant")
    print(f"{'variant':<14}{'pairs/s':>9}{'tokens/s':>10}{'ftkit vs':>10}{'held-out acc':>14}"
          f"{'held-out loss':>15}{'peak RSS MB':>13}{'bf16':>6}")
    for v, r in result.items():
        print(f"{v:<14}{r['pairs_per_s']:>9.2f}{r['tokens_per_s']:>10.1f}{r['ftkit_vs']:>9.2f}x"
              f"{r['heldout_accuracy']:>14.3f}{r['heldout_loss']:>15.4f}{r['peak_rss_mb']:>13.0f}"
              f"{str(r['runs'][0]['bf16']):>6}")
    print("\n" + anchors.goal_lines(result, "trl tuned", "trl defaults", 2.5, "TRL"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
