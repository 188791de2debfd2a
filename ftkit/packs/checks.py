"""Checks that a converted pack is the real model: each answers something only it can.

- SmolLM2 answers a simple factual chat question correctly;
- Whisper transcribes synthetic speech of everyday words with a low word error rate;
- MiniLM puts a paraphrase closer than an unrelated sentence.
Used in notebooks/00_setup_and_environment.ipynb and tests/test_packs.py.
"""
from __future__ import annotations

FACT_QUESTION = ("What is the capital of France?", "paris")
EVERYDAY_SENTENCE = "The weather is nice today, so we will walk to the park after lunch."
SIMILARITY_TRIPLE = ("A man is playing a guitar on the stage.",
                     "Someone performs music with a guitar in front of an audience.",
                     "The quarterly tax report is due next Monday.")


def check_smollm2(model=None, tokenizer=None) -> dict:
    """Ask the chat model a factual question; ok if the expected word is in the answer."""
    from ..generation import chat
    from ..models import load

    if model is None:
        model, tokenizer = load("smollm2-135m")
    question, expected = FACT_QUESTION
    answer = chat(model, tokenizer, question, max_new_tokens=24)
    return {"question": question, "answer": answer, "ok": expected in answer.lower()}


def check_minilm(model=None, tokenizer=None) -> dict:
    """Cosine similarity to a paraphrase vs to an unrelated sentence; ok if the first wins."""
    from ..embeddings import cosine, encode
    from ..models import load

    if model is None:
        model, tokenizer = load("minilm-l6")
    anchor, paraphrase, unrelated = encode(model, tokenizer, list(SIMILARITY_TRIPLE))
    sim_para, sim_unrel = cosine(anchor, paraphrase), cosine(anchor, unrelated)
    return {"sim_paraphrase": sim_para, "sim_unrelated": sim_unrel, "ok": sim_para > sim_unrel}


def check_whisper(model=None, processor=None, sentence: str = EVERYDAY_SENTENCE,
                  max_wer: float = 0.2) -> dict:
    """Transcribe ``sentence`` spoken by espeak-ng; ok if the WER is at most ``max_wer``."""
    from ..asr import transcribe, wer
    from ..models import load
    from ..speech import synthesize

    if model is None:
        model, processor = load("whisper-tiny.en")
    transcript = transcribe(model, processor, synthesize(sentence))[0]
    score = wer([sentence], [transcript])
    return {"sentence": sentence, "transcript": transcript, "wer": score, "ok": score <= max_wer}


CHECKS = {"smollm2-135m-instruct": check_smollm2, "whisper-tiny.en": check_whisper,
          "all-minilm-l6-v2": check_minilm}
