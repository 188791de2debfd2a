"""Synthetic examples from an LLM (paper §3.2.3), then a quality filter that says why it rejects.

Generation is two prompted steps with the offline SmolLM2 pack:

1. *few-shot question*: a plain-text prompt lists ``n_shots`` real questions of one category
   (``Customer message (billing): …`` per line) and the model continues the list with a new
   line, sampled (temperature, top-p) for variety;
2. *answer*: the new question goes through the chat template with a short system prompt, and
   the greedy reply becomes the response.

The paper asks for verification before synthetic data is used; :func:`quality_filter` applies
the checks of ``CHECKS`` in order and records the first one each candidate fails: format,
length, language, PII, duplicate of existing data, label (the nearest category centroid in
MiniLM space must be the requested one) and copy (cosine to an existing question too high).

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

import random
import re

import pandas as pd
import torch

from ftkit.data import clean, dedup, pii
from ftkit.models.embeddings import encode

SYSTEM = "You are a customer support agent of an online shop. Answer in two short sentences."
_LEADING = re.compile(r"^[\s\"'\-*\d.)]+")
_MARKERS = ("###", "<|", "Customer message", "Assistant:", "Human:")


def few_shot_prompt(seeds: list[str], category: str) -> str:
    """The plain-text few-shot prompt that the model continues with one new question."""
    lines = [f"Customer message ({category}): {s}" for s in seeds]
    return "\n".join(lines + [f"Customer message ({category}):"])


def pick_seeds(instructions: list[str], labels: list[str], category: str, n_shots: int,
               rng: random.Random) -> list[str]:
    """``n_shots`` short, tag-free instructions of ``category`` (the redaction tags would be
    copied by the model)."""
    pool = [t for t, y in zip(instructions, labels)
            if y == category and "[" not in t and len(t.split()) <= 30]
    return rng.sample(pool, min(n_shots, len(pool)))


def _left_padded(tokenizer, texts: list[str]) -> dict:
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"  # generation continues from the right end of each row
    try:
        return tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side


@torch.inference_mode()
def _generate(model, tokenizer, texts: list[str], max_new_tokens: int, sample: bool,
              temperature: float = 0.9) -> list[str]:
    enc = _left_padded(tokenizer, texts).to(model.device)
    kwargs = dict(do_sample=True, temperature=temperature, top_p=0.95) if sample else \
        dict(do_sample=False)
    out = model.generate(**enc, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id
                         or tokenizer.eos_token_id, **kwargs)
    return tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)


def _batched(model, tokenizer, texts: list[str], max_new_tokens: int, sample: bool, progress,
             desc: str, batch_size: int = 8) -> list[str]:
    starts = range(0, len(texts), batch_size)
    out: list[str] = []
    for start in (progress(starts, desc=desc) if progress else starts):
        out += _generate(model, tokenizer, texts[start:start + batch_size], max_new_tokens, sample)
    return out


def generate_candidates(model, tokenizer, instructions: list[str], labels: list[str],
                        categories: list[str], n: int, n_shots: int = 4,
                        max_new_tokens: int = 40, seed: int = 0, progress=None) -> pd.DataFrame:
    """``n`` candidate (instruction, response, category) rows, categories taken in turn."""
    rng = random.Random(seed)
    torch.manual_seed(seed)
    wanted = [categories[i % len(categories)] for i in range(n)]
    prompts = [few_shot_prompt(pick_seeds(instructions, labels, c, n_shots, rng), c)
               for c in wanted]
    raw = _batched(model, tokenizer, prompts, max_new_tokens, True, progress, "questions")
    questions = [r.strip().split("\n")[0].strip() for r in raw]  # one new line of the list
    chats = [tokenizer.apply_chat_template(
        [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q or "?"}],
        tokenize=False, add_generation_prompt=True) for q in questions]
    answers = [a.strip() for a in _batched(model, tokenizer, chats, 2 * max_new_tokens, False,
                                           progress, "answers")]
    return pd.DataFrame({"instruction": questions, "response": answers, "category": wanted})


def _format_ok(row, ctx) -> bool:
    text = _LEADING.sub("", row.instruction)
    return bool(text) and not any(m in row.instruction + row.response for m in _MARKERS)


def _length_ok(row, ctx) -> bool:
    q, a = len(row.instruction.split()), len(row.response.split())
    return ctx["min_words"] <= q <= ctx["max_words"] and a >= ctx["min_words"]


def _language_ok(row, ctx) -> bool:
    return clean.language_reason(f"{row.instruction} {row.response}") is None


def _no_pii(row, ctx) -> bool:
    return not pii.find_pii(f"{row.instruction} {row.response}")


def _not_duplicate(row, ctx) -> bool:
    mine = dedup.shingles(row.instruction)
    if dedup.exact_key(row.instruction) in ctx["keys"]:
        return False
    return all(dedup.jaccard(mine, s) < ctx["jaccard"] for s in ctx["shingles"])


def _label_ok(row, ctx) -> bool:
    return ctx["nearest"][row.Index] == row.category


def _not_copy(row, ctx) -> bool:
    return ctx["max_cosine"][row.Index] < ctx["max_similarity"]


CHECKS = {"format": _format_ok, "length": _length_ok, "language": _language_ok,
          "PII": _no_pii, "duplicate of existing": _not_duplicate,
          "label mismatch": _label_ok, "too similar to existing": _not_copy}


def _embedding_context(candidates: pd.DataFrame, existing: pd.DataFrame, encoder) -> dict:
    """Nearest category centroid and highest cosine to existing questions, per candidate."""
    model, tok = encoder
    cand = encode(model, tok, [t or "?" for t in candidates["instruction"]])
    base = encode(model, tok, list(existing["instruction"]))
    cats = sorted(set(existing["category"]))
    mask = {c: torch.tensor((existing["category"] == c).to_numpy()) for c in cats}
    centroids = torch.nn.functional.normalize(torch.stack([base[mask[c]].mean(0) for c in cats]),
                                              dim=-1)
    nearest = [cats[i] for i in (cand @ centroids.T).argmax(1).tolist()]
    return {"nearest": nearest, "max_cosine": (cand @ base.T).max(1).values.tolist()}


def quality_filter(candidates: pd.DataFrame, existing: pd.DataFrame, encoder, min_words: int = 4,
                   max_words: int = 60, jaccard: float = 0.5,
                   max_similarity: float = 0.95) -> pd.DataFrame:
    """``candidates`` plus ``kept`` (bool) and ``reason`` (the first check failed, or "kept").

    Args:
        existing: the real data (instruction, category) that synthetic rows must not copy.
        encoder: ``(model, tokenizer)`` of a sentence encoder (MiniLM) for the label check.
    """
    candidates = candidates.reset_index(drop=True)
    ctx = {"min_words": min_words, "max_words": max_words, "jaccard": jaccard,
           "max_similarity": max_similarity,
           "keys": {dedup.exact_key(t) for t in existing["instruction"]},
           "shingles": [dedup.shingles(t) for t in existing["instruction"]],
           **_embedding_context(candidates, existing, encoder)}
    reasons = []
    for row in candidates.itertuples():
        failed = next((name for name, check in CHECKS.items() if not check(row, ctx)), None)
        reasons.append(failed or "kept")
        if failed is None:  # a later candidate must not duplicate an accepted one
            ctx["keys"].add(dedup.exact_key(row.instruction))
            ctx["shingles"].append(dedup.shingles(row.instruction))
    return candidates.assign(kept=[r == "kept" for r in reasons], reason=reasons)
