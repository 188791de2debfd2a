"""ftkit.data.formatting: templates, chat template, completion-only label mask, length stats."""
import numpy as np
import pytest

from ftkit.data import formatting
from ftkit.models.tiny import tiny_bpe_tokenizer


@pytest.fixture(scope="module")
def tok():
    return tiny_bpe_tokenizer()


def test_paper_template():
    assert formatting.paper_template("Where is it?", "On its way.") == \
        "###Human: Where is it?\n###Assistant: On its way."
    assert formatting.paper_template("Where is it?") == "###Human: Where is it?\n###Assistant:"


@pytest.mark.parametrize("template", list(formatting.TEMPLATES))
def test_prompt_plus_completion_is_the_full_text(tok, template):
    pair = formatting.prompt_completion(tok, "Where is it?", "On its way.", template)
    assert pair["completion"].strip().startswith("On its way.")
    assert formatting.full_text(tok, "Where is it?", "On its way.", template) == \
        pair["prompt"] + pair["completion"]


def test_chat_pair_uses_the_models_template(tok):
    pair = formatting.prompt_completion(tok, "Hi?", "Hello.", "chat")
    assert pair["prompt"].endswith("<|im_start|>assistant\n")
    assert pair["completion"] == "Hello.<|im_end|>"


def test_unknown_template(tok):
    with pytest.raises(ValueError, match="choose one of"):
        formatting.prompt_completion(tok, "a", "b", "alpaca")


@pytest.mark.parametrize("template", list(formatting.TEMPLATES))
def test_label_mask_hides_exactly_the_prompt(tok, template):
    pair = formatting.prompt_completion(tok, "Where is my parcel?", "It ships today.", template)
    enc = formatting.tokenize_with_mask(tok, pair["prompt"], pair["completion"], 256)
    n_prompt = len(tok(pair["prompt"])["input_ids"])
    assert enc["labels"][:n_prompt] == [formatting.IGNORE_INDEX] * n_prompt
    assert enc["labels"][n_prompt:] == enc["input_ids"][n_prompt:]
    assert enc["input_ids"][-1] == tok.eos_token_id
    assert enc["input_ids"].count(tok.eos_token_id) == 1 + pair["prompt"].count("<|im_end|>")
    assert "It ships today." in tok.decode(enc["labels"][n_prompt:])
    assert len(enc["attention_mask"]) == len(enc["input_ids"])


def test_truncation_keeps_masks_aligned(tok):
    enc = formatting.tokenize_with_mask(tok, "prompt " * 20, " answer", max_length=10)
    assert len(enc["input_ids"]) == len(enc["labels"]) == 10
    assert set(enc["labels"]) == {formatting.IGNORE_INDEX}


def test_length_stats_pinned():
    stats = formatting.length_stats(np.array([10, 20, 30, 40, 600]), limit=512)
    assert stats == {"rows": 5, "mean": 140.0, "p50": 30, "p95": 488, "max": 600, "limit": 512,
                     "over_limit": 1}


def test_token_lengths(tok):
    lengths = formatting.token_lengths(tok, ["a", "a a a a"])
    assert lengths.shape == (2,) and lengths[1] > lengths[0]
