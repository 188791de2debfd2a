"""RL rollouts on a CPU: ``model.generate`` one prompt at a time vs the kit's grouped rollouts.

A GRPO or PPO step samples ``--group`` completions for each of ``--prompts`` prompts from the
policy (SmolLM2-135M-Instruct from the offline pack, a LoRA adapter r=16 on every Linear
layer, the support-record prompts of notebook 18). Variants, timed in turns over
``--rounds`` rounds in one process:

- ``generate, one at a time``: peft's model, ``model.generate`` once per completion (the
  loop a hand-written rollout starts from);
- ``generate, batched``: peft's model, one ``generate`` call for all prompts x group (the
  prompts left-padded), as TRL's trainers call it;
- ``ftkit``: the rollout levers of ``ftkit.align.grpo`` — the adapter merged into the weights
  while sampling (``merged_adapter``) and each prompt computed once for its group
  (``ftkit.models.generation.generate_groups``), the KV cache on throughout.

Every variant samples exactly ``--tokens`` new tokens per completion (the end token is not
allowed to stop one early), so each produces the same number of tokens. Printed: median
seconds per rollout, generated tokens/s and the ratio to one-at-a-time.

    python benchmarks/rollout_generate.py            # 4 prompts x 4, 32 tokens, 3 rounds
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from transformers import GenerationConfig  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.align import grpo  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import AdapterConfig  # noqa: E402
from ftkit.models.generation import generate_groups  # noqa: E402
from ftkit.train.adapters import apply_method  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def prompt_ids(tokenizer, n: int) -> list[list[int]]:
    rows = grpo.load_records(ROOT / "data/extraction_tasks/train.jsonl", n)
    texts = [tokenizer.apply_chat_template(grpo.prompt_of(r), add_generation_prompt=True,
                                           tokenize=False) for r in rows]
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


@torch.inference_mode()
def one_at_a_time(model, prompts, group: int, config) -> int:
    made = 0
    for p in prompts:
        ids = torch.tensor([p])
        for _ in range(group):
            out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                 generation_config=config)
            made += out.shape[1] - ids.shape[1]
    return made


@torch.inference_mode()
def batched(model, prompts, group: int, config, pad: int) -> int:
    rows = [p for p in prompts for _ in range(group)]
    width = max(map(len, rows))
    ids = torch.tensor([[pad] * (width - len(p)) + p for p in rows])
    mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(p) for p in rows])[:, None])
    out = model.generate(input_ids=ids, attention_mask=mask.long(), generation_config=config)
    return (out.shape[1] - width) * len(rows)


@torch.inference_mode()
def grouped(model, prompts, group: int, config, pad: int) -> int:
    rows = [p for p in prompts for _ in range(group)]
    with grpo.merged_adapter(model):
        done = generate_groups(model, rows, group, config, pad, [-1])
    return sum(len(c) for c in done)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write the medians here")
    args = parser.parse_args()
    env.seed_everything(0)
    model, tokenizer = models.load("smollm2-135m")
    model = apply_method(model, AdapterConfig(lora_r=16, lora_alpha=32.0, lora_dropout=0.0))
    with torch.no_grad():  # a trained adapter: B away from zero, so merging changes weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.01)
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    config = GenerationConfig(do_sample=True, temperature=1.0, max_new_tokens=args.tokens,
                              min_new_tokens=args.tokens, pad_token_id=pad, use_cache=True)
    prompts = prompt_ids(tokenizer, args.prompts)
    variants = {"generate, one at a time": lambda: one_at_a_time(model, prompts, args.group,
                                                                 config),
                "generate, batched": lambda: batched(model, prompts, args.group, config, pad),
                "ftkit": lambda: grouped(model, prompts, args.group, config, pad)}
    for run in variants.values():  # untimed: kernels' one-time setup
        run()
    times: dict[str, list[float]] = {v: [] for v in variants}
    made: dict[str, int] = {}
    for r in range(args.rounds):
        names = list(variants)
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            made[name] = variants[name]()
            times[name].append(time.perf_counter() - t0)
        print(f"round {r + 1}: " + ", ".join(f"{n} {times[n][-1]:.1f} s" for n in names),
              flush=True)
    base = statistics.median(times["generate, one at a time"])
    result = {}
    print(f"\n{'variant':<26}{'median s':>10}{'tokens':>8}{'tokens/s':>10}{'vs one at a time':>18}")
    for name, ts in times.items():
        med = statistics.median(ts)
        result[name] = {"median_s": med, "tokens": made[name], "tokens_per_s": made[name] / med,
                        "ftkit_vs": med / statistics.median(times["ftkit"])}
        print(f"{name:<26}{med:>10.2f}{made[name]:>8}{made[name] / med:>10.1f}{base / med:>17.2f}x")
    ratio = base / statistics.median(times["ftkit"])
    print(f"\nftkit rollouts vs generate one prompt at a time: {ratio:.2f}x "
          f"({'goal met' if ratio >= 3 else 'goal missed'}: >= 3x)")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
