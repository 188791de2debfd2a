"""Whisper decoder fine-tuning on a CPU: transformers' Seq2SeqTrainer as shipped, the same
trainer set up well, and ftkit's Whisper path, side by side.

Whisper tiny.en (offline pack) with its encoder frozen and LoRA r=16 (alpha 32, dropout 0.05)
on the decoder's self-attention, cross-attention queries and outputs and MLP, as
``ftkit.asr.whisper.apply_method`` sets it (the same trainable parameters everywhere;
``--method full`` trains every decoder weight instead). The clips are notebook 16's: the
jargon manifest's 48 medical and 24 everyday training sentences in two voices each (144
clips, half of them augmented with noise, speed or pitch, seed 42), the held-out test clips
its 60 medical (30 known, 30 new sentence frames) and 40 everyday sentences. Every variant
gets the same clips, batch (16), optimiser steps (3 epochs: 27), seed and LoRA config:

- ``defaults``: ``transformers.Seq2SeqTrainer`` with ``Seq2SeqTrainingArguments`` as shipped
  (learning rate 5e-5, linear decay without warm-up, fp32, fused AdamW, clipping at 1.0, no
  weight decay), only the budget, batch, seed and CPU set, no checkpoints or logs; it reads
  log-mel ``input_features`` and ``labels``, so the frozen encoder runs on every clip at every
  step, as the standard recipe does: the default anchor;
- ``tuned``: the same trainer as a practised user sets it up on this machine: bf16 only where
  the CPU has bf16 matmul instructions (``ftkit.core.env.bf16_fast``), ftkit's learning rate
  (1e-3 for LoRA, notebook 16's ``lora_lr``; 1e-4 for full), 10 % warm-up, cosine decay and
  clipping at 1.0. The encoder is frozen and still runs at every step: transformers has no
  standard way to reuse its output. Length grouping is left off: Whisper's inputs all have
  3000 mel frames, label padding is about a tenth of the decoder positions of a step that the
  encoder dominates, and grouping would change which clips share a batch: the tuned anchor,
  whose held-out loss compares with ftkit's;
- ``ftkit``: ``ftkit.asr.whisper.encode`` (the encoder once per clip, bf16 where native) and
  ``train_decoder`` without validation (``val_states=None``: no WER evaluations or early
  stopping, so every variant takes the same steps), through the trainer factory's speed layer
  and the cross-attention computed on the label side (``ftkit.asr.cross_attention``);
- ``ftkit plain attn`` (with ``--plain-attention``): the same with Whisper's own cross-attention
  (``absorbed_attention=False``), which projects all 1500 encoder positions at every step.

Each variant runs in its own process (its own peak resident memory), the variants taking turns
over ``--repeats`` rounds. The clock runs from the raw clips to the end of training: log-mel
features and training for the trainers, the one-time encoder pass over every clip and training
for ftkit. Printed: clips/s and decoder tokens/s (label tokens, without padding), ftkit's ratio
to each, the held-out loss (teacher-forced cross-entropy per label token on the test clips,
fp32, no dropout, the same function for every variant), the held-out WER (greedy, normalised
text) and the peak RSS at the end of training.

    python benchmarks/whisper_step.py                  # 1 round, batch 16, 27 steps
    python benchmarks/whisper_step.py --method full --repeats 2 --json out.json
    python benchmarks/whisper_step.py --plain-attention    # also ftkit without the lever
    python benchmarks/whisper_step.py --train-clips 8 --test-clips 4 --batch 4 --steps 2
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import anchors  # noqa: E402  (this folder: the benchmarks' shared parts)

import torch  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.asr import audio, whisper  # noqa: E402
from ftkit.asr.params import ASRConfig  # noqa: E402
from ftkit.core import env  # noqa: E402
from ftkit.core.config import TrainConfig  # noqa: E402

VARIANTS = ("defaults", "tuned", "ftkit")
PLAIN = "ftkit plain attn"  # ftkit with Whisper's own cross-attention (--plain-attention)
ROOT = Path(__file__).resolve().parents[1]
MODEL, SEED, EPOCHS = "whisper-tiny.en", 42, 3
LR = {"lora": 1e-3, "full": 1e-4}  # notebook 16: lora_lr, and TrainConfig.lr for full
LORA = {"lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.05}
ASR = ASRConfig(manifest_path=str(ROOT / "data/asr_jargon/manifest.jsonl"), n_test_domain=60,
                n_test_everyday=40)  # the rest as notebook 16 sets it


def notebook_clips(n_train: int, n_test: int) -> dict:
    """Training clips (augmented as in notebook 16) and test clips with their transcripts;
    ``n_train`` / ``n_test`` > 0 keep that many of each (a fixed subset)."""
    a, rows = ASR, audio.load_manifest(ASR.manifest_path)
    train = (audio.select(rows, "domain", "train", a.n_train_domain, SEED, a.renderings)
             + audio.select(rows, "everyday", "train", a.n_train_everyday, SEED, a.renderings))
    half = a.n_test_domain // 2
    test = (audio.select(rows, "domain", "test", half, SEED, context="known")
            + audio.select(rows, "domain", "test", a.n_test_domain - half, SEED, context="new")
            + audio.select(rows, "everyday", "test", a.n_test_everyday, SEED))
    train_audio, _ = audio.augment_clips(audio.synthesize_rows(train), a.augment_share, SEED,
                                         a.snr_choices, a.speed_delta, a.pitch_semitones)
    train_audio, train = train_audio[:n_train or None], train[:n_train or None]
    test = test[:n_test or None]
    return {"train_audio": [torch.from_numpy(x) for x in train_audio],
            "train_texts": [r["text"] for r in train],
            "test_audio": [torch.from_numpy(x) for x in audio.synthesize_rows(test)],
            "test_texts": [r["text"] for r in test]}


def pad_labels(labels: list[list[int]]) -> torch.Tensor:
    """(B, T) label ids, padded with -100 (ignored by the loss)."""
    out = torch.full((len(labels), max(map(len, labels))), -100, dtype=torch.long)
    for i, ids in enumerate(labels):
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def feature_collate(rows: list[dict]) -> dict:
    """The standard recipe's batch: stacked log-mel features (B, 80, 3000) and padded labels."""
    return {"input_features": torch.stack([r["input_features"] for r in rows]),
            "labels": pad_labels([r["labels"] for r in rows])}


@torch.inference_mode()
def heldout(model, processor, clips: list, texts: list[str], batch: int = 16) -> tuple:
    """Teacher-forced cross-entropy per label token and greedy WER on ``clips``: fp32, eval
    mode (no dropout), the encoder run on the log-mel features of each clip."""
    model = model.float().eval()
    labels = whisper.label_ids(processor, texts)
    total, tokens, hyps = 0.0, 0, []
    for i in range(0, len(clips), batch):
        feats = processor([c.numpy() for c in clips[i:i + batch]],
                          sampling_rate=audio.SAMPLE_RATE, return_tensors="pt").input_features
        states = model.get_encoder()(feats).last_hidden_state  # (B, 1500, d)
        target = pad_labels(labels[i:i + batch])
        logits = model(encoder_outputs=(states,), labels=target, use_cache=False).logits
        total += float(torch.nn.functional.cross_entropy(logits.flatten(0, 1), target.flatten(),
                                                         reduction="sum"))
        tokens += int((target != -100).sum())
        hyps += whisper.decode(model, processor, states)
    return total / tokens, whisper.wer(texts, hyps)


def seq2seq_arguments(name: str, method: str, folder: str, steps: int, batch: int):
    """``defaults``: the budget, batch, seed and CPU only; ``tuned``: ftkit's optimiser
    settings and bf16 where native."""
    from transformers import Seq2SeqTrainingArguments

    base = dict(output_dir=folder, seed=SEED, max_steps=steps, per_device_train_batch_size=batch,
                use_cpu=not torch.cuda.is_available(), save_strategy="no", report_to=[],
                disable_tqdm=True, remove_unused_columns=False)
    if name == "defaults":
        return Seq2SeqTrainingArguments(**base)
    return Seq2SeqTrainingArguments(
        **base, learning_rate=LR[method], warmup_steps=0.1, lr_scheduler_type="cosine",
        max_grad_norm=1.0, weight_decay=0.0, bf16=env.bf16_fast(), label_names=["labels"])


def train_variant(name: str, method: str, model, processor, clips: list, labels: list,
                  steps: int, batch: int, folder: str):
    """Train ``model`` as ``name`` does, from the raw clips; returns the trained model."""
    if name in ("ftkit", PLAIN):
        states = whisper.encode(model, processor, [c.numpy() for c in clips])
        train_cfg = TrainConfig(lr=LR[method], max_steps=steps, batch_size=batch,
                                warmup_ratio=0.1, report_to="none")
        tuned, _ = whisper.train_decoder(model, processor,
                                         whisper.CachedStatesDataset(states, labels), None, None,
                                         train_cfg, method, folder, seed=SEED,
                                         absorbed_attention=name == "ftkit")
        return tuned
    from transformers import Seq2SeqTrainer

    feats = processor([c.numpy() for c in clips], sampling_rate=audio.SAMPLE_RATE,
                      return_tensors="pt").input_features  # (N, 80, 3000)
    rows = [{"input_features": f, "labels": ids} for f, ids in zip(feats, labels)]
    trainer = Seq2SeqTrainer(model=model, args=seq2seq_arguments(name, method, folder, steps,
                                                                 batch),
                             train_dataset=rows, data_collator=feature_collate)
    trainer.train()
    return model


def one_variant(name: str, method: str, data_path: str, batch: int, steps: int) -> dict:
    import resource

    data = torch.load(data_path)
    env.seed_everything(SEED)
    model, processor = models.load(MODEL)
    model = whisper.apply_method(model, method, **LORA)
    labels = whisper.label_ids(processor, data["train_texts"])
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        model = train_variant(name, method, model, processor, data["train_audio"], labels,
                              steps, batch, tmp)
        seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loss, wer = heldout(model, processor, data["test_audio"], data["test_texts"])
    clips = steps * batch
    return {"seconds": seconds, "clips_per_s": clips / seconds,
            "tokens_per_s": clips * statistics.mean(map(len, labels)) / seconds,
            "heldout_loss": loss, "heldout_wer": wer, "peak_rss_mb": peak}


def run_rounds(args, data_path: str, steps: int) -> dict[str, list[dict]]:
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS + (PLAIN,) * args.plain_attention}
    child_env = {**os.environ, "FTKIT_HEADLESS": "1", "TQDM_DISABLE": "1"}
    for round_ in range(args.repeats):
        for v in runs:
            runs[v].append(anchors.child(__file__, [
                "--variant", v, "--method", args.method, "--data", data_path, "--batch",
                str(args.batch), "--steps", str(steps)], child_env))
            print(f"round {round_ + 1} {v}: {runs[v][-1]['seconds']:.1f} s", flush=True)
    return runs


def report(runs: dict[str, list[dict]]) -> dict:
    result = anchors.summarise(runs, medians=("clips_per_s",),
                               means=("heldout_loss", "heldout_wer"))
    print(f"\n{'variant':<18}{'clips/s':>9}{'tokens/s':>10}{'ftkit vs':>10}{'held-out loss':>15}"
          f"{'WER':>8}{'peak RSS MB':>13}")
    for v, r in result.items():
        print(f"{v:<18}{r['clips_per_s']:>9.2f}{r['tokens_per_s']:>10.1f}{r['ftkit_vs']:>9.2f}x"
              f"{r['heldout_loss']:>15.4f}{r['heldout_wer']:>8.3f}{r['peak_rss_mb']:>13.0f}")
    print("\n" + anchors.goal_lines(result, "tuned", "defaults", 2.0, "Seq2SeqTrainer"))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--method", choices=("lora", "full"), default="lora")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=0,
                        help=f"optimiser steps (0 = {EPOCHS} epochs, as notebook 16)")
    parser.add_argument("--train-clips", type=int, default=0, help="0 = all 144")
    parser.add_argument("--test-clips", type=int, default=0, help="0 = all 100")
    parser.add_argument("--plain-attention", action="store_true",
                        help="also run ftkit with Whisper's own cross-attention")
    parser.add_argument("--variant", help=argparse.SUPPRESS)  # one variant, in a child process
    parser.add_argument("--data", help=argparse.SUPPRESS)  # the clips, saved by the parent
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(one_variant(args.variant, args.method, args.data, args.batch,
                                     args.steps)))
        return
    data = notebook_clips(args.train_clips, args.test_clips)
    steps = args.steps or EPOCHS * math.ceil(len(data["train_audio"]) / args.batch)
    print(f"{len(data['train_audio'])} training clips, {len(data['test_audio'])} test clips, "
          f"{steps} steps of {args.batch}, {args.method}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        torch.save(data, f"{tmp}/clips.pt")
        result = report(run_rounds(args, f"{tmp}/clips.pt", steps))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
