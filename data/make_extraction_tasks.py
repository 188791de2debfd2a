"""Generate the checkable support-record task of notebook 18: data/extraction_tasks/.

The shop's assistant should turn a customer message into a record its ticket system can file:
a JSON object ``{"category": ..., "order": ..., "total": ...}``. Because the right record is
known for every message, a program can check an answer exactly, which is what reinforcement
learning with verifiable rewards (GRPO) needs: no learned reward model, no judge.

Messages are built from the same question templates, products and openers as the assistant's
own data (``data/make_support_records.py``), kept short: an opener (half of them), the
question, and sometimes a sentence with the amount paid or one with a distracting number
(years as a customer, a day of the month). The record's fields:

- ``category`` — one of billing, shipping, returns, account, technical (the template's);
- ``order`` — the order number's five digits as a string, or null when the message has none;
- ``total`` — the amount in euros as an integer, or null when the message names none.

Files: ``train.jsonl`` (prompts GRPO and SFT learn from) and ``test.jsonl`` (held out), rows
``{"id", "message", "category", "order", "total"}``; the same bytes on every run of one seed.

    python data/make_extraction_tasks.py                 # seed 7, into data/extraction_tasks
    python data/make_extraction_tasks.py --seed 1 --out /tmp/extraction_tasks
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_support_records import CATEGORIES, CITIES, DEVICES, PRODUCTS, TEMPLATES  # noqa: E402

OPENERS = ["Hello,", "Hi there,", "Hi team,", "Good morning,", "Quick question:"]
AMOUNT = ["I paid {amount}.", "The total was {amount}.", "It cost me {amount}.",
          "That was {amount} with delivery."]
DISTRACTORS = ["I have been a customer for {years} years.", "I ordered it on May {day}.",
               "This is the {nth} time I write."]
NTH = ["second", "third", "fourth"]
SIZES = {"train": 320, "test": 64}


def message(rng: random.Random, category: str) -> dict:
    """One short customer message and its record."""
    question = rng.choice(TEMPLATES[category])[0]
    order, total = str(rng.randint(10000, 99999)), rng.randint(5, 400)
    slots = {"product": rng.choice(PRODUCTS), "order": f"#{order}", "amount": f"{total} euros",
             "days": rng.randint(2, 14), "city": rng.choice(CITIES),
             "device": rng.choice(DEVICES)}
    parts = [rng.choice(OPENERS)] if rng.random() < 0.5 else []
    parts.append(question.format(**slots))
    has_amount = "{amount}" in question
    if not has_amount and rng.random() < 0.45:
        parts.append(rng.choice(AMOUNT).format(**slots))
        has_amount = True
    if rng.random() < 0.3:
        parts.append(rng.choice(DISTRACTORS).format(years=rng.randint(2, 12),
                                                    day=rng.randint(1, 28), nth=rng.choice(NTH)))
    return {"message": " ".join(parts), "category": category,
            "order": order if "{order}" in question else None,
            "total": total if has_amount else None}


def generate(seed: int = 7) -> dict[str, list[dict]]:
    """Both splits; categories take turns so each split is balanced, messages never repeat."""
    rng = random.Random(seed)
    seen: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split, n in SIZES.items():
        rows: list[dict] = []
        while len(rows) < n:
            row = message(rng, CATEGORIES[len(rows) % len(CATEGORIES)])
            if row["message"] not in seen:
                seen.add(row["message"])
                rows.append({"id": f"{split}{len(rows):04d}", **row})
        rng.shuffle(rows)
        splits[split] = rows
    return splits


def check(splits: dict[str, list[dict]]) -> None:
    """Every record can be read back from its message (the reward's ground truth is right)."""
    for rows in splits.values():
        for r in rows:
            numbers = re.findall(r"#(\d{5})", r["message"])
            assert numbers == ([r["order"]] if r["order"] else []), r
            euros = re.findall(r"(\d+) euros", r["message"])
            assert euros == ([str(r["total"])] if r["total"] is not None else []), r


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "extraction_tasks")
    args = parser.parse_args()
    splits = generate(args.seed)
    check(splits)
    args.out.mkdir(parents=True, exist_ok=True)
    for split, rows in splits.items():
        with open(args.out / f"{split}.jsonl", "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        counts = Counter(r["category"] for r in rows)
        print(f"{split}: {len(rows)} rows, {dict(sorted(counts.items()))}, "
              f"with order {sum(r['order'] is not None for r in rows)}, "
              f"with total {sum(r['total'] is not None for r in rows)}")


if __name__ == "__main__":
    main()
