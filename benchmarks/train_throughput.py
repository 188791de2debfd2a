"""Training throughput on a CPU: TRL's SFTTrainer defaults vs ftkit's default path, side by side.

One process, one model (SmolLM2-135M-Instruct from the offline pack), LoRA r=16 on every Linear
layer, the same instruction examples (data/instruct_tasks/), the same number of optimiser steps
and batch size. Each variant starts from a freshly loaded model and the same adapter
initialisation (seed 0); between variants memory is handed back to the OS so that each peak is
its own. Every trainer draws its batches with the same seed (``--seed``, default 0), so TRL's
runs and ftkit's see the examples in the same order. Two untimed steps of each path run first,
so that no variant pays the one-time setup of the matmul kernels. Printed per variant:

- non-padding tokens per second (tokens of the examples trained on / training wall time);
- the ratio to TRL's defaults;
- peak resident memory added while loading and training (sampled every 20 ms);
- model FLOP/s (4 x parameters x tokens/s: every variant trains LoRA on a frozen base, whose
  weights need the forward pass and the input gradients but no weight gradients; full
  fine-tuning would be 6 x) as a share of this machine's bf16 matmul peak,
  measured in the same run, and of the peak of the dtype the variant computes in (on a CPU
  without bf16 matmul instructions ftkit computes in fp32: ftkit.core.env.bf16_fast);
- median optimiser-step time, and the loss on the same held-out batches after training (the
  levers must not change what is learned).

TRL is measured twice more: with bf16 off where it is emulated, and *tuned* as a practised user
would set it on this machine (``tuned_trl``: no gradient checkpointing, padding-free batches,
bf16 only where native, ftkit's learning rate and schedule), the anchor whose held-out loss
compares with ftkit's.

The ftkit variants switch its levers off one at a time (bf16 autocast, label-only logits) or
add one it does not use by default (length-grouped batches; ``--compile``: ``torch.compile``),
so each lever's effect is measured, not assumed. TRL keeps all its defaults (learning rate
2e-5, gradient checkpointing, bf16), so its held-out loss does not compare; the tuned anchor's does.
Where the CPU has no bf16 matmul instructions, TRL's defaults still train in (emulated) bf16,
so TRL is also measured with bf16 off, the run of TRL's defaults is shortened to 3 steps
(``--trl-steps``), and the levers that act only under autocast are skipped.
DoRA runs on ftkit's default path (its fast DoRA forward, ftkit.train.dora.use_fast_dora) for
the DoRA/LoRA step-time ratio, and once with peft's own DoRA forward to measure that lever.

    python benchmarks/train_throughput.py                # 20 steps x 8 examples
    python benchmarks/train_throughput.py --steps 20 --compile --json out.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("FTKIT_HEADLESS", "1")

import torch  # noqa: E402

import ftkit as ft  # noqa: E402
from ftkit.core import env
from ftkit.train import finetune
from ftkit.core.config import AdapterConfig, TrainConfig  # noqa: E402
from ftkit.data import instruct  # noqa: E402
from ftkit.data.formatting import prompt_completion  # noqa: E402
from ftkit.train import adapters, sft  # noqa: E402

LEVERS = {  # variant name -> (what changes against ftkit's default, keyword overrides)
    "ftkit default": ({}, {}),
    "ftkit without bf16 autocast": ({"bf16": False}, {}),
    "ftkit with padded batches": ({}, {"packing": False}),
    "ftkit with autocast's weight copies": ({}, {"recast_frozen": False}),
    "ftkit casting frozen weights every step": ({}, {"hold_frozen_bf16": False}),
    "ftkit with full-sequence logits": ({}, {"label_only_logits": False}),
    "ftkit with peft's LoRA forward": ({}, {"fused_lora": False}),
    "ftkit with length grouping": ({}, {"train_sampling_strategy": "group_by_length"}),
    "ftkit with bf16 frozen base weights": ({}, {"frozen_bf16": True}),
}
# levers that act only under bf16 autocast: the same as the default where ftkit computes in fp32
AUTOCAST_ONLY = {"ftkit without bf16 autocast", "ftkit with autocast's weight copies",
                 "ftkit casting frozen weights every step",
                 "ftkit with bf16 frozen base weights"}
PEFT_DORA = "DoRA with peft's forward"
TRL_FP32 = "TRL SFTTrainer defaults, bf16 off"
TRL_TUNED = "TRL SFTTrainer tuned"
FTKIT_LR = 2e-4  # the learning rate of every ftkit variant, and of the tuned TRL anchor


def tuned_trl(fast: bool) -> dict:
    """SFTConfig changes a practised user makes on this machine: no gradient checkpointing
    (135M parameters leave memory to spare), bf16 only where the CPU computes it natively,
    padding-free batches (transformers' sdpa attention keeps each flattened example apart
    through its position ids; no truncation, which padding-free TRL does not apply and these
    short examples never reach), and ftkit's learning rate, schedule, warm-up, clipping and
    weight decay, so that the held-out losses compare."""
    d = TrainConfig()
    return {"gradient_checkpointing": False, "bf16": fast, "padding_free": True, "max_length": None,
            "learning_rate": FTKIT_LR, "lr_scheduler_type": d.lr_scheduler,
            "warmup_steps": d.warmup_ratio, "weight_decay": d.weight_decay,
            "max_grad_norm": d.max_grad_norm}
SHORT = {"bfloat16": "bf16", "float32": "fp32"}
AGAIN = "ftkit default, again at the end"


def examples(n: int, model_name: str, seed: int):
    """``n`` training rows over the three tasks, as chat-template prompt/completion strings."""
    rows = instruct.load_tasks(ROOT / "data/instruct_tasks/tasks.jsonl")
    rows = instruct.select(rows, "extract,date,route", "train", -(-n // 3), seed)[:n]
    tok = ft.load_tokenizer(model_name)
    pairs = [prompt_completion(tok, r["instruction"], r["response"], "chat") for r in rows]
    return tok, rows, pairs


FLOPS_PER_PARAM_TOKEN = 4  # frozen base + LoRA: forward 2N, input gradients 2N


def run_trl(model_name: str, pairs: list[dict], steps: int, batch: int, r: int, out: str,
            seed: int = 0, **changes):
    """TRL SFTTrainer with its default SFTConfig (plus use_cpu=True and the step budget);
    ``changes`` (e.g. ``bf16=False``) go to the SFTConfig."""
    from datasets import Dataset
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    model, tok = ft.load(model_name)
    torch.manual_seed(0)
    args = SFTConfig(output_dir=out, use_cpu=True, max_steps=steps, seed=seed,
                     per_device_train_batch_size=batch, report_to=[], save_strategy="no", **changes)
    trainer = SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(pairs),
                         processing_class=tok,
                         peft_config=LoraConfig(r=r, lora_alpha=2 * r,
                                                target_modules="all-linear",
                                                task_type="CAUSAL_LM"))
    tokens = sum(len(x) for x in trainer.train_dataset["input_ids"])
    return trainer, tokens, {"gradient_checkpointing": args.gradient_checkpointing,
                             "bf16": args.bf16, "learning_rate": args.learning_rate,
                             "padding_free": args.padding_free}


def run_ftkit(model_name: str, tok, rows: list[dict], steps: int, batch: int, r: int,
              out: str, method: str = "lora", train_changes: dict | None = None,
              overrides: dict | None = None, fast_dora: bool = True, seed: int = 0):
    """ftkit's default path: make_trainer from a TrainConfig, LoRA/DoRA from AdapterConfig.

    ``fast_dora=False`` keeps peft's own DoRA forward (ftkit switches it to
    ftkit.train.dora.use_fast_dora by default)."""
    model, _ = ft.load(model_name)
    torch.manual_seed(0)  # the same adapter initialisation in every variant
    cfg = AdapterConfig(peft_method=method, lora_r=r, lora_alpha=2 * r, lora_dropout=0.0)
    model = (adapters.apply_method(model, cfg) if fast_dora or method != "dora"
             else adapters._lora(model, cfg, use_dora=True, fast_dora=False))
    ds = instruct.sft_dataset(tok, rows, 512)
    # report_to="none": the anchors write no event files either
    train = TrainConfig(**{"lr": FTKIT_LR, "max_steps": steps, "batch_size": batch,
                           "eval_steps": 10 ** 6, "report_to": "none", **(train_changes or {})})
    trainer = sft.make_trainer(model, tok, ds, None, train, out, seed=seed, title=method,
                               callbacks=[], **(overrides or {}))
    return trainer, sum(len(x) for x in ds["input_ids"]), {}


@torch.no_grad()
def heldout_loss(trainer, batches: list[dict]) -> float:
    """Loss on the same held-out batches for every variant (fp32, no autocast): what the run
    learned, independent of the order in which it saw its training batches."""
    from ftkit.train.speed.fastloss import label_only_loss

    model = sft.unwrap(trainer).eval()
    losses = [float(label_only_loss(model, **b)) for b in batches]
    return sum(losses) / len(losses)


def heldout_batches(tok, n: int = 24, batch: int = 8) -> list[dict]:
    from transformers import DataCollatorForSeq2Seq

    rows = instruct.select(instruct.load_tasks(ROOT / "data/instruct_tasks/tasks.jsonl"),
                           "extract,date,route", "test", n // 3, 0)
    ds = instruct.sft_dataset(tok, rows, 512)
    collate = DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100)
    return [{k: v for k, v in collate([ds[j] for j in range(i, min(i + batch, len(ds)))]).items()
             if k in ("input_ids", "attention_mask", "labels")} for i in range(0, len(ds), batch)]


def measure(name: str, build, n_params: int, peaks: dict[str, float],
            heldout: list[dict]) -> dict:
    """Build (load the model inside the memory window), train, and time one variant."""
    timer = finetune.StepTimer()
    with env.MemoryTracker() as mem:
        trainer, tokens, notes = build()
        trainer.add_callback(timer)
        t0 = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - t0
    tps = tokens / seconds
    gflops = FLOPS_PER_PARAM_TOKEN * n_params * tps / 1e9
    dtype = "bfloat16" if trainer.args.bf16 else "float32"
    row = {"variant": name, "tokens": tokens, "seconds": round(seconds, 2),
           "tokens_per_s": round(tps, 1), "step_s": round(timer.median, 3),
           "peak_rss_mb": round(mem.delta_mb), "computes_in": dtype,
           "mfu_bf16": round(gflops / peaks["bfloat16"], 4),
           "mfu_own": round(gflops / peaks[dtype], 4),
           "train_loss": round(result.training_loss, 4),
           "heldout_loss": round(heldout_loss(trainer, heldout), 4), **notes}
    print(json.dumps(row), flush=True)
    del trainer
    env.release_memory()
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--trl-steps", type=int, help="steps of the run of TRL's defaults "
                        "(default: --steps; 3 where bf16 is emulated, which TRL still uses)")
    parser.add_argument("--seed", type=int, default=0, help="the trainers' seed (batch order)")
    parser.add_argument("--only", nargs="+", default=[], help="variant names to run (quoted)")
    parser.add_argument("--json", type=Path, help="write the rows here")
    args = parser.parse_args()

    print(f"torch threads: {torch.get_num_threads()}; cpus usable: {len(os.sched_getaffinity(0))}")
    fast = env.bf16_fast()
    peaks = {dt: env.measure_matmul(dt, n=1024, seconds=2.0) for dt in ("bfloat16", "float32")}
    print(f"matmul peaks (1024^2): bf16 {peaks['bfloat16']:.1f} GFLOP/s, fp32 "
          f"{peaks['float32']:.1f} GFLOP/s; bf16 matmul instructions: {'yes' if fast else 'no'}"
          f" (ftkit computes in {'bf16' if fast else 'fp32'}; TRL's defaults in bf16)")
    trl_steps = args.trl_steps or (args.steps if fast else min(args.steps, 3))
    n = args.steps * args.batch_size
    tok, rows, pairs = examples(n, args.model, seed=0)
    n_params = sum(p.numel() for p in ft.load(args.model)[0].parameters())
    heldout = heldout_batches(tok)

    def ftkit(**kw):
        return lambda out: run_ftkit(args.model, tok, rows, args.steps, args.batch_size,
                                     args.rank, out, seed=args.seed, **kw)

    # DoRA right after LoRA, so that their ratio is measured on the same footing; the default
    # once more at the end shows how far the machine drifted over the run
    def trl_run(steps: int, **kw):
        return lambda out: run_trl(args.model, pairs[:steps * args.batch_size], steps,
                                   args.batch_size, args.rank, out, args.seed, **kw)

    # without bf16 instructions TRL's defaults run emulated bf16: also measured with bf16 off
    variants = {"TRL SFTTrainer defaults": trl_run(trl_steps),
                **({} if fast else {TRL_FP32: trl_run(args.steps, bf16=False)}),
                TRL_TUNED: trl_run(args.steps, **tuned_trl(fast)),
                "ftkit default": ftkit(),
                "ftkit default, DoRA": ftkit(method="dora"),
                PEFT_DORA: ftkit(method="dora", fast_dora=False)}
    for name, (train_changes, overrides) in LEVERS.items():
        if name in AUTOCAST_ONLY and not fast:
            continue
        variants.setdefault(name, ftkit(train_changes=train_changes, overrides=overrides))
    if args.compile:
        variants["ftkit + torch.compile"] = ftkit(overrides={"torch_compile": True})
    variants[AGAIN] = ftkit()
    wanted = [v.strip() for v in args.only]
    unknown = sorted(set(wanted) - set(variants))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {sorted(variants)}")
    with tempfile.TemporaryDirectory() as out:  # untimed: the matmul kernels' one-time setup
        two = 2 * args.batch_size
        warm = (2 if fast else 1) if not wanted or any(w.startswith("TRL") for w in wanted) else 0
        if warm:
            run_trl(args.model, pairs[:two], warm, args.batch_size, args.rank, out)[0].train()
        run_ftkit(args.model, tok, rows[:two], 2, args.batch_size, args.rank, out)[0].train()
    env.release_memory()
    print(f"warm-up done (untimed: {warm} step(s) of TRL, 2 of ftkit); TRL's defaults measured "
          f"over {trl_steps} steps, everything else over {args.steps}", flush=True)
    results = []
    for name, build in variants.items():
        if wanted and name not in wanted:
            continue
        with tempfile.TemporaryDirectory() as out:
            results.append(measure(name, lambda: build(out), n_params, peaks, heldout))
    by = {r["variant"]: r for r in results}
    trl, ours = by.get("TRL SFTTrainer defaults"), by.get("ftkit default")
    print("\nvariant                               tokens/s   vs TRL  step s  peak MB  dtype  "
          "MFU(bf16)  MFU(own dtype)  held-out loss")
    for r in results:
        ratio = r["tokens_per_s"] / trl["tokens_per_s"] if trl else float("nan")
        print(f"{r['variant']:<37} {r['tokens_per_s']:>8.1f} {ratio:>7.2f}x {r['step_s']:>6.2f} "
              f"{r['peak_rss_mb']:>8}  {SHORT[r['computes_in']]:>5} {r['mfu_bf16']:>9.1%} "
              f"{r['mfu_own']:>14.1%}  {r['heldout_loss']:.4f}")

    def goal(ok: bool) -> str:
        return "goal met" if ok else "goal missed"

    print()
    if trl and ours:
        ratio = ours["tokens_per_s"] / trl["tokens_per_s"]
        print(f"ftkit / TRL tokens per second: {ratio:.2f}x ({goal(ratio >= 3.0)}: >= 3.0x)")
        print(f"peak RSS ftkit {ours['peak_rss_mb']} MB vs TRL {trl['peak_rss_mb']} MB "
              f"({goal(ours['peak_rss_mb'] <= trl['peak_rss_mb'])}: no more than TRL)")
    if ours and TRL_TUNED in by:
        tuned = by[TRL_TUNED]
        ratio = ours["tokens_per_s"] / tuned["tokens_per_s"]
        worse = ours["heldout_loss"] / tuned["heldout_loss"] - 1
        print(f"ftkit / tuned TRL tokens per second: {ratio:.2f}x ({goal(ratio >= 1.3)}: "
              f">= 1.3x), held-out loss {ours['heldout_loss']:.4f} vs {tuned['heldout_loss']:.4f} "
              f"({worse:+.1%}; {goal(worse <= 0.01)}: at most 1 % above); peak RSS "
              f"{ours['peak_rss_mb']} vs {tuned['peak_rss_mb']} MB")
    if ours and TRL_FP32 in by:
        print(f"ftkit / TRL with bf16 off: "
              f"{ours['tokens_per_s'] / by[TRL_FP32]['tokens_per_s']:.2f}x")
    if ours:  # where bf16 is emulated, the share of the peak of the dtype ftkit computes in
        key, peak = ("mfu_bf16", "bf16") if fast else ("mfu_own", "fp32 (bf16 is emulated here)")
        print(f"ftkit model FLOP/s: {ours[key]:.1%} of the {peak} matmul peak "
              f"({goal(ours[key] >= 0.5)}: >= 50%)")
    if ours and "ftkit default, DoRA" in by:
        dora = by["ftkit default, DoRA"]["step_s"] / ours["step_s"]
        print(f"DoRA / LoRA step time: {dora:.2f}x ({goal(dora <= 1.3)}: <= 1.3x)")
    if ours and PEFT_DORA in by:
        print(f"{PEFT_DORA} / LoRA step time: {by[PEFT_DORA]['step_s'] / ours['step_s']:.2f}x")
    if ours and AGAIN in by:
        print(f"drift: the default's tokens/s at the end / at the start: "
              f"{by[AGAIN]['tokens_per_s'] / ours['tokens_per_s']:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"peak_gflops": peaks, "bf16_fast": fast,
                                         "rows": results}, indent=2))


if __name__ == "__main__":
    main()
