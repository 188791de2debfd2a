"""Daily signals: drift and PII show up on the days they happen; a bad day is reported and
the next one is scored."""
import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import signals, traffic

QUESTIONS = ["Hi there, Where is my parcel? It was due on Monday. I live in Oslo.",
             "Hello, I was charged twice for order #12345. Please help, thanks.",
             "Dear support, How do I reset my password? I have been a customer for 3 years.",
             "Good morning, Can I return the shoes I bought last week? They are too small."]
INTENTS = ["shipping", "billing", "account", "returns"]


def embed(texts):
    """Letter counts: enough to tell the shop's questions from gift-card ones."""
    out = np.zeros((len(texts), 26))
    for i, t in enumerate(texts):
        for ch in t.lower():
            if "a" <= ch <= "z":
                out[i, ord(ch) - 97] += 1
    return out / np.maximum(out.sum(1, keepdims=True), 1)


def test_drift_and_pii_show_on_their_days():
    plan = traffic.TrafficPlan(days=12, per_day=30, shift_start=12, shift_full=12,
                               new_intent_day=9, new_intent_share=0.5, burst_day=6)
    month = traffic.simulate(QUESTIONS, INTENTS, plan, seed=3)
    table, problems = signals.daily_signals(month, embed, [1, 2, 3], window=2, n_permutations=100)
    assert not problems and list(table.index) == list(range(1, 13))
    assert table.drift_launch.loc[9:].min() > table.drift_launch.loc[[2, 3, 4, 5]].max()
    assert table.p_launch.loc[9:].max() < 0.05
    # the recent window sees the jump on day 9 and, two days later, the topic as normal
    assert table.drift_recent[9] > 3 * table.drift_recent.loc[[3, 4, 5, 7, 8]].max()
    assert table.drift_recent[12] < table.drift_recent[9] / 3
    assert table.novel_share.loc[9:].mean() > 0.3 and table.novel_share.loc[:5].max() < 0.1
    assert table.pii_rate[6] > 0.05 and table.pii_rate.drop(6).max() == 0
    assert table.abuse_rate[6] > 0.05 and table.abuse_rate.drop(6).max() == 0
    novel = month.loc[table.attrs["novel_rows"]]
    assert novel.kind.isin(["new_intent", "abuse", "pii"]).mean() > 0.9


def test_a_bad_day_is_reported_and_the_next_day_is_scored():
    frame = pd.DataFrame({"day": [1] * 8 + [2] * 2 + [3] * 8 + [4],
                          "prompt": QUESTIONS * 2 + QUESTIONS[:2] + QUESTIONS * 2 + ["  "]})
    table, problems = signals.daily_signals(frame, embed, [1], n_permutations=20)
    assert np.isnan(table.drift_launch[2]) and not np.isnan(table.drift_launch[3])
    assert table.prompts[4] == 0 and np.isnan(table.pii_rate[4])
    assert [p.split(":")[0] for p in problems] == [
        "day 2 (launch drift)", "day 2 (recent drift)", "day 2 (length)", "day 4"]
    assert "current window has 2 rows" in problems[0]


def test_missing_columns_and_a_tiny_reference_are_refused():
    frame = pd.DataFrame({"day": [1, 2], "text": ["a", "b"]})
    with pytest.raises(ConfigError, match=r"no prompt column 'prompt'.*\['day', 'text'\]"):
        signals.daily_signals(frame, embed, [1])
    with pytest.raises(ConfigError, match=r"reference days \[1\] hold 1 prompts"):
        signals.daily_signals(frame, embed, [1], prompt_column="text")


def test_novel_prompts_group_into_topics():
    month = traffic.simulate(QUESTIONS, INTENTS, traffic.TrafficPlan(
        days=6, per_day=30, shift_start=6, shift_full=6, new_intent_day=4, new_intent_share=0.5,
        burst_day=6),
        seed=1)
    table, _ = signals.daily_signals(month, embed, [1, 2], n_permutations=20)
    novel = month.loc[table.attrs["novel_rows"]]
    topics = signals.new_topics(novel.prompt.tolist(), embed(novel.prompt.tolist()),
                                novel.day.tolist(), n_topics=2)
    assert topics.prompts.sum() == len(novel) and topics.first_day.min() >= 4
    assert "gift" in topics.top_words[0] or "card" in topics.top_words[0]
    with pytest.raises(ConfigError, match="cannot form 3 topics"):
        signals.new_topics(["a", "b"], np.eye(2), [1, 1], n_topics=3)


def test_abusive_words_are_whole_words():
    assert signals.is_abusive("you STUPID bot") and not signals.is_abusive("a stupidity test")
