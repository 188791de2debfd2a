"""Response signals: refusals, answer recall, the intent router and judges, per day."""
import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import responses

TOPICS = {"billing": "charged card invoice refund payment", "shipping": "parcel courier delivery tracking",
          "gift_cards": "gift card code balance voucher"}


def embed(texts):
    """Bag of the topic words: enough to tell the three topics apart."""
    vocab = sorted({w for words in TOPICS.values() for w in words.split()})
    out = np.array([[t.lower().count(w) for w in vocab] for t in texts], dtype=float)
    return out + 1e-3


def fitted():
    texts = [f"{w} please" for words in TOPICS.values() for w in words.split()]
    labels = [k for k, words in TOPICS.items() for _ in words.split()]
    return responses.IntentModel(embed).fit(texts, labels)


def test_answer_and_topic_judges_tell_on_topic_from_right():
    model = fitted()
    assert model.predict(["where is my parcel, the courier lost it"]) == ["shipping"]
    replies = ["Your gift card balance is under Account.", "Gift cards expire after 30 days.", ""]
    answers = ["The gift card balance appears under Account, then Gift cards."] * 3
    right = responses.answer_correct(replies, answers, threshold=0.5)
    assert right.tolist() == [1.0, 0.0, 0.0]
    assert responses.topic_correct(model, replies, ["gift_cards"] * 3).tolist() == [1.0, 1.0, 0.0]
    with pytest.raises(ConfigError, match="a share in"):
        responses.answer_correct(replies, answers, threshold=0.0)
    with pytest.raises(ConfigError, match="at least two classes"):
        responses.IntentModel(embed).fit(["a", "b"], ["x", "x"])


def test_response_signals_per_day_with_late_labels():
    rows = pd.DataFrame({
        "day": [1, 1, 2, 2, 3, 3],
        "prompt": ["charged twice on my card", "parcel tracking stuck", "gift card code fails",
                   "gift card balance", "refund to card", "courier delivery"],
        "reply": ["We refund the charge.", "I cannot help with that.", "", "Your card is fine.",
                  "The refund is on its way.", "Delivery is tomorrow."],
        "seconds": [0.5, 1.5, 30.0, 2.0, 0.4, 0.6],
        "error": ["", "", "Timeout", "", "", ""],
        "answer": ["We refund the charge within 5 days.", "", "Codes activate in 24 hours.",
                   "Balance is under Account.", "Refund in 5 days.", "Delivery takes 2 days."]})
    table = responses.response_signals(rows, fitted(), labels_until=2)
    assert table.error_rate.tolist() == [0.0, 0.5, 0.0]
    assert table.refusal_rate[1] == 0.5 and table.latency_p95_s[2] == 2.0
    assert table.intent_uncertainty.between(0, 1).all()
    # day 1: "refund" and "charge" of {refund, charge, 5, days}; the row without answer is skipped
    assert table.answer_miss[1] == 0.5 and np.isnan(table.answer_miss[3]), "day 3: no labels yet"
    with pytest.raises(ConfigError, match="no reply column"):
        responses.response_signals(rows.drop(columns="reply"), fitted())
