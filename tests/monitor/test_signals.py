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
    table, problems = signals.daily_signals(month, embed, [1, 2, 3], n_permutations=100)
    assert not problems and list(table.index) == list(range(1, 13))
    assert table.drift_neglog10p.loc[9:].min() > table.drift_neglog10p.loc[[2, 3, 4, 5]].max()
    assert table.pii_rate[6] > 0.05 and table.pii_rate.drop(6).max() == 0


def test_a_bad_day_is_reported_and_the_next_day_is_scored():
    frame = pd.DataFrame({"day": [1] * 8 + [2] * 2 + [3] * 8 + [4],
                          "prompt": QUESTIONS * 2 + QUESTIONS[:2] + QUESTIONS * 2 + ["  "]})
    table, problems = signals.daily_signals(frame, embed, [1], n_permutations=20)
    assert np.isnan(table.drift_neglog10p[2]) and not np.isnan(table.drift_neglog10p[3])
    assert table.prompts[4] == 0 and np.isnan(table.pii_rate[4])
    assert [p.split(":")[0] for p in problems] == ["day 2", "day 4"]
    assert "current window has 2 rows" in problems[0]


def test_missing_columns_and_a_tiny_reference_are_refused():
    frame = pd.DataFrame({"day": [1, 2], "text": ["a", "b"]})
    with pytest.raises(ConfigError, match=r"no prompt column 'prompt'.*\['day', 'text'\]"):
        signals.daily_signals(frame, embed, [1])
    with pytest.raises(ConfigError, match=r"reference days \[1\] hold 1 prompts"):
        signals.daily_signals(frame, embed, [1], prompt_column="text")
