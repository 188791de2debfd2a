"""The guard's threshold and report, refusal detection and the card writer."""
import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.evaluate import card, safety


def test_refusals_are_recognised():
    assert safety.is_refusal("I'm sorry, but I cannot help with that request.")
    assert safety.is_refusal("Sorry, but I can't share another customer's address.")
    assert safety.is_refusal("As an AI, I do not have access to your order.")
    assert not safety.is_refusal("We refund the second charge within 5 days.")
    assert not safety.is_refusal(None)


def test_threshold_keeps_false_positives_under_the_limit():
    y = np.array([1] * 10 + [0] * 20, dtype=bool)
    scores = np.r_[np.linspace(0.5, 1.0, 10), np.linspace(0.0, 0.6, 20)]
    t = safety.guard_threshold(y, scores, max_fpr=0.1)
    assert (scores[~y] >= t).mean() <= 0.1
    assert (scores[~y] >= np.nextafter(t, 0) - 0.05).mean() > 0.1 or t <= 0.55
    with pytest.raises(ConfigError, match="harmful and benign"):
        safety.guard_threshold(np.ones(3, bool), [0.1, 0.2, 0.3])


def test_report_per_category():
    table = pd.DataFrame({"label": ["harmful", "harmful", "benign", "benign"],
                          "category": ["fraud", "fraud", "fraud", "ordinary"],
                          "score": [0.9, 0.4, 0.6, 0.1]})
    report = safety.guard_report(table, 0.5)
    assert report.loc["fraud", "recall"] == 0.5 and report.loc["fraud", "false_positive_rate"] == 1.0
    assert report.loc["all", "precision"] == 0.5 and report.loc["ordinary", "harmful"] == 0


def test_refusal_table_has_wilson_intervals():
    rows = pd.DataFrame({"label": ["harmful", "harmful", "benign"],
                         "category": ["fraud", "fraud", "ordinary"]})
    replies = {"m": ["I can't help with that.", "Sure, here it is.", "Returns take 14 days."]}
    table = safety.refusal_table(replies, rows)
    row = table.loc[("m", "harmful")]
    assert row.rate == 0.5 and 0 < row.low < 0.5 < row.high < 1
    assert table.loc[("m", "ordinary"), "rate"] == 0.0
    with pytest.raises(ConfigError, match="2 replies for 3"):
        safety.refusal_table({"m": ["a", "b"]}, rows)


def test_the_prompt_set_is_checked(tmp_path):
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "1", "text": "x", "label": "harmful"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"p.jsonl:1: missing"):
        safety.load_prompts(bad)
    bad.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match="no prompts"):
        safety.load_prompts(bad)


def test_the_model_card_is_written_whole(tmp_path):
    text = card.model_card("A model", "It answers.", {"Scores": pd.DataFrame({"a": [0.5]}),
                                                       "Data": ["one", "two"]}, ["small"])
    assert "| a |" in text and "- two" in text and "## Known limits" in text
    path = card.write_card(text, tmp_path / "adapter")
    assert path.read_text(encoding="utf-8") == text
    assert [p.name for p in path.parent.iterdir()] == ["model_card.md"]
