"""PII redaction (paper §3.3 and §3.5.5, ethical data handling): find and mask personal data.

Detectors run in a fixed order, each replacing what it finds with a tag such as ``[EMAIL]``:

1. e-mail addresses (a regular expression);
2. card-like numbers: 13-19 digits, optionally grouped by spaces or dashes, kept only when the
   Luhn checksum passes, so an order or tracking number of the same shape is left alone (the
   report counts those as ``card_like_kept``);
3. phone numbers: an optional +country code, then 3-4 groups of digits (brackets, spaces,
   dots or dashes), 9 to 12 digits in all;
4. personal names from a built-in list of first names (optionally followed by a capitalised
   surname): a list misses every name it does not hold;
5. names by context: one or two capitalised words right after a phrase that introduces or
   addresses a person ("my name is", "this is", "I am", "hi", "dear" …), whatever the name.
   It misses a name mentioned without such a cue; a model-based recogniser would be the next
   step.

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Callable

FIRST_NAMES = (
    "Aisha Alice Amir Ana Anna Carlos Chen Chloe Daniel David Dmitri Elena Emma Fatima Hannah "
    "Hiroshi Ingrid Isabel James Jonas Kwame Laura Liam Lucas Maria Mateo Mohammed Nina Noah "
    "Olivia Omar Pedro Priya Rahul Sara Sofia Thomas Yuki Zoe").split()

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])")
PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})(?:[ .-]?\d{2,4}){2,3}\b")
NAME = re.compile(r"\b(?:" + "|".join(FIRST_NAMES) + r")\b(?:\s+[A-Z][a-zà-ÿ]+(?:-[A-Z][a-z]+)?)?")


def luhn_ok(number: str) -> bool:
    """The Luhn checksum that card numbers satisfy (digits only; separators ignored)."""
    digits = [int(c) for c in number if c.isdigit()]
    total = 0
    for i, d in enumerate(reversed(digits)):
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return len(digits) >= 13 and total % 10 == 0


def _sub(pattern: re.Pattern, tag: str, keep: Callable[[str], bool] | None = None):
    """A detector: replaces matches with ``tag``; returns (text, found, kept-because-not-PII)."""
    def detect(text: str) -> tuple[str, list[str], list[str]]:
        found, kept = [], []

        def repl(m: re.Match) -> str:
            value = m.group(0)
            if keep is not None and keep(value):
                kept.append(value)
                return value
            found.append(value)
            return tag
        return pattern.sub(repl, text), found, kept
    return detect


CUES = r"(?i:my name is|this is|i am|i'm|hi|hello|dear|regards,|thanks,)"
NAME_IN_CONTEXT = re.compile(r"\b(" + CUES + r"\s+)([A-Z][a-zà-ÿ]+(?:[ -][A-Z][a-zà-ÿ]+)?)\b")


def _names_in_context(text: str) -> tuple[str, list[str], list[str]]:
    """Detector 5: the capitalised words after a cue become ``[NAME]``; the cue stays."""
    found: list[str] = []

    def repl(m: re.Match) -> str:
        found.append(m.group(2))
        return m.group(1) + "[NAME]"
    return NAME_IN_CONTEXT.sub(repl, text), found, []


def listed_name(value: str) -> bool:
    """Whether a name starts with a first name of the built-in list (detector 4)."""
    return value.split()[0] in FIRST_NAMES if value.strip() else False


def _not_a_phone(value: str) -> bool:
    # under 9 digits: an order number or a price; 13 or more: card-like, which the card
    # detector (run first) kept because it failed the Luhn check, e.g. a tracking number
    digits = sum(c.isdigit() for c in value)
    return digits < 9 or digits >= 13


DETECTORS = {"email": _sub(EMAIL, "[EMAIL]"),
             "card": _sub(CARD, "[CARD]", keep=lambda v: not luhn_ok(v)),
             "phone": _sub(PHONE, "[PHONE]", keep=_not_a_phone),
             "name": _sub(NAME, "[NAME]"),
             "name_in_context": _names_in_context}


def redact(text: str) -> tuple[str, dict[str, list[str]]]:
    """``text`` with PII masked, and what was found per type (plus ``card_like_kept``)."""
    found: dict[str, list[str]] = {}
    for kind, detect in DETECTORS.items():
        text, hits, kept = detect(text)
        found[kind] = hits
        if kind == "card":
            found["card_like_kept"] = kept
    return text, found


def find_pii(text: str) -> dict[str, int]:
    """How many PII values of each type ``text`` contains (zero types left out)."""
    _, found = redact(text)
    return {k: len(v) for k, v in found.items() if v and k != "card_like_kept"}


def redact_texts(texts: list[str]) -> tuple[list[str], Counter, list[tuple[str, str]]]:
    """Redact many texts; returns them, counts per type, and (before, after) examples."""
    out, counts, examples = [], Counter(), []
    for text in texts:
        new, found = redact(text)
        counts.update({k: len(v) for k, v in found.items()})
        if new != text and len(examples) < 3:
            examples.append((text, new))
        out.append(new)
    return out, counts, examples
