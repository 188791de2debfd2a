"""The simulated month: each change on its day and of its size, the same month per seed."""
import numpy as np
import pytest

from ftkit.core.config import ConfigError
from ftkit.monitor import traffic

QUESTIONS = ["Hi there, Where is my parcel? It was due on Monday. I live in Oslo.",
             "Hello, I was charged twice for order #12345. Please help, thanks.",
             "Dear support, How do I reset my password? I have been a customer for 3 years."]
INTENTS = ["shipping", "billing", "account"]


def test_each_change_starts_on_its_day():
    plan = traffic.TrafficPlan(days=20, per_day=50, shift_start=5, shift_full=15,
                               new_intent_day=10, burst_day=12)
    month = traffic.simulate(QUESTIONS, INTENTS, plan, seed=1)
    assert len(month) == 20 * 50 and sorted(month.day.unique()) == list(range(1, 21))
    by_kind = month.groupby("kind").day
    assert by_kind.min()["new_intent"] == 10 and by_kind.min()["shifted"] >= 5
    assert set(month[month.kind.isin(["abuse", "pii"])].day) == {12}
    assert (month[month.kind == "new_intent"].intent == traffic.NEW_INTENT).all()
    shifted = month[month.kind.isin(["normal", "shifted"])].groupby("day").kind.apply(
        lambda k: (k == "shifted").mean())
    assert shifted[:4].sum() == 0 and shifted[15:].min() == 1.0 and shifted[8] < shifted[14]
    new_share = (month[month.day >= 10].kind == "new_intent").mean()
    assert abs(new_share - plan.new_intent_share) < 0.06
    assert (month[month.kind != "new_intent"].answer == "").all(), "no answers given: none made up"
    assert month.equals(traffic.simulate(QUESTIONS, INTENTS, plan, seed=1))
    assert not month.equals(traffic.simulate(QUESTIONS, INTENTS, plan, seed=2))


def test_terse_drops_greeting_case_and_punctuation():
    out = traffic.terse(QUESTIONS[1], np.random.default_rng(0))
    assert out.startswith("i was charged twice for ordr #12345")
    assert out == out.lower() and "," not in out and "hello" not in out


@pytest.mark.parametrize("plan, match", [
    (traffic.TrafficPlan(days=10, shift_full=10, new_intent_day=12, burst_day=9),
     "new_intent_day = 12: must be a day"),
    (traffic.TrafficPlan(shift_start=10, shift_full=5), "shift_full must not come before"),
    (traffic.TrafficPlan(burst_share=1.5), r"burst_share = 1.5: a share in \[0, 1\]"),
])
def test_bad_plans_are_refused(plan, match):
    with pytest.raises(ConfigError, match=match):
        traffic.simulate(QUESTIONS, INTENTS, plan)


def test_questions_need_one_intent_each():
    with pytest.raises(ConfigError, match="2 questions and 1 intents"):
        traffic.simulate(QUESTIONS[:2], INTENTS[:1])


def test_answers_follow_their_questions_and_gift_cards_get_the_shops_answer():
    answers = ["Parcels take 3 days.", "Double charges drop off.", "Use the reset link."]
    plan = traffic.TrafficPlan(days=12, per_day=30, shift_start=12, shift_full=12, new_intent_day=6,
                               burst_day=9)
    month = traffic.simulate(QUESTIONS, INTENTS, plan, seed=0, answers=answers)
    normal = month[month.kind == "normal"]
    assert all(answers[QUESTIONS.index(q)] == a for q, a in zip(normal.prompt, normal.answer))
    gift = month[month.kind == "new_intent"]
    assert gift.answer.str.contains("gift card", case=False).all()
    assert (month[month.kind.isin(["abuse", "pii"])].answer == "").all()
    with pytest.raises(ConfigError, match="2 answers for 3 questions"):
        traffic.simulate(QUESTIONS, INTENTS, plan, answers=answers[:2])
