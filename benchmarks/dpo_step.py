"""DPO on a CPU: TRL's DPOTrainer as shipped, TRL set up well, and ftkit's DPO path, side by side.

SmolLM2-135M-Instruct (offline pack) with LoRA r=16 on every Linear layer, the shop's preference
pairs of notebook 08 (data/preferences), the same pairs, batch, steps and seed for every variant;
the run reads every training pair once (so that computing the reference once can pay):

- ``trl defaults``: TRL's ``DPOTrainer`` with ``DPOConfig``'s own defaults (learning rate 1e-6,
  gradient checkpointing, bf16, reference computed at every step); only the budget, batch and
  length set: the default anchor;
- ``trl tuned``: the same trainer as a practised user sets it up on this machine: no gradient
  checkpointing, bf16 only where the CPU has bf16 instructions, the reference log-probabilities
  computed once before training (``precompute_ref_log_probs``), ftkit's learning rate and
  schedule: the tuned anchor, whose held-out loss compares with ftkit's;
- ``ftkit``: ``ftkit.align.dpo.make_dpo_trainer`` — the same settings through the trainer
  factory's speed layer (fused LoRA updates, frozen weights recast and held in bf16 under
  autocast, the reference once, the pairs padding-free and completion positions only through
  the vocabulary head: ``ftkit.train.speed.completion_head``).

Each variant runs in its own process (its own peak resident memory), the variants taking turns
over ``--repeats`` rounds. The clock runs from building the trainer (where TRL computes the
reference log-probabilities when asked) to the end of training. Printed: pairs/s and tokens/s
(prompt + chosen and prompt + rejected, without padding), their ratios, peak RSS, and the
held-out DPO loss (the 48 test pairs, β = 0.1, policy against its adapter switched off, fp32,
the same function for every variant).

    python benchmarks/dpo_step.py                 # 1 round, batch 8, one pass over 147 pairs
    python benchmarks/dpo_step.py --repeats 2 --json out.json
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
from ftkit.align import dpo  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import AdapterConfig, TrainConfig  # noqa: E402
from ftkit.data import preferences  # noqa: E402
from ftkit.train.adapters import apply_method  # noqa: E402
from ftkit.train.sft import unwrap  # noqa: E402

VARIANTS = ("trl defaults", "trl tuned", "ftkit")
ROOT = Path(__file__).resolve().parents[1]
BETA, MAX_LENGTH = 0.1, 256


def pair_tokens(tokenizer, rows: list[dict]) -> float:
    """Mean non-padding tokens per pair: prompt + chosen and prompt + rejected."""
    total = 0
    for r in rows:
        for reply in (r["chosen"], r["rejected"]):
            batch, _ = dpo.reply_batch(tokenizer, [r["prompt"]], [reply])
            total += int(batch["attention_mask"].sum())
    return total / len(rows)


@torch.inference_mode()
def heldout_loss(model, tokenizer, rows: list[dict], beta: float = BETA) -> float:
    """Mean DPO loss on ``rows``: the policy against the same model with its adapter off."""
    def logps(prompts, replies):
        batch, mask = dpo.reply_batch(tokenizer, prompts, replies)
        logits = model(**batch).logits[:, :-1].float()
        token = torch.log_softmax(logits, -1).gather(-1, batch["input_ids"][:, 1:, None])
        return (token.squeeze(-1) * mask[:, 1:]).sum(-1)

    losses = []
    for i in range(0, len(rows), 8):
        part = rows[i:i + 8]
        prompts = [r["prompt"] for r in part]
        sides = [[r["chosen"] for r in part], [r["rejected"] for r in part]]
        pol = [logps(prompts, s) for s in sides]
        with model.disable_adapter():
            ref = [logps(prompts, s) for s in sides]
        losses.append(dpo.dpo_loss(pol[0], pol[1], ref[0], ref[1], beta)[0] * len(part))
    return float(sum(losses) / len(rows))


def trainer_for(name: str, model, tokenizer, data, steps: int, batch: int, folder: str):
    from trl import DPOConfig, DPOTrainer

    if name == "trl defaults":
        args = DPOConfig(output_dir=folder, seed=0, max_steps=steps,
                         per_device_train_batch_size=batch, max_length=MAX_LENGTH,
                         use_cpu=not torch.cuda.is_available(), save_strategy="no",
                         report_to=[], disable_tqdm=True)
        return DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    train = TrainConfig(lr=5e-4, max_steps=steps, batch_size=batch, warmup_ratio=0.0,
                        lr_scheduler="constant", report_to="none")
    if name == "trl tuned":
        args = dpo.dpo_arguments(train, BETA, folder, seed=0, max_length=MAX_LENGTH,
                                 disable_tqdm=True)
        args.precompute_ref_log_probs = dpo.reference_once(args, len(data))
        return DPOTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    return dpo.make_dpo_trainer(model, tokenizer, data, train, BETA, folder, seed=0,
                                max_length=MAX_LENGTH, disable_tqdm=True)


def one_variant(name: str, batch: int, model_name: str, n_pairs: int) -> dict:
    import resource

    loaded = preferences.load(ROOT / "data/preferences/preferences.jsonl")
    train_rows = preferences.select(loaded.rows, "train", n_pairs, 0)
    test_rows = preferences.select(loaded.rows, "test", 0, 0)
    steps = math.ceil(len(train_rows) / batch)
    env.seed_everything(0)
    model, tokenizer = models.load(model_name)
    model = apply_method(model, AdapterConfig(lora_r=16, lora_alpha=32.0, lora_dropout=0.0))
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trainer = trainer_for(name, model, tokenizer, preferences.dpo_dataset(train_rows), steps,
                              batch, tmp)
        trainer.train()
        seconds = time.perf_counter() - started
    model = unwrap(trainer).eval()
    pairs = steps * batch
    return {"seconds": seconds, "pairs_per_s": pairs / seconds,
            "tokens_per_s": pairs * pair_tokens(tokenizer, train_rows) / seconds,
            "heldout_loss": heldout_loss(model, tokenizer, test_rows),
            "precomputed_reference": bool(trainer.args.precompute_ref_log_probs),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--pairs", type=int, default=0, help="training pairs (0 = all 147)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.batch, args.model, args.pairs)))
        return
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    for round_ in range(args.repeats):
        for v in VARIANTS:
            runs[v].append(anchors.child(__file__, ["--variant", v, "--batch", str(args.batch),
                                                    "--model", args.model, "--pairs",
                                                    str(args.pairs)]))
            print(f"round {round_ + 1} {v}: {runs[v][-1]['seconds']:.1f} s", flush=True)
    result = anchors.summarise(runs, medians=("pairs_per_s",), means=("heldout_loss",))
    print(f"\n{'variant':<14}{'pairs/s':>9}{'tokens/s':>10}{'ftkit vs':>10}{'held-out loss':>15}"
          f"{'peak RSS MB':>13}{'ref once':>10}")
    for v, r in result.items():
        print(f"{v:<14}{r['pairs_per_s']:>9.2f}{r['tokens_per_s']:>10.1f}{r['ftkit_vs']:>9.2f}x"
              f"{r['heldout_loss']:>15.4f}{r['peak_rss_mb']:>13.0f}"
              f"{str(r['runs'][0]['precomputed_reference']):>10}")
    print("\n" + anchors.goal_lines(result, "trl tuned", "trl defaults", 2.5, "TRL"))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
