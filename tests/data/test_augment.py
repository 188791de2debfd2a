"""ftkit.data.augment: each method changes text in its own way, keeps tags, is seeded."""
import random

import pytest

from ftkit.data import augment

TEXT = "I cannot get a refund for my broken order [NAME] #12345 from the website"


def test_synonym_swap_replaces_known_words_keeping_case_and_punctuation():
    out = augment.synonym_swap("Order arrived broken.", random.Random(0), p=1.0)
    assert out in {"Purchase came damaged.", "Purchase was delivered damaged."}


def test_typo_noise_changes_letters_not_tags_or_numbers():
    out = augment.typo_noise(TEXT, random.Random(0), p=1.0)
    assert out != TEXT and "[NAME]" in out and "#12345" in out
    assert len(out.split()) == len(TEXT.split())


def test_word_dropout_drops_words_but_never_everything_or_tags():
    out = augment.word_dropout(TEXT, random.Random(0), p=0.5)
    assert len(out.split()) < len(TEXT.split()) and "[NAME]" in out
    assert augment.word_dropout("one two", random.Random(0), p=1.0) == "one two"


def test_augment_rows_is_seeded_and_skips_unchanged_copies():
    rows = augment.augment_rows([TEXT, "xyz"], list(augment.METHODS), copies=2, seed=5)
    assert rows == augment.augment_rows([TEXT, "xyz"], list(augment.METHODS), copies=2, seed=5)
    assert all(r["text"] != [TEXT, "xyz"][r["source"]] for r in rows)
    assert {r["method"] for r in rows} <= set(augment.METHODS)


def test_unknown_method():
    with pytest.raises(ValueError, match="choose one of"):
        augment.augment_text(TEXT, "backtranslate", random.Random(0))
