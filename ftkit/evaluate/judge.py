"""A rule-based judge for the terse-answer preference task (paper §6.9.2: evaluate on the target).

Each reply earns one point for **correctness** (the expected answer appears in it as whole
words, case-insensitive) and one for **compliance** (as many words as the prompt asked for:
at least ``min_words``, default 1, and at most ``max_words``; an empty reply complies with
nothing). The score is the sum, 0-2. Two policies
are compared prompt by prompt: a higher score wins, equal scores tie, and the win rate counts
a tie as half a win — 0.5 means "no better, no worse".

Used in notebooks/08_dpo_alignment.ipynb and notebooks/09_rlhf_reward_and_ppo.ipynb;
:func:`token_f1` / :func:`reply_f1` score free-text support replies against the shop's answers
(notebooks/12_pruning_and_quantisation.ipynb); :func:`fact_recall` reads whether a reply gives
the shop's answer at all (notebooks/15_monitoring.ipynb).
"""
from __future__ import annotations

import re
import statistics
from collections import Counter

from ftkit.models.generation import chat_batch

_WORD = re.compile(r"[A-Za-z0-9]+(?:['-][A-Za-z0-9]+)*")


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``; punctuation and quotes are not words."""
    return [w.lower() for w in _WORD.findall(text)]


def judge(reply: str, answer: str, max_words: int, min_words: int = 1) -> dict:
    """``{"correct", "compliant", "score", "n_words"}`` for one reply."""
    got, want = words(reply), words(answer)
    n = len(want)
    correct = n > 0 and any(got[i:i + n] == want for i in range(len(got) - n + 1))
    compliant = max(min_words, 1) <= len(got) <= max_words
    return {"correct": correct, "compliant": compliant, "score": int(correct) + int(compliant),
            "n_words": len(got)}


def judge_rows(replies: list[str], rows: list[dict]) -> list[dict]:
    """:func:`judge` each reply against its preference row (``answer``, ``max_words`` and
    ``min_words`` when the row has one)."""
    if len(replies) != len(rows):
        raise ValueError(f"{len(replies)} replies for {len(rows)} rows")
    return [judge(r, row["answer"], row["max_words"], row.get("min_words", 1))
            for r, row in zip(replies, rows)]


def win_rate(scores: list[float], reference: list[float]) -> float:
    """Share of prompts where ``scores`` beat ``reference``, ties counting one half."""
    if len(scores) != len(reference) or not scores:
        raise ValueError(f"need equal, non-zero numbers of scores ({len(scores)} vs "
                         f"{len(reference)})")
    return sum(1.0 if s > r else 0.5 if s == r else 0.0
               for s, r in zip(scores, reference)) / len(scores)


def summary(judged: list[dict]) -> dict:
    """Mean score, correctness and compliance, and mean words, over judged replies."""
    return {"judge_score": statistics.mean(j["score"] for j in judged),
            "correct": statistics.mean(j["correct"] for j in judged),
            "compliant": statistics.mean(j["compliant"] for j in judged),
            "mean_words": statistics.mean(j["n_words"] for j in judged)}


def token_f1(reply: str, reference: str) -> float:
    """Word-overlap F1 of a reply with a reference answer (words as :func:`words`, counted
    with multiplicity); 0 when either is empty."""
    got, want = Counter(words(reply)), Counter(words(reference))
    common = sum((got & want).values())
    if common == 0:
        return 0.0
    precision, recall = common / sum(got.values()), common / sum(want.values())
    return 2 * precision * recall / (precision + recall)


STOPWORDS = frozenset(
    "a about after all also an and any are as at be been before by can did do does for from "
    "had has have i if in into is it its me my no not of on once or our out so than that the "
    "then this to up us was we will with within you your".split())


def fact_recall(reply: str, answer: str) -> float:
    """Share of the answer's content words (distinct, stop words left out) found in the reply:
    near 1 when the reply states what the answer states, whatever else it says around it;
    NaN for an answer without content words."""
    want = {w for w in words(answer) if w not in STOPWORDS}
    if not want:
        return float("nan")
    return len(want & set(words(reply))) / len(want)


def reply_f1(model, tokenizer, questions: list[str], answers: list[str],
             max_new_tokens: int = 32) -> float:
    """Mean :func:`token_f1` of the model's greedy replies to ``questions`` against
    ``answers`` (a task score for free-text support answers)."""
    if len(questions) != len(answers) or not questions:
        raise ValueError(f"{len(questions)} questions for {len(answers)} answers")
    replies = chat_batch(model, tokenizer, questions, max_new_tokens)
    return statistics.mean(token_f1(r, a) for r, a in zip(replies, answers))
