"""Generate the shop's fact base and questions about it: data/shop_facts/.

The online shop of the running example (the products of ``make_support_records.py``) sells 60
items: each of its 20 product kinds under three model names ("Kestrel kettle", "Aurora
blender" ...; each model name is used for three kinds, so a name alone does not pick the
item). Every item has four exact facts (price, warranty, item code, weight), each of
its 16 stores two (weekday opening hours, the day it is closed) and each of 10 product
categories one (the return window): 282 facts in all. The values are drawn at random, so no
model can know them beforehand and a guess is almost never right.

Each fact has five question phrasings: three for training (``split`` "train") and two
held out ("heldout"), worded differently, so a model that answers the held-out ones has
learnt the fact, not one sentence. ``updates.jsonl`` changes 10 % of the facts (a new price,
new hours ...): what a shop's data does over time.

Files:
- ``facts.jsonl``: id, subject, attribute, value, text (the fact as one sentence, what a
  retriever indexes), group (the product kind, store or category)
- ``questions.jsonl``: fact, question, split
- ``updates.jsonl``: id, value, text (the fact after the change)

Used in notebook 11_memory_tuning_and_rag (paper §6.5, §1.9). Deterministic for a given seed.

    python data/make_shop_facts.py                 # seed 11
    python data/make_shop_facts.py --seed 3 --out /tmp/facts
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

KINDS = ["wireless headphones", "coffee grinder", "yoga mat", "desk lamp", "rain jacket",
         "phone case", "blender", "backpack", "smart watch", "kettle", "hiking boots",
         "laptop stand", "air fryer", "bike helmet", "water bottle", "office chair",
         "board game", "electric toothbrush", "wool scarf", "bluetooth speaker"]
MODELS = ["Kestrel", "Aurora", "Nimbus", "Juniper", "Falcon", "Orion", "Willow", "Summit",
          "Ember", "Harbor", "Maple", "Quartz", "Lumen", "Pebble", "Cedar", "Atlas", "Comet",
          "Tundra", "Sierra", "Birch"]
CITIES = ["Lisbon", "Leeds", "Austin", "Lyon", "Osaka", "Accra", "Denver", "Porto", "Bergen",
          "Turin", "Dublin", "Quito", "Perth", "Krakow", "Nairobi", "Boston"]
CATEGORIES = ["headphones", "kitchen appliances", "sports gear", "lamps", "clothing",
              "phone accessories", "bags", "watches", "furniture", "games"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]

# attribute -> (sentence, three training phrasings, two held-out phrasings); {s} = subject
TEMPLATES = {
    "price": ("The {s} costs {v}.",
              ["How much does the {s} cost?", "What is the price of the {s}?",
               "What does the {s} sell for?"],
              ["What would I pay for the {s}?", "How expensive is the {s}?"]),
    "warranty": ("The {s} comes with a warranty of {v}.",
                 ["How long is the warranty on the {s}?", "What warranty does the {s} have?",
                  "How long is the {s} guaranteed?"],
                 ["For how long is the {s} covered by warranty?",
                  "What is the warranty period of the {s}?"]),
    "code": ("The item code of the {s} is {v}.",
             ["What is the item code of the {s}?", "Which item code does the {s} have?",
              "Under which code is the {s} listed?"],
             ["Give me the item code for the {s}.", "What code do I order the {s} by?"]),
    "weight": ("The {s} weighs {v}.",
               ["How much does the {s} weigh?", "What is the weight of the {s}?",
                "How heavy is the {s}?"],
               ["What does the {s} weigh?", "What is the {s}'s weight?"]),
    "hours": ("The {s} store is open from {v} on weekdays.",
              ["When is the {s} store open on weekdays?",
               "What are the weekday opening hours of the {s} store?",
               "At what times is the {s} store open on weekdays?"],
              ["What hours does the {s} store keep on weekdays?",
               "When can I visit the {s} store on a weekday?"]),
    "closed": ("The {s} store is closed on {v}.",
               ["On which day is the {s} store closed?", "Which day does the {s} store close?",
                "What is the closing day of the {s} store?"],
               ["Which day of the week is the {s} store shut?",
                "When is the {s} store closed all day?"]),
    "returns": ("Items in {s} can be returned within {v}.",
                ["How long is the return window for {s}?",
                 "Within how many days can I return {s}?",
                 "What is the return period for {s}?"],
                ["How long do I have to send back {s}?",
                 "Until when can {s} be returned?"]),
}


def draw(attribute: str, rng: random.Random) -> str:
    if attribute == "price":
        return f"€{rng.randint(9, 420)}.{rng.choice(['00', '49', '95', '99'])}"
    if attribute == "warranty":
        return f"{rng.choice([6, 12, 18, 24, 30, 36, 48, 60])} months"
    if attribute == "code":
        return f"{rng.choice('ABCDEFGHKLMNPRST')}{rng.choice('ABCDEFGHKLMNPRST')}-{rng.randint(1000, 9999)}"
    if attribute == "weight":
        return f"{rng.randint(80, 9500)} g"
    if attribute == "hours":
        return f"{rng.choice([7, 8, 9, 10])}:{rng.choice(['00', '30'])} to {rng.choice([17, 18, 19, 20, 21])}:{rng.choice(['00', '30'])}"
    if attribute == "closed":
        return rng.choice(DAYS)
    if attribute == "returns":
        return f"{rng.choice([14, 21, 28, 30, 45, 60, 90, 100])} days"
    raise ValueError(attribute)


def subjects(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """(subject, group, attributes): 60 items, 16 stores, 10 categories."""
    models = MODELS[:]
    rng.shuffle(models)
    items = [(f"{models[(3 * i + j) % len(models)]} {kind}", kind,
              ["price", "warranty", "code", "weight"]) for i, kind in enumerate(KINDS)
             for j in range(3)]  # each model name on three kinds of product
    stores = [(city, "stores", ["hours", "closed"]) for city in CITIES]
    cats = [(c, "categories", ["returns"]) for c in CATEGORIES]
    return sorted(items) + stores + cats


def build(seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    rng = random.Random(seed)
    facts, questions = [], []
    for subject, group, attributes in subjects(rng):
        for attribute in attributes:
            sentence, train, heldout = TEMPLATES[attribute]
            value = draw(attribute, rng)
            fid = f"f{len(facts):03d}"
            facts.append({"id": fid, "subject": subject, "attribute": attribute,
                          "value": value, "text": sentence.format(s=subject, v=value),
                          "group": group})
            questions += [{"fact": fid, "question": q.format(s=subject), "split": "train"}
                          for q in train]
            questions += [{"fact": fid, "question": q.format(s=subject), "split": "heldout"}
                          for q in heldout]
    updates = []
    for fact in rng.sample(facts, len(facts) // 10):
        value = draw(fact["attribute"], rng)
        while value == fact["value"]:
            value = draw(fact["attribute"], rng)
        sentence = TEMPLATES[fact["attribute"]][0]
        updates.append({"id": fact["id"], "value": value,
                        "text": sentence.format(s=fact["subject"], v=value)})
    return facts, questions, sorted(updates, key=lambda u: u["id"])


def write(rows: list[dict], path: Path) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default=str(Path(__file__).parent / "shop_facts"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    facts, questions, updates = build(args.seed)
    write(facts, out / "facts.jsonl")
    write(questions, out / "questions.jsonl")
    write(updates, out / "updates.jsonl")
    print(f"{len(facts)} facts, {len(questions)} questions, {len(updates)} updates -> {out}")


if __name__ == "__main__":
    main()
