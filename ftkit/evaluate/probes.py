"""Small fixed probes of general ability: factual chat questions and general-text paragraphs.

Written for ftkit. Used to check a pretrained model before fine-tuning and to measure what
fine-tuning forgets (notebooks 03, 05, 06).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ftkit.core.config import Section, param

# (question, words of which one must appear in a correct answer)
FACT_QUESTIONS = [
    ("What is the capital of France?", ("paris",)),
    ("Which planet is known as the Red Planet?", ("mars",)),
    ("How many days are there in a week?", ("seven", "7")),
    ("What is the largest ocean on Earth?", ("pacific",)),
    ("What do bees make?", ("honey",)),
    ("What is the freezing point of water in degrees Celsius?", ("0", "zero")),
    ("Who wrote the play Romeo and Juliet?", ("shakespeare",)),
    ("What colour is the sky on a clear day?", ("blue",)),
]

GENERAL_TEXTS = [
    "The river runs through the middle of the old town, and in summer people sit along its "
    "banks to read, talk and watch the boats go by.",
    "Water boils at one hundred degrees Celsius at sea level. At higher altitudes the air "
    "pressure is lower, so water boils at a lower temperature.",
    "A good breakfast might include bread, fruit and a cup of tea or coffee. Many people "
    "prefer something quick on busy mornings.",
    "The library opens at nine in the morning and closes at six in the evening. Books can be "
    "borrowed for three weeks and renewed online.",
    "Plants use sunlight, water and carbon dioxide to make sugar, and they release oxygen as "
    "a by-product of this process.",
    "When the train was delayed, the passengers waited on the platform and checked the "
    "timetable for the next connection.",
    "Learning a musical instrument takes patience. Short daily practice usually helps more "
    "than one long session each week.",
    "The football match ended in a draw after both teams scored in the second half.",
]


def general_texts(limit: int = 0, path: str | None = None) -> list[str]:
    """General text to measure forgetting on: :data:`GENERAL_TEXTS`, then the questions of
    the project's general-knowledge task (``data/eval_tasks/general_knowledge.jsonl``) each
    followed by its right answer; the first ``limit`` of them (0: all)."""
    source = Path(path) if path else \
        Path(__file__).resolve().parents[2] / "data" / "eval_tasks" / "general_knowledge.jsonl"
    texts = list(GENERAL_TEXTS)
    if source.is_file():
        for line in source.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                texts.append(f"{row['question']} {row['choices'][row['answer']]}.")
    return texts[:limit] if limit else texts


def answer_is_correct(answer: str, expected: tuple[str, ...]) -> bool:
    """True if one of the expected words appears in the answer as a whole word."""
    words = set("".join(c if c.isalnum() else " " for c in answer.lower()).split())
    return any(e in words for e in expected)


@dataclass(frozen=True)
class ProbeSettings(Section):
    """How many of the fixed probes a notebook asks (notebook 03)."""
    n_questions: int = param(8, "Factual questions asked before and after quantisation.",
                             min=1, max=len(FACT_QUESTIONS))
