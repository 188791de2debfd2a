"""ftkit.data.synth: few-shot prompts, batched generation, and the reasons of the quality filter."""
import random

import pandas as pd
import pytest

from ftkit import models
from ftkit.data import synth

EXISTING = pd.DataFrame({
    "instruction": ["I was charged twice for my blender order and want a refund please",
                    "Where is my parcel with the yoga mat, it has not arrived yet",
                    "My invoice shows the wrong amount for the kettle I bought"],
    "category": ["billing", "shipping", "billing"]})


def test_few_shot_prompt_and_seed_picking():
    seeds = synth.pick_seeds(list(EXISTING["instruction"]) + ["Hi [NAME], bill?"],
                             list(EXISTING["category"]) + ["billing"], "billing", 5,
                             random.Random(0))
    assert sorted(seeds) == sorted(EXISTING["instruction"][[0, 2]])  # tags and others left out
    prompt = synth.few_shot_prompt(["a?", "b?"], "billing")
    assert prompt == ("Customer message (billing): a?\nCustomer message (billing): b?\n"
                      "Customer message (billing):")


def test_generate_candidates_with_a_tiny_model():
    model, tok = models.load("tiny-llama")
    out = synth.generate_candidates(model, tok, list(EXISTING["instruction"]),
                                    list(EXISTING["category"]), ["billing", "shipping"], n=3,
                                    n_shots=2, max_new_tokens=4, seed=0)
    assert list(out.columns) == ["instruction", "response", "category"]
    assert list(out["category"]) == ["billing", "shipping", "billing"]
    assert tok.padding_side == "right"  # restored after left-padded generation


CANDIDATES = pd.DataFrame([
    ("###Human: hi there how are you today", "Fine thanks, how can I help you today?", "billing"),
    ("Refund?", "Yes we can refund the order for you today.", "billing"),
    ("¿Dónde está mi pedido? Lo compré hace una semana y no llega.", "Está en camino hoy.",
     "shipping"),
    ("My card 4539 1488 0343 6467 was charged twice for one order", "We will refund it soon.",
     "billing"),
    ("I was charged twice for my blender order and want a refund please", "We will refund it.",
     "billing"),
], columns=["instruction", "response", "category"])


def test_quality_filter_gives_the_first_failed_check():
    encoder = models.load("tiny-bert")
    out = synth.quality_filter(CANDIDATES, EXISTING, encoder)
    assert list(out["reason"]) == ["format", "length", "language", "PII", "duplicate of existing"]
    assert not out["kept"].any()


@pytest.mark.parametrize("check, ctx, ok", [
    ("label mismatch", {"nearest": ["shipping"]}, False),
    ("label mismatch", {"nearest": ["billing"]}, True),
    ("too similar to existing", {"max_cosine": [0.97], "max_similarity": 0.95}, False),
    ("too similar to existing", {"max_cosine": [0.90], "max_similarity": 0.95}, True),
])
def test_embedding_checks(check, ctx, ok):
    row = next(CANDIDATES.iloc[[1]].reset_index(drop=True).itertuples())
    assert synth.CHECKS[check](row, ctx) is ok


def test_accepted_candidates_cannot_duplicate_each_other(monkeypatch):
    q = "Can I pay for the board game order in three monthly instalments without interest"
    twins = pd.DataFrame([(q, "Yes, you can choose that at checkout.", "billing")] * 2,
                         columns=["instruction", "response", "category"])
    monkeypatch.setattr(synth, "_embedding_context",
                        lambda c, e, enc: {"nearest": ["billing"] * 2, "max_cosine": [0.5] * 2})
    out = synth.quality_filter(twins, EXISTING, encoder=None)
    assert list(out["reason"]) == ["kept", "duplicate of existing"]
