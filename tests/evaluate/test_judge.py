"""The rule-based judge: correctness, compliance with the requested length, win rates."""
from pathlib import Path

import pytest

from ftkit.data import preferences
from ftkit.evaluate import judge

DATA = Path(__file__).resolve().parents[2] / "data" / "preferences" / "preferences.jsonl"


@pytest.mark.parametrize("reply, answer, max_words, correct, compliant", [
    ("Paris", "Paris", 1, True, True),
    ("paris.", "Paris", 1, True, True),
    ("The capital of France is Paris.", "Paris", 1, True, False),
    ("Lyon", "Paris", 1, False, True),
    ("Buenos Aires", "Buenos Aires", 2, True, True),
    ("Buenos", "Buenos Aires", 2, False, True),
    ("12", "2", 1, False, True),          # whole words only: "12" does not contain "2"
    ('"mice"', "mice", 1, True, True),
    ("", "mice", 1, False, False),
])
def test_judge(reply, answer, max_words, correct, compliant):
    got = judge.judge(reply, answer, max_words)
    assert (got["correct"], got["compliant"]) == (correct, compliant)
    assert got["score"] == int(correct) + int(compliant)


def test_win_rate_counts_ties_as_half():
    assert judge.win_rate([2, 1, 0, 1], [1, 1, 1, 0]) == pytest.approx((1 + 0.5 + 0 + 1) / 4)
    with pytest.raises(ValueError):
        judge.win_rate([1], [1, 2])
    with pytest.raises(ValueError):
        judge.win_rate([], [])


def test_judge_rows_and_summary():
    rows = [{"answer": "7", "max_words": 1}, {"answer": "cold", "max_words": 1}]
    judged = judge.judge_rows(["7", "It is cold today."], rows)
    assert judge.summary(judged) == {"judge_score": 1.5, "correct": 1.0, "compliant": 0.5,
                                     "mean_words": 2.5}
    with pytest.raises(ValueError):
        judge.judge_rows(["7"], rows)


def test_judge_prefers_every_chosen_reply_in_the_data():
    rows = preferences.load(DATA).rows
    chosen = judge.judge_rows([r["chosen"] for r in rows], rows)
    rejected = judge.judge_rows([r["rejected"] for r in rows], rows)
    for r, c, j in zip(rows, chosen, rejected):
        assert c["score"] == 2 and j["score"] == 1, r


def test_a_sentence_ask_needs_a_sentence():
    row = {"answer": "Paris", "max_words": 12, "min_words": 3}
    short, full = judge.judge_rows(["Paris", "The capital is Paris."], [row, row])
    assert (short["correct"], short["compliant"]) == (True, False)
    assert (full["correct"], full["compliant"]) == (True, True)


def test_token_f1_counts_shared_words():
    assert judge.token_f1("Your parcel ships today", "your parcel ships today.") == 1.0
    assert judge.token_f1("", "anything") == 0.0 and judge.token_f1("a b", "c d") == 0.0
    # 2 shared of 4 reply words and of 2 reference words: P 0.5, R 1.0
    assert abs(judge.token_f1("refund sent to you", "refund sent") - 2 / 3) < 1e-12
