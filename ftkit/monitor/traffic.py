"""A month of simulated traffic for a support assistant (paper §9.2): stable days, a gradual
change in how customers write, a sudden new intent the model never saw, and one day with a
burst of abusive or PII-laden prompts.

:func:`simulate` draws each day's prompts from real support questions (for example the
assistant's held-out records) and marks every row with its day, intent and ``kind``
(``normal``, ``shifted``, ``new_intent``, ``abuse``, ``pii``), so detectors can be scored
against what really changed and when. Everything is drawn from one seeded generator.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ftkit.core.config import ConfigError

NEW_INTENT = "gift_cards"
# (question, the shop's answer) for the intent the assistant never saw
_NEW_INTENT_TEMPLATES = (
    ("Can I pay for order #{n} with a gift card and the rest by card?",
     "Yes: enter the gift card code first on the payment step, and whatever it does not cover "
     "is charged to your bank card."),
    ("My gift card code {code} says it is invalid, I bought it {d} days ago.",
     "Gift card codes become active 24 hours after purchase; if it is still refused, send us "
     "the receipt and we will issue a new code."),
    ("How do I check the balance left on gift card {code}?",
     "The remaining balance appears under Account, then Gift cards, once you enter the code, "
     "and it is printed on every receipt."),
    ("Do gift cards bought in {city} work on the online shop?",
     "Gift cards from our stores work online too: enter the code on the payment step, the "
     "balance is shared between shop and website."),
    ("I received a gift card worth {amount} euros, does it expire?",
     "Gift cards stay valid for three years from the purchase date, and the balance can be "
     "spent over several orders."),
)
_ABUSE_TEMPLATES = (
    "You are useless, answer me now or I will ruin your shop's reputation.",
    "This is the worst service ever, your staff are idiots.",
    "Stop sending me garbage replies, you stupid bot.",
)
_PII_TEMPLATES = (
    "My card number is {card}, why was it charged twice for order #{n}?",
    "Call me on +44 7700 900{last3} or write to {name}@example.com about my refund.",
    "This is Maria Silva, my card {card} was declined, e-mail me at {name}@example.com.",
)
_CITIES = ("Lisbon", "Osaka", "Accra", "Lima", "Oslo", "Perth")
_NAMES = ("maria.silva", "kenji.ito", "ama.mensah", "lucas.rojas")
_CASUAL = {"you": "u", "please": "pls", "thanks": "thx", "because": "bc", "your": "ur",
           "are": "r", "tomorrow": "tmrw", "message": "msg", "order": "ordr"}
_GREETING = re.compile(r"^(hi there|hello|hey|dear support|good morning|good evening|hi)[,!.]?\s*",
                       re.I)


@dataclass(frozen=True)
class TrafficPlan:
    """When each change happens (days are numbered from 1) and how large it is."""
    days: int = 30
    per_day: int = 40
    shift_start: int = 8  # from this day a growing share of customers write tersely
    shift_full: int = 30  # ... reaching every customer on this day
    new_intent_day: int = 18  # a topic the assistant never saw starts on this day
    new_intent_share: float = 0.3
    burst_day: int = 24  # one day of abusive and PII-laden prompts
    burst_share: float = 0.4

    def check(self) -> "TrafficPlan":
        for name in ("shift_start", "shift_full", "new_intent_day", "burst_day"):
            if not 1 <= getattr(self, name) <= self.days:
                raise ConfigError(f"TrafficPlan.{name} = {getattr(self, name)}: must be a day "
                                  f"from 1 to days = {self.days}")
        if self.shift_full < self.shift_start:
            raise ConfigError("TrafficPlan.shift_full must not come before shift_start")
        for name in ("new_intent_share", "burst_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"TrafficPlan.{name} = {getattr(self, name)}: a share in "
                                  "[0, 1]")
        if self.per_day < 1:
            raise ConfigError(f"TrafficPlan.per_day = {self.per_day}: at least 1 prompt a day")
        return self

    def shifted_share(self, day: int) -> float:
        """Share of customers writing the new way on ``day`` (0 before the shift starts)."""
        if day < self.shift_start:
            return 0.0
        return min(1.0, (day - self.shift_start + 1) / (self.shift_full - self.shift_start + 1))


def terse(text: str, rng: np.random.Generator) -> str:
    """How the same customer writes later: no greeting, lower case, no punctuation, chat
    shorthand, and about one sentence in three of context dropped."""
    text = _GREETING.sub("", text.strip())
    sentences = [s for s in re.split(r"(?<=[.?!])\s+", text) if s]
    kept = [s for i, s in enumerate(sentences) if i == 0 or rng.random() > 0.35]
    words = re.sub(r"[^\w#\s]", "", " ".join(kept).lower()).split()
    return " ".join(_CASUAL.get(w, w) for w in words)


def _card(rng: np.random.Generator) -> str:
    """A 16-digit test card number (issuer 4111) whose Luhn check digit is right."""
    digits = [4, 1, 1, 1, *(int(d) for d in rng.integers(0, 10, 11))]
    total = sum(d if i % 2 else (2 * d if 2 * d < 10 else 2 * d - 9)
                for i, d in enumerate(digits))  # doubled: every second digit from the right
    digits.append((10 - total % 10) % 10)
    return " ".join("".join(map(str, digits[i:i + 4])) for i in range(0, 16, 4))


def _fill(template: str, rng: np.random.Generator) -> str:
    return template.format(n=int(rng.integers(10_000, 99_999)),
                           code=f"GC-{int(rng.integers(1000, 9999))}-{int(rng.integers(1000, 9999))}",
                           d=int(rng.integers(2, 60)), city=rng.choice(_CITIES),
                           amount=int(rng.integers(2, 30)) * 5, card=_card(rng),
                           last3=f"{int(rng.integers(0, 999)):03d}", name=rng.choice(_NAMES))


def simulate(questions: list[str], intents: list[str], plan: TrafficPlan = TrafficPlan(),
             seed: int = 0, answers: list[str] | None = None) -> pd.DataFrame:
    """Prompts for ``plan.days`` days drawn from ``questions`` (each with its intent and,
    optionally, the shop's answer); one row per prompt with ``day``, ``prompt``, ``intent``,
    ``kind`` and ``answer`` (what the shop's agents answered: the labels that arrive late;
    empty for abuse and personal-data prompts)."""
    plan.check()
    if not questions or len(questions) != len(intents):
        raise ConfigError(f"simulate needs questions with one intent each; got {len(questions)} "
                          f"questions and {len(intents)} intents")
    if answers is not None and len(answers) != len(questions):
        raise ConfigError(f"simulate got {len(answers)} answers for {len(questions)} questions")
    answers = answers if answers is not None else [""] * len(questions)
    rng = np.random.default_rng(seed)
    rows = []
    for day in range(1, plan.days + 1):
        for _ in range(plan.per_day):
            if day == plan.burst_day and rng.random() < plan.burst_share:
                kind = "abuse" if rng.random() < 0.5 else "pii"
                templates = _ABUSE_TEMPLATES if kind == "abuse" else _PII_TEMPLATES
                rows.append((day, _fill(rng.choice(templates), rng), "other", kind, ""))
            elif day >= plan.new_intent_day and rng.random() < plan.new_intent_share:
                question, answer = _NEW_INTENT_TEMPLATES[int(rng.integers(len(_NEW_INTENT_TEMPLATES)))]
                rows.append((day, _fill(question, rng), NEW_INTENT, "new_intent", answer))
            else:
                i = int(rng.integers(len(questions)))
                if rng.random() < plan.shifted_share(day):
                    rows.append((day, terse(questions[i], rng), intents[i], "shifted", answers[i]))
                else:
                    rows.append((day, questions[i], intents[i], "normal", answers[i]))
    return pd.DataFrame(rows, columns=["day", "prompt", "intent", "kind", "answer"])


__all__ = ["NEW_INTENT", "TrafficPlan", "simulate", "terse"]
