"""Checks that a converted pack is the real model: each answers something only it can.

- SmolLM2 answers a simple factual chat question correctly;
- Whisper transcribes synthetic speech of everyday words with a low word error rate;
- MiniLM puts a paraphrase closer than an unrelated sentence.
Used in notebooks/00_setup_and_environment.ipynb and tests/test_packs.py.
"""
from __future__ import annotations

import time

from ftkit.asr.speech import synthesize
from ftkit.asr.whisper import transcribe, wer
from ftkit.models import load
from ftkit.models.embeddings import cosine, encode
from ftkit.models.generation import chat
from ftkit.models.packs import PACKS, ensure, pack_size
from ftkit.models.packs.core import PackError

FACT_QUESTION = ("What is the capital of France?", "paris")
# Everyday sentences for the Whisper check, scored together (pooled WER). Synthetic speech is
# harder than a human voice: tiny.en mishears some first words ("The weather" -> "But we have").
EVERYDAY_SENTENCES = (
    "The weather is nice today, so we are going to the park.",
    "Please remember to buy milk and bread on your way home.",
    "I will call you back after the meeting this afternoon.",
    "My sister works at the hospital near the train station.",
    "Can you send me the report before Friday?",
)
SIMILARITY_TRIPLE = ("A man is playing a guitar on the stage.",
                     "Someone performs music with a guitar in front of an audience.",
                     "The quarterly tax report is due next Monday.")


def check_smollm2(model=None, tokenizer=None) -> dict:
    """Ask the chat model a factual question; ok if the expected word is in the answer."""
    if model is None:
        model, tokenizer = load("smollm2-135m")
    question, expected = FACT_QUESTION
    answer = chat(model, tokenizer, question, max_new_tokens=24)
    return {"question": question, "answer": answer, "ok": expected in answer.lower()}


def check_minilm(model=None, tokenizer=None) -> dict:
    """Cosine similarity to a paraphrase vs to an unrelated sentence; ok if the first wins."""
    if model is None:
        model, tokenizer = load("minilm-l6")
    anchor, paraphrase, unrelated = encode(model, tokenizer, list(SIMILARITY_TRIPLE))
    sim_para, sim_unrel = cosine(anchor, paraphrase), cosine(anchor, unrelated)
    return {"sim_paraphrase": sim_para, "sim_unrelated": sim_unrel, "ok": sim_para > sim_unrel}


def check_whisper(model=None, processor=None, sentences=EVERYDAY_SENTENCES,
                  max_wer: float = 0.2) -> dict:
    """Transcribe ``sentences`` spoken by espeak-ng; ok if the pooled WER is at most ``max_wer``."""
    if model is None:
        model, processor = load("whisper-tiny.en")
    transcripts = transcribe(model, processor, [synthesize(s) for s in sentences])
    score = wer(list(sentences), transcripts)
    worst = max(zip(sentences, transcripts), key=lambda p: wer([p[0]], [p[1]]))
    return {"wer": score, "worst": f"{worst[0]!r} -> {worst[1]!r}", "ok": score <= max_wer}


CHECKS = {"smollm2-135m-instruct": check_smollm2, "whisper-tiny.en": check_whisper,
          "all-minilm-l6-v2": check_minilm}


def _check_one(name: str) -> dict:

    t0 = time.perf_counter()
    try:
        ensure(name)
    except PackError as err:
        return {"pack": name, "ok": False, "detail": str(err).splitlines()[0]}
    ready_s = time.perf_counter() - t0
    try:
        result = CHECKS[name]()
    except RuntimeError as err:  # e.g. no speech synthesiser for the Whisper check
        result = {"ok": False, "detail": f"check skipped: {err}"}
    detail = result.pop("detail", None) or ", ".join(
        f"{k}={v:.3f}" if isinstance(v, float) else f"{k}={v!r}"
        for k, v in result.items() if k != "ok")
    return {"pack": name, "ok": bool(result["ok"]), "ready_s": round(ready_s, 1),
            "size_mb": round(pack_size(PACKS[name]) / 1e6, 1), "detail": detail}


def run_checks(names: list[str] | None = None, progress=None) -> list[dict]:
    """Build (first time), verify and check each pack; one result row per pack.

    Args:
        names: packs to check (default: all).
        progress: optional wrapper for the loop, e.g. ``ftkit.progress``.
    """
    names = names or list(CHECKS)
    loop = progress(names, desc="packs") if progress else names
    return [_check_one(name) for name in loop]
