"""VQA on a CPU: transformers' Trainer as shipped, the Trainer set up well, and ftkit's VQA stage.

The "VQA: projector + LoRA" stage of notebook 17: the LLaVA assembly of a small SigLIP-style
vision encoder (32 px images, 16 patch tokens, frozen), LLaVA's projector and SmolLM2-135M-Instruct
with LoRA r=8 (alpha 16, dropout 0.05) on its linear layers; the projector and LoRA train. Every
variant starts from the same weights: the notebook's earlier stages (contrastive pretraining of
the encoder, captioning with the projector, then with projector + LoRA) run once in a process of
their own, and the vision encoder, projector and LoRA weights they leave are loaded by each
variant (``--start`` keeps them for later runs). Every variant trains the same parameters on the
same question-answer examples (the first ``steps x batch`` questions of the notebook's training
scenes, one pass, drawn in the same order: checked), with the same batch, steps and seed:

- ``defaults``: ``transformers.Trainer`` with ``TrainingArguments`` as shipped (learning rate
  5e-5 with linear decay to 0 and no warm-up, fused AdamW, weight decay 0, clipping at 1.0, fp32,
  no gradient checkpointing); only the output folder, seed, steps, batch, CPU, no checkpoints,
  no reporting, no progress bar and ``remove_unused_columns=False`` (the collator needs the raw
  images) set. ftkit's collator (``ftkit.vqa.train.VLMCollator``: chat template, right padding,
  prompt masked out of the labels) and the model's own loss, i.e. vocabulary logits at every
  position: the default anchor;
- ``tuned``: the same Trainer, collator and loss as a practised user sets them up on this
  machine: bf16 autocast only where the CPU has bf16 instructions (``ftkit.core.env.bf16_fast``),
  no gradient checkpointing, and ftkit's learning rate, schedule, warm-up, clipping and weight
  decay (notebook 17's: 2e-3, cosine, 10 % warm-up, 1.0, 0). Grouping by length is left off:
  the examples are tokenised in the collator (the Trainer has no lengths to group by), they
  differ by a few tokens (the padding share is printed), and it would change which examples
  share a step. The tuned anchor, whose held-out loss compares with ftkit's;
- ``ftkit``: ``ftkit.vqa.train.train_stage`` with notebook 17's TrainConfig, as the notebook
  calls it: the same settings through the trainer factory's speed layer (fused LoRA updates,
  frozen weights stored in bf16 under autocast), vocabulary logits only at answer positions
  (``label_only_loss``) and padding-free batches (``flatten``). ``--variants`` may add
  ``ftkit-fp32-weights``: the frozen weights keep their fp32 values (``frozen_bf16=False``;
  the speed layer computes with held bf16 copies), so the held-out evaluation sees them as
  loaded; and ``ftkit-padded``: padded batches instead of padding-free ones (``packing=False``).
  ``--seed`` changes every variant's training seed alike (data order, dropout masks), so the
  spread between seeds says how large a difference between variants must be to mean anything.

Each variant runs in its own process (its own peak resident memory), the variants taking turns
over ``--repeats`` rounds. The clock runs from building the trainer to the end of training.
Printed: examples/s and tokens/s, their ratios, peak RSS, the held-out loss (cross-entropy over
the answer tokens, the answer word and its end-of-turn token, of the questions on
``--eval-scenes`` scenes of the ``seen`` split: padded batches, fp32, eval mode, the same
function for every variant) and exact-match accuracy on those questions
(``ftkit.vqa.evaluate.score``, as the notebook scores). Tokens/s counts the text side: each
example's real tokens without its 16 image placeholders; the image enters the language model as
those 16 positions more per example, shown apart.

    python benchmarks/vqa_step.py                 # 1 round, batch 16, 40 steps (640 questions)
    python benchmarks/vqa_step.py --repeats 2 --start outputs/vqa_start.pt --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import hashlib
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import TrainConfig  # noqa: E402
from ftkit.train.sft import unwrap  # noqa: E402
from ftkit.vqa import contrastive, evaluate, shapes  # noqa: E402
from ftkit.vqa import model as vm  # noqa: E402
from ftkit.vqa import train as vt  # noqa: E402

VARIANTS = ("defaults", "tuned", "ftkit")
ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "data/vqa_shapes/manifest.json"
# notebook 17's workshop profile
IMAGE_SIZE, PATCH_SIZE, VISION_HIDDEN, VISION_LAYERS = 32, 8, 128, 4
LORA_R, LORA_ALPHA, LORA_DROPOUT = 8, 16.0, 0.05
CLIP_BATCH, CLIP_LR, PROJECTOR_LR = 128, 2e-3, 2e-3


def train_config(batch: int) -> TrainConfig:
    """Notebook 17's TrainConfig (lr 2e-3, cosine, 10 % warm-up; clipping 1.0, no weight decay,
    bf16 where native: TrainConfig's defaults)."""
    return TrainConfig(lr=2e-3, batch_size=batch, warmup_ratio=0.1, report_to="none")


class Recorded(list):
    """A list of examples that notes which index the Trainer reads, in order."""

    def __init__(self, rows):
        super().__init__(rows)
        self.seen: list[int] = []

    def __getitem__(self, i):
        if isinstance(i, int):
            self.seen.append(i)
        return super().__getitem__(i)


def new_vision():
    """Notebook 17's vision encoder (32 px, 8 px patches: 16 patch tokens), randomly set."""
    return vm.vision_encoder(vm.vision_config(IMAGE_SIZE, PATCH_SIZE, VISION_HIDDEN,
                                              VISION_LAYERS), 0)


def fresh_model(model_name: str):
    """``(model, processor)``: notebook 17's assembly with LoRA, before the start is loaded."""
    model, processor = vm.load_vlm("offline", model_name, new_vision(), 0)
    return vm.add_lora(model, LORA_R, LORA_ALPHA, LORA_DROPOUT, 0), processor


def prepare(path: Path, model_name: str, n_scenes: int, clip_steps: int,
            caption_steps: int) -> dict:
    """Notebook 17 up to its VQA stage; saves the vision encoder, projector and LoRA weights."""
    env.seed_everything(0)
    scenes = shapes.load_split(MANIFEST, "train", n_scenes)
    captions = [s["caption"] for s in scenes]
    text_model, text_tokenizer = models.load("minilm-l6")
    text_emb = contrastive.caption_embeddings(text_model, text_tokenizer, captions)
    vision = new_vision()
    pixels = contrastive.pixel_values(vm.image_processor(IMAGE_SIZE),
                                      [shapes.render(s) for s in scenes])
    contrastive.pretrain(contrastive.ImageTower(vision, text_emb.shape[1]), pixels, text_emb,
                         captions, clip_steps, CLIP_BATCH, CLIP_LR, 0)
    model, processor = vm.load_vlm("offline", model_name, vision, 0)
    cap, train = vt.caption_examples(scenes), train_config(16)
    with tempfile.TemporaryDirectory() as tmp:
        model, _ = vt.train_stage(vm.train_projector_only(model), processor, cap,
                                  dataclasses.replace(train, lr=PROJECTOR_LR), caption_steps,
                                  tmp, 0)
        model = vm.add_lora(model, LORA_R, LORA_ALPHA, LORA_DROPOUT, 0)
        model, _ = vt.train_stage(model, processor, cap, train, caption_steps, tmp, 0)
    state = {n: p.detach().float().clone() for n, p in model.named_parameters()
             if p.requires_grad or "vision_tower" in n}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return {"saved": len(state)}


def load_start(path: Path, model_name: str):
    """``(model, processor)`` with the saved start loaded (every saved tensor must match)."""
    model, processor = fresh_model(model_name)
    state = torch.load(path, map_location="cpu")
    missing = set(state) - {n for n, _ in model.named_parameters()}
    if missing:
        raise RuntimeError(f"start weights do not match the model: {sorted(missing)[:3]} …")
    model.load_state_dict(state, strict=False)
    return model, processor


def qa_subset(n: int) -> list[dict]:
    """The first ``n`` questions of the notebook's training scenes (five per scene)."""
    return vt.qa_examples(shapes.load_split(MANIFEST, "train", math.ceil(n / 5)))[:n]


def token_counts(processor, examples: list[dict], order: list[int], batch: int) -> dict:
    """Text and image tokens of ``examples``, and the padding share of the batches ``order``
    made (padded right, as the Trainer variants train)."""
    collate, image_id = vt.VLMCollator(processor, IMAGE_SIZE), processor.image_token_id
    text = image = padded = 0
    for i in range(0, len(order), batch):
        b = collate([examples[j] for j in order[i:i + batch]])
        n_image = int((b["input_ids"] == image_id).sum())
        real = int(b["attention_mask"].sum())
        text, image = text + real - n_image, image + n_image
        padded += b["input_ids"].numel()
    return {"text_tokens": text, "image_tokens": image, "pad_share": 1 - (text + image) / padded}


@torch.inference_mode()
def heldout_loss(model, processor, examples: list[dict], batch: int = 32) -> float:
    """Mean cross-entropy over the answer tokens of ``examples`` (answer + end of turn): padded
    batches, full logits, fp32, eval mode."""
    model.eval()
    collate, total, count = vt.VLMCollator(processor, IMAGE_SIZE), 0.0, 0
    for i in range(0, len(examples), batch):
        b = {k: v.to(model.device) for k, v in collate(examples[i:i + batch]).items()}
        targets = b.pop("labels")[:, 1:]
        with torch.autocast(model.device.type, enabled=False):
            logits = model(**b).logits[:, :-1].float()  # (B, T - 1, vocab)
        total += float(F.cross_entropy(logits.flatten(0, 1), targets.flatten(),
                                       reduction="sum"))
        count += int((targets != -100).sum())
    return total / count


def hf_trainer(model, processor, examples, args):
    from transformers import Trainer

    return Trainer(model=model, args=args, train_dataset=examples,
                   data_collator=vt.VLMCollator(processor, IMAGE_SIZE))


def run_defaults(model, processor, examples, steps: int, batch: int, folder: str,
                 seed: int = 0):
    from transformers import TrainingArguments

    args = TrainingArguments(output_dir=folder, seed=seed, max_steps=steps,
                             per_device_train_batch_size=batch,
                             use_cpu=not torch.cuda.is_available(), save_strategy="no",
                             report_to=[], disable_tqdm=True, remove_unused_columns=False)
    trainer = hf_trainer(model, processor, examples, args)
    trainer.train()
    return unwrap(trainer), args.bf16


def run_tuned(model, processor, examples, steps: int, batch: int, folder: str,
              seed: int = 0):
    from transformers import TrainingArguments

    train = train_config(batch)
    args = TrainingArguments(output_dir=folder, seed=seed, max_steps=steps,
                             per_device_train_batch_size=batch,
                             use_cpu=not torch.cuda.is_available(), save_strategy="no",
                             report_to=[], disable_tqdm=True, remove_unused_columns=False,
                             learning_rate=train.lr, lr_scheduler_type=train.lr_scheduler,
                             warmup_steps=train.warmup_ratio, weight_decay=train.weight_decay,
                             max_grad_norm=train.max_grad_norm, bf16=env.bf16_fast(),
                             gradient_checkpointing=False)
    trainer = hf_trainer(model, processor, examples, args)
    trainer.train()
    return unwrap(trainer), args.bf16


def run_ftkit(model, processor, examples, steps: int, batch: int, folder: str,
              seed: int = 0, frozen_bf16: bool = True, packing: bool = True):
    train = train_config(batch)
    model, _ = vt.train_stage(model, processor, examples, train, steps, folder, seed=seed,
                              frozen_bf16=frozen_bf16, packing=packing)
    return model, env.use_bf16(train.bf16)


RUNS = {"defaults": run_defaults, "tuned": run_tuned, "ftkit": run_ftkit,
        "ftkit-fp32-weights": functools.partial(run_ftkit, frozen_bf16=False),
        "ftkit-padded": functools.partial(run_ftkit, packing=False)}


def one_variant(name: str, batch: int, steps: int, model_name: str, start: Path,
                eval_scenes: int, seed: int = 0) -> dict:
    import resource

    env.seed_everything(seed)
    model, processor = load_start(start, model_name)
    examples = Recorded(qa_subset(steps * batch))
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model, bf16 = RUNS[name](model, processor, examples, steps, batch, tmp, seed)
        seconds = time.perf_counter() - started
    order = examples.seen[-steps * batch:]
    counts = token_counts(processor, examples, order, batch)
    test_scenes = shapes.load_split(MANIFEST, "seen", eval_scenes)
    scored = evaluate.score(model, processor, shapes.qa_rows(test_scenes), batch_size=40)
    n = steps * batch
    return {"seconds": seconds, "examples_per_s": n / seconds,
            "tokens_per_s": counts["text_tokens"] / seconds, "bf16": bool(bf16),
            "text_tokens_per_example": counts["text_tokens"] / n,
            "image_tokens_per_example": counts["image_tokens"] / n,
            "pad_share": counts["pad_share"],
            "heldout_loss": heldout_loss(model, processor, vt.qa_examples(test_scenes)),
            "accuracy": float(scored["correct"].mean()),
            "order": hashlib.sha256(json.dumps(order).encode()).hexdigest()[:12],
            "trainable_params": trainable,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def child(args, *extra: str) -> dict:
    """Run this script with ``extra`` in a process of its own; its last stdout line, parsed."""
    common = ["--batch", str(args.batch), "--steps", str(args.steps), "--model", args.model,
              "--scenes", str(args.scenes), "--eval-scenes", str(args.eval_scenes),
              "--clip-steps", str(args.clip_steps), "--caption-steps", str(args.caption_steps),
              "--seed", str(args.seed)]
    return anchors.child(__file__, [*common, *extra])


def report(runs: dict[str, list[dict]]) -> dict:
    """The table and the goals; returns the summary that ``--json`` writes."""
    result = anchors.summarise(runs, medians=("examples_per_s",),
                               means=("heldout_loss", "accuracy"))
    print(f"\n{'variant':<20}{'precision':>10}{'examples/s':>12}{'tokens/s':>10}{'ftkit vs':>10}"
          f"{'held-out loss':>15}{'accuracy':>10}{'peak RSS MB':>13}")
    for v, r in result.items():
        precision = "bf16" if r["runs"][0]["bf16"] else "fp32"
        print(f"{v:<20}{precision:>10}{r['examples_per_s']:>12.2f}{r['tokens_per_s']:>10.1f}"
              f"{r['ftkit_vs']:>9.2f}x{r['heldout_loss']:>15.4f}{r['accuracy']:>10.3f}"
              f"{r['peak_rss_mb']:>13.0f}")
    first = runs["ftkit"][0]
    orders = {r["order"] for rs in runs.values() for r in rs}
    print(f"\ntokens/s: {first['text_tokens_per_example']:.1f} text tokens per example (real, "
          f"not padding); the {first['image_tokens_per_example']:.0f} image positions per "
          f"example are not counted. Padded batches: {first['pad_share']:.1%} padding.")
    print(f"same examples in the same order in every run: {'yes' if len(orders) == 1 else 'NO'}")
    trained = {r["trainable_params"] for rs in runs.values() for r in rs}
    print(f"trainable parameters (projector + LoRA): {', '.join(f'{n:,}' for n in trained)}"
          f"{'' if len(trained) == 1 else ' — NOT the same in every run'}")
    if {"tuned", "defaults"} <= set(result):
        print(anchors.goal_lines(result, "tuned", "defaults", 2.0, "Trainer"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--scenes", type=int, default=1200,
                        help="training scenes of the stages before VQA (notebook 17's)")
    parser.add_argument("--eval-scenes", type=int, default=40, help="held-out scenes, 5 "
                        "questions each")
    parser.add_argument("--clip-steps", type=int, default=200)
    parser.add_argument("--caption-steps", type=int, default=10)
    parser.add_argument("--start", type=Path, help="start weights: reused if the file exists, "
                        "else made and kept there")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help="comma-separated, ftkit among them (also: ftkit-fp32-weights, "
                        "ftkit-padded)")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--seed", type=int, default=0, help="training seed of every variant "
                        "(data order, dropout); the start weights are built with seed 0")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.variant == "prepare":
        print(json.dumps(prepare(args.start, args.model, args.scenes, args.clip_steps,
                                 args.caption_steps)))
        return
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.batch, args.steps, args.model,
                                     args.start, args.eval_scenes, args.seed)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        start = args.start or Path(tmp) / "start.pt"
        if not start.exists():
            started = time.perf_counter()
            child(args, "--variant", "prepare", "--start", str(start))
            print(f"start weights (notebook 17 before its VQA stage): "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
        chosen = args.variants.split(",")
        if "ftkit" not in chosen or not set(chosen) <= set(RUNS):
            parser.error(f"--variants: ftkit and any of {', '.join(RUNS)}")
        runs: dict[str, list[dict]] = {v: [] for v in chosen}
        for round_ in range(args.repeats):
            for v in chosen:
                runs[v].append(child(args, "--variant", v, "--start", str(start)))
                print(f"round {round_ + 1} {v}: {runs[v][-1]['seconds']:.1f} s", flush=True)
    result = report(runs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
