"""Speech recognition: Whisper fine-tuning and WER/CER (paper §11.4).

The model steps of §11.4.3 as small functions (the data steps — manifest, synthesis, bad
audio, augmentation — are in :mod:`ftkit.asr.audio`):

* **fine-tuning** — the encoder stays frozen, so its output is computed once per clip
  (:func:`encode`) and only the decoder trains, fully or through LoRA (:func:`apply_method`),
  in a transformers ``Trainer`` with gradient clipping, an LR schedule and early stopping on
  validation WER (:class:`WERStopping`, :func:`train_decoder`); the cross-attention on the
  cached states is computed on the label side
  (:mod:`ftkit.asr.cross_attention`);
* **evaluation** — :func:`wer` / :func:`cer` (jiwer, on Whisper's English text normaliser),
  :func:`error_words` for the most frequent misrecognised words.

Used in notebooks/00_setup_and_environment.ipynb (pack check) and notebooks/16_whisper_asr.ipynb.
"""
from __future__ import annotations

import dataclasses
import functools
import time
from collections import Counter
from typing import Callable

import numpy as np
import torch
from transformers import TrainerCallback

from ftkit.asr.audio import SAMPLE_RATE, check_transcript
from ftkit.asr.cross_attention import AbsorbedCrossAttention
from ftkit.asr.params import METHODS
from ftkit.core.config import ConfigError
from ftkit.core.env import MemoryTracker, bf16_autocast
from ftkit.train import factory
from ftkit.train.adapters import trainable_summary
from ftkit.train.callbacks import live_plot
from ftkit.train.sft import training_arguments
from ftkit.train.speed.layer import Levers

# ---------------------------------------------------------------- text: normalise, WER, CER

@functools.lru_cache(maxsize=1)
def _english_normaliser():
    from transformers.models.whisper.english_normalizer import EnglishTextNormalizer

    # the spelling map (British -> American) ships with hub checkpoints only; the offline
    # pack has none, and an empty map just leaves spellings as they are
    return EnglishTextNormalizer({})


def normalise(text: str) -> str:
    """Whisper's English normaliser: lower case, no punctuation, numbers as digits,
    contractions and titles expanded ("Mr." → "mister"), spaces collapsed."""
    return _english_normaliser()(text).strip()


def _normalised_pairs(references: list[str], hypotheses: list[str]) -> tuple[list, list]:
    if len(references) != len(hypotheses) or not references:
        raise ValueError(f"{len(references)} references and {len(hypotheses)} hypotheses: "
                         "need the same, non-zero number")
    refs = [normalise(r) for r in references]
    empty = [i for i, r in enumerate(refs) if not r]
    if empty:
        raise ValueError(f"references {empty[:5]} are empty after normalisation; WER needs words")
    return refs, [normalise(h) for h in hypotheses]


def wer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus word error rate, (substitutions + deletions + insertions) / reference words,
    on normalised text (jiwer)."""
    import jiwer

    return float(jiwer.wer(*_normalised_pairs(references, hypotheses)))


def cer(references: list[str], hypotheses: list[str]) -> float:
    """Corpus character error rate on normalised text (jiwer)."""
    import jiwer

    return float(jiwer.cer(*_normalised_pairs(references, hypotheses)))


def error_words(references: list[str], hypotheses: list[str]) -> Counter:
    """How often each reference word was misrecognised (substituted or deleted)."""
    import jiwer

    out = jiwer.process_words(*_normalised_pairs(references, hypotheses))
    counts: Counter = Counter()
    for ref_words, chunks in zip(out.references, out.alignments):
        for chunk in chunks:
            if chunk.type in ("substitute", "delete"):
                counts.update(ref_words[chunk.ref_start_idx:chunk.ref_end_idx])
    return counts


def error_word_table(references: list[str], before: list[str], after: list[str],
                     top: int = 10):
    """DataFrame of the ``top`` most misrecognised words before fine-tuning, with after."""
    import pandas as pd

    old, new = error_words(references, before), error_words(references, after)
    rows = [{"word": w, "errors_before": n, "errors_after": new.get(w, 0)}
            for w, n in old.most_common(top)]
    return pd.DataFrame(rows, columns=["word", "errors_before", "errors_after"])


def term_errors(rows: list[dict], before: list[str], after: list[str]):
    """WER and CER before and after fine-tuning over the sentences that hold each term.

    ``rows`` are the manifest rows (each with its ``terms``), ``before``/``after`` their
    transcripts. Returns a DataFrame indexed by term: ``clips``, ``wer_before``,
    ``wer_after``, ``cer_before``, ``cer_after``, worst-before first.
    """
    import pandas as pd

    by_term: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        for term in row.get("terms") or []:
            by_term.setdefault(term, []).append(i)
    out = {}
    for term, idx in by_term.items():
        refs = [rows[i]["text"] for i in idx]
        b, a = [before[i] for i in idx], [after[i] for i in idx]
        out[term] = {"clips": len(idx), "wer_before": wer(refs, b), "wer_after": wer(refs, a),
                     "cer_before": cer(refs, b), "cer_after": cer(refs, a)}
    frame = pd.DataFrame.from_dict(out, orient="index").rename_axis("term")
    return frame.sort_values(["wer_before", "cer_before"], ascending=False)


def term_error_figure(table, top: int = 15, after_label: str = "fine-tuned"):
    """Grouped bars per term (the ``top`` worst before): WER and CER, before and after."""
    import matplotlib.pyplot as plt

    part = table.head(top)
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.32 * len(part) + 1.6), sharey=True)
    y = np.arange(len(part))
    for ax, metric in zip(axes, ("wer", "cer")):
        ax.barh(y - 0.2, part[f"{metric}_before"], 0.4, label="pretrained", color="#bbb")
        ax.barh(y + 0.2, part[f"{metric}_after"], 0.4, label=after_label, color="#2a7")
        ax.set(title=f"{metric.upper()} of the sentences holding each term", xlabel=metric.upper())
        ax.invert_yaxis()
    axes[0].set_yticks(y, [f"{t} ({n})" for t, n in zip(part.index, part.clips)])
    axes[0].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- encoder cache, decoding

@torch.inference_mode()
def encode(model, processor, clips: list[np.ndarray], batch_size: int = 8,
           progress: Callable | None = None) -> torch.Tensor:
    """Frozen-encoder output of every clip, (N, 1500, d_model) in bf16 to halve its memory.

    Whisper pads every clip to 30 s, so the encoder costs the same for a 3 s clip as for a
    30 s one (≈37 GFLOP for tiny); with the encoder frozen it runs once per clip instead of
    once per clip per epoch. Runs under bf16 autocast where it pays (ftkit.core.env.bf16_fast).
    """
    batches = range(0, len(clips), batch_size)
    out = []
    for start in (progress or (lambda x, **k: x))(batches, desc="encoding"):
        feats = processor(clips[start:start + batch_size], sampling_rate=SAMPLE_RATE,
                          return_tensors="pt").input_features.to(model.device)
        with bf16_autocast(device=model.device.type):
            hidden = model.get_encoder()(feats.to(model.dtype)).last_hidden_state
        out.append(hidden.to(torch.bfloat16).cpu())
    return torch.cat(out)


@torch.inference_mode()
def decode(model, processor, states: torch.Tensor, batch_size: int = 16,
           max_new_tokens: int = 48) -> list[str]:
    """Greedy transcripts from cached encoder states (N, 1500, d_model)."""
    from transformers.modeling_outputs import BaseModelOutput

    was_training = model.training
    model.eval()
    texts = []
    for start in range(0, len(states), batch_size):
        hidden = states[start:start + batch_size].to(model.device, model.dtype)
        ids = model.generate(encoder_outputs=BaseModelOutput(last_hidden_state=hidden),
                             max_new_tokens=max_new_tokens)
        texts += [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    model.train(was_training)
    return texts


@torch.inference_mode()
def transcribe(model, processor, audio: list[np.ndarray] | np.ndarray,
               max_new_tokens: int = 96) -> list[str]:
    """Greedy transcripts of 16 kHz mono clips (float arrays in [-1, 1])."""
    clips = [audio] if isinstance(audio, np.ndarray) else list(audio)
    feats = processor(clips, sampling_rate=SAMPLE_RATE, return_tensors="pt").input_features
    ids = model.generate(feats.to(model.device, model.dtype), max_new_tokens=max_new_tokens)
    return [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]


def score(model, processor, states: torch.Tensor, references: list[str],
          max_new_tokens: int = 48) -> tuple[list[str], dict]:
    """Transcripts of cached states and their WER / CER against ``references``."""
    hyps = decode(model, processor, states, max_new_tokens=max_new_tokens)
    return hyps, {"wer": wer(references, hyps), "cer": cer(references, hyps)}


def score_splits(model, processor, states: dict, splits: dict, names: tuple[str, ...],
                 label: str, max_new_tokens: int = 48) -> tuple[dict, list[dict]]:
    """Transcribe and score each named split; domain splits are also scored per ``context``
    (sentence frame known from training, or new). Returns transcripts and result rows."""
    hyps, results = {}, []
    for name in names:
        refs = [r["text"] for r in splits[name]]
        hyps[name], scores = score(model, processor, states[name], refs, max_new_tokens)
        results.append({"model": label, "test": name, **scores})
        groups = sorted({r.get("context") for r in splits[name]} - {None, "everyday"})
        for group in groups if len(groups) > 1 else []:
            keep = [i for i, r in enumerate(splits[name]) if r.get("context") == group]
            sub_refs, sub_hyps = [refs[i] for i in keep], [hyps[name][i] for i in keep]
            results.append({"model": label, "test": f"{name}_{group}_context",
                            "wer": wer(sub_refs, sub_hyps), "cer": cer(sub_refs, sub_hyps)})
    return hyps, results


# ---------------------------------------------------------------- decoder fine-tuning

def label_ids(processor, texts: list[str]) -> list[list[int]]:
    """Decoder targets: ``<|notimestamps|>`` + text + ``<|endoftext|>``.

    A leading space matches how Whisper writes its first word (" The", not "The"); the
    ``<|startoftranscript|>`` token is left out because the model prepends it when it shifts
    the labels right into decoder inputs.
    """
    tok = processor.tokenizer
    start = tok.convert_tokens_to_ids("<|startoftranscript|>")
    out = []
    for text in texts:
        ids = tok(" " + check_transcript(tok, text.strip())).input_ids
        out.append(ids[1:] if ids and ids[0] == start else ids)
    return out


class CachedStatesDataset(torch.utils.data.Dataset):
    """Rows of ``{"encoder_hidden_states": (1500, d), "labels": [ids]}`` for the Trainer."""
    def __init__(self, states: torch.Tensor, labels: list[list[int]]):
        if len(states) != len(labels) or not labels:
            raise ValueError(f"{len(states)} encoder states and {len(labels)} label rows: need "
                             "the same, non-zero number")
        self.states, self.labels = states, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {"encoder_hidden_states": self.states[i], "labels": self.labels[i]}


def collate(rows: list[dict], dtype: torch.dtype = torch.float32) -> dict:
    """Stack states (as ``dtype``) and pad labels with -100 (ignored by the loss).

    Under bf16 autocast pass ``dtype=torch.bfloat16``: the cached bf16 states then reach the
    matmuls as they are, instead of being widened here and narrowed again by every layer.
    """
    width = max(len(r["labels"]) for r in rows)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, r in enumerate(rows):
        labels[i, :len(r["labels"])] = torch.tensor(r["labels"])
    states = torch.stack([r["encoder_hidden_states"] for r in rows]).to(dtype)
    return {"encoder_hidden_states": states, "labels": labels}


class CachedEncoderWhisper(torch.nn.Module):
    """Whisper whose forward takes precomputed encoder states instead of audio features."""
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, encoder_hidden_states, labels=None):
        states = encoder_hidden_states  # (B, 1500, d)
        if not torch.is_autocast_enabled(states.device.type):
            states = states.to(self.model.dtype)  # bf16 states without autocast: widen them
        # training needs no key/value cache (and the absorbed cross-attention runs without one)
        return self.model(encoder_outputs=(states,), labels=labels, use_cache=False)


def apply_method(model, method: str, lora_r: int = 8, lora_alpha: float = 16.0,
                 lora_dropout: float = 0.05):
    """Freeze the encoder; train all decoder weights (``full``) or LoRA adapters on the
    decoder's attention and MLP projections (``lora``, paper §6.3.2)."""
    if method not in METHODS:
        raise ConfigError(f"method {method!r}: choose one of {list(METHODS)}")
    model.requires_grad_(False)
    if method == "full":
        model.get_decoder().requires_grad_(True)
        return model
    from peft import LoraConfig, get_peft_model

    # the cross-attention keys/values act on all 1500 encoder positions: adapting them would
    # cost more than the rest of the decoder together, so they stay frozen
    targets = (r".*decoder\.layers\.\d+\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)"
               r"|encoder_attn\.(q_proj|out_proj)|fc1|fc2)")
    return get_peft_model(model, LoraConfig(r=lora_r, lora_alpha=lora_alpha,
                                            lora_dropout=lora_dropout, target_modules=targets))


class WERStopping(TrainerCallback):
    """At each evaluation: validation WER (added to the metrics as ``eval_wer``), keep the
    trainable weights of the best WER so far, and stop after ``patience`` evaluations without
    improvement. At the end of training the best weights are put back.
    """

    def __init__(self, model, processor, states, references, patience: int = 2,
                 max_new_tokens: int = 48):
        self.model, self.processor = model, processor
        self.states, self.references = states, references
        self.patience, self.max_new_tokens = patience, max_new_tokens
        self.best, self.best_step, self.bad_evals = float("inf"), 0, 0
        self._best_weights: dict[str, torch.Tensor] = {}

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        hyps = decode(self.model, self.processor, self.states, max_new_tokens=self.max_new_tokens)
        value = wer(self.references, hyps)
        if metrics is not None:
            metrics["eval_wer"] = value
        if value < self.best:
            self.best, self.best_step, self.bad_evals = value, state.global_step, 0
            self._best_weights = {n: p.detach().clone() for n, p in
                                  self.model.named_parameters() if p.requires_grad}
        else:
            self.bad_evals += 1
            if self.bad_evals >= self.patience:  # never un-stop what another callback stopped
                control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        params = dict(self.model.named_parameters())
        with torch.no_grad():
            for name, value in self._best_weights.items():
                params[name].copy_(value)


def train_decoder(model, processor, train_ds, val_states, val_texts, train_cfg, method: str,
                  output_dir: str, seed: int = 42, lr: float | None = None, patience: int = 2,
                  max_new_tokens: int = 48, callbacks: list | None = None,
                  absorbed_attention: bool = True):
    """Fine-tune the decoder on cached encoder states; returns ``(model, cost row)``.

    ``model`` must come from :func:`apply_method`. Training uses ftkit's TrainingArguments
    (:func:`ftkit.train.sft.training_arguments`: gradient clipping at ``max_grad_norm``, warm-up
    then ``lr_scheduler``, bf16 autocast) and a transformers ``Trainer`` from the trainer factory
    (``ftkit.train.factory``; the model's input is encoder states, not token ids). Validation
    WER drives early stopping (:class:`WERStopping`); ``val_states=None`` trains the whole
    budget without evaluations. ``absorbed_attention`` computes the cross-attention on the label
    side (:class:`AbsorbedCrossAttention`; the same function, fewer multiply-adds for short
    labels). A LoRA model comes back merged.
    """

    from transformers import Trainer

    if len(train_ds) < train_cfg.batch_size:
        raise ConfigError(f"TrainConfig.batch_size = {train_cfg.batch_size} is larger than the "
                          f"training set ({len(train_ds)} clips)")
    train_cfg = dataclasses.replace(train_cfg, lr=lr or train_cfg.lr)
    stopper, val_ds, no_eval = None, None, {"eval_strategy": "no"}
    if val_states is not None:
        val_ds = CachedStatesDataset(val_states, label_ids(processor, val_texts))
        stopper = WERStopping(model, processor, val_states, val_texts, patience, max_new_tokens)
    args = training_arguments(train_cfg, output_dir, seed, remove_unused_columns=False,
                              label_names=["labels"], logging_steps=1,
                              **(no_eval if stopper is None else {}))
    states_dtype = torch.bfloat16 if args.bf16 else torch.float32
    trainer = factory.build(Trainer, CachedEncoderWhisper(model), args, path="whisper",
                            levers=Levers(label_side_cross_attention=absorbed_attention),
                            plot=live_plot(f"Whisper decoder: {method}", metric="eval_wer"),
                            callbacks=[*([stopper] if stopper else []), *(callbacks or [])],
                            train_dataset=train_ds, eval_dataset=val_ds,
                            data_collator=functools.partial(collate, dtype=states_dtype))
    if stopper is not None:
        trainer.evaluate()  # WER before the first step: the baseline early stopping must beat
    t0 = time.perf_counter()
    # the training alone, not the baseline decoding
    with MemoryTracker() as mem, AbsorbedCrossAttention(model, absorbed_attention):
        result = trainer.train()
    row = {"method": method, "trainable_params": trainable_summary(model)["trainable"],
           "train_seconds": time.perf_counter() - t0, "steps": result.global_step,
           "best_step": stopper.best_step if stopper else None,
           "best_val_wer": stopper.best if stopper else None,
           "train_loss": result.training_loss, "peak_memory_mb": mem.delta_mb}
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return model.eval(), row


def show_examples(rows: list[dict], clips: list[np.ndarray], before: list[str],
                  after: list[str], n: int = 3) -> None:
    """Audio players with reference, before and after transcripts for ``n`` clips, worst
    (most improved) first."""
    from IPython.display import HTML, Audio, display

    gain = [wer([r["text"]], [b]) - wer([r["text"]], [a]) for r, b, a in zip(rows, before, after)]
    for i in sorted(range(len(rows)), key=lambda k: -gain[k])[:n]:
        display(HTML(f"<b>reference:</b> {rows[i]['text']}<br><b>before:</b> {before[i]}<br>"
                     f"<b>after:</b> {after[i]} <i>({rows[i]['voice']}, "
                     f"{rows[i]['speed']} wpm)</i>"), Audio(clips[i], rate=SAMPLE_RATE))
