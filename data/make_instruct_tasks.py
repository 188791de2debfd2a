"""Generate three instruction tasks with exact answers: data/instruct_tasks/tasks.jsonl.

Each task has its own tag and prompt wording, and an answer that can be checked exactly, so the
effect of fine-tuning is a number, not an impression:

- ``extract`` — ``[extract]``: a customer message in free word order; the answer is a JSON
  object with exactly the keys ``name``, ``order`` and ``city`` (a fixed schema the base model
  cannot guess);
- ``date`` — ``[date]``: a sentence with a date written one of eight ways; the answer is the
  date in ISO form, ``YYYY-MM-DD``, and nothing else;
- ``route`` — ``[route]``: a message to the fictional company Lumen Works; the answer is the
  name of the team that handles it (five teams named after birds: facts of an organisation the
  model has never seen).

The test split uses the same templates but fresh slot values (names, numbers, dates are drawn
independently), so a model that copies and converts scores well and one that memorises does
not. Deterministic for a given seed.

Used in notebooks 05_full_vs_peft, 06_lora_vs_dora and 07_adapter_merging (paper §6.1-6.4).

    python data/make_instruct_tasks.py                 # seed 7, 600 examples per task
    python data/make_instruct_tasks.py --n 200 --seed 1 --out /tmp/tasks.jsonl
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

FIRST = ["Ada", "Bram", "Chiara", "Dmitri", "Elif", "Farah", "Goran", "Hana", "Ines", "Jonas",
         "Kemal", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sami", "Tilde",
         "Umar", "Vera", "Wiebke", "Xavier", "Yara", "Zoltan", "Aiko", "Bruno", "Carmen",
         "Dev", "Esme", "Felix", "Greta", "Hugo", "Ivy", "Jamal", "Kira", "Luca", "Mira", "Nils"]
LAST = ["Park", "Okafor", "Lindqvist", "Moreau", "Novak", "Haddad", "Ferreira", "Tanaka",
        "Kowalski", "Brennan", "Osei", "Varga", "Castillo", "Nguyen", "Schmidt", "Rossi",
        "Ibrahim", "Dalton", "Petrov", "Achterberg", "Bianchi", "Costa", "Eriksen", "Fischer",
        "Grant", "Holm", "Jansen", "Keller", "Larsen", "Mendes"]
CITIES = ["Leeds", "Porto", "Graz", "Lyon", "Tampere", "Gdansk", "Utrecht", "Bergen", "Cork",
          "Brno", "Malmo", "Bilbao", "Turin", "Ghent", "Aarhus", "Split", "Vilnius", "Basel",
          "Nantes", "Kassel"]
PRODUCTS = ["desk lamp", "kettle", "rain jacket", "phone case", "yoga mat", "coffee grinder",
            "backpack", "monitor stand", "bike light", "water bottle"]

EXTRACT_INSTRUCTIONS = [
    "[extract] Return the customer's name, order number and city as JSON.",
    "[extract] Give name, order and city from this message as a JSON object.",
    "[extract] Fill the JSON record (name, order, city) for the message below.",
]
EXTRACT_MESSAGES = [
    "Hi, this is {name} from {city}. My order {order} ({product}) has not arrived yet.",
    "Order {order} was a {product} and it came broken. Regards, {name}, {city}",
    "Hello! {name} here. I live in {city} and I'd like to return order {order}.",
    "My {product} from order {order} is the wrong colour. {name} ({city})",
    "Can you update the address on {order}? I moved within {city}. Thanks, {name}",
    "{name} writing from {city}: where is my {product}? The order number is {order}.",
    "Good morning. Please cancel {order}, I found a {product} in a shop in {city}. - {name}",
]

MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
DATE_FORMS = [
    lambda d, m, y: f"{MONTHS[m - 1]} {d}, {y}",
    lambda d, m, y: f"{d} {MONTHS[m - 1]} {y}",
    lambda d, m, y: f"{_ordinal(d)} of {MONTHS[m - 1]} {y}",
    lambda d, m, y: f"{MONTHS[m - 1][:3]} {d} {y}",
    lambda d, m, y: f"{d}.{m}.{y}",
    lambda d, m, y: f"{MONTHS[m - 1]} {_ordinal(d)}, {y}",
    lambda d, m, y: f"{d}-{MONTHS[m - 1][:3]}-{y}",
    lambda d, m, y: f"{y}/{m}/{d}",
]
DATE_INSTRUCTIONS = [
    "[date] Write the date in this sentence as YYYY-MM-DD.",
    "[date] Convert the date below to ISO format.",
]
DATE_SENTENCES = [
    "The parcel was delivered on {date}.",
    "Our meeting moved to {date} at the Brno office.",
    "Invoice issued {date}, payable within 30 days.",
    "{name} starts the new job on {date}.",
    "Please note: the shop is closed on {date}.",
    "We received your complaint on {date} and will reply soon.",
]

TEAMS = {  # Lumen Works routes each kind of message to one team
    "Kestrel": ["a double charge of {amount} on my card", "the invoice for {month}",
                "a refund of {amount} that never came", "the VAT number on my bill"],
    "Heron": ["my parcel stuck in {city}", "the courier missing my delivery slot",
              "a package marked delivered that I never got", "express shipping to {city}"],
    "Osprey": ["the app crashing when I log in", "error {code} on the website",
               "the firmware update failing on my device", "sync not working since {month}"],
    "Wren": ["resetting my password", "changing the email on my account",
             "two-factor codes that do not arrive", "merging my two accounts"],
    "Finch": ["returning a {product}", "exchanging a {product} for another size",
              "the return label for my {product}", "a faulty {product} under warranty"],
}
ROUTE_INSTRUCTIONS = [
    "[route] Which Lumen Works team should handle this message? Answer with the team name.",
    "[route] Name the Lumen Works team for this request.",
]
ROUTE_MESSAGES = [
    "Hello, I am writing about {topic}.",
    "Can someone help me with {topic}? Thanks, {name}",
    "It's the third time I ask about {topic}.",
    "Quick question regarding {topic}.",
    "{name} here - need help with {topic} please.",
]


def _ordinal(d: int) -> str:
    suffix = "th" if 11 <= d % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(d % 10, "th")
    return f"{d}{suffix}"


def _name(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def _order(rng: random.Random) -> str:
    return f"{rng.choice('ABCKLMQRTX')}{rng.choice('ABCKLMQRTX')}-{rng.randint(1000, 99999)}"


def extract_example(rng: random.Random) -> dict:
    slots = {"name": _name(rng), "order": _order(rng), "city": rng.choice(CITIES),
             "product": rng.choice(PRODUCTS)}
    message = rng.choice(EXTRACT_MESSAGES).format(**slots)
    answer = json.dumps({"name": slots["name"], "order": slots["order"], "city": slots["city"]})
    return {"task": "extract", "instruction": f"{rng.choice(EXTRACT_INSTRUCTIONS)}\n{message}",
            "response": answer}


def date_example(rng: random.Random) -> dict:
    y, m = rng.randint(1995, 2030), rng.randint(1, 12)
    d = rng.randint(1, 28)
    sentence = rng.choice(DATE_SENTENCES).format(date=rng.choice(DATE_FORMS)(d, m, y),
                                                 name=_name(rng))
    return {"task": "date", "instruction": f"{rng.choice(DATE_INSTRUCTIONS)}\n{sentence}",
            "response": f"{y:04d}-{m:02d}-{d:02d}"}


def route_example(rng: random.Random) -> dict:
    team = rng.choice(sorted(TEAMS))
    topic = rng.choice(TEAMS[team]).format(
        amount=f"€{rng.randint(5, 400)}", month=rng.choice(MONTHS), city=rng.choice(CITIES),
        code=rng.randint(100, 999), product=rng.choice(PRODUCTS))
    message = rng.choice(ROUTE_MESSAGES).format(topic=topic, name=_name(rng))
    return {"task": "route", "instruction": f"{rng.choice(ROUTE_INSTRUCTIONS)}\n{message}",
            "response": team}


MAKERS = {"extract": extract_example, "date": date_example, "route": route_example}


def generate(n_per_task: int = 600, test_share: float = 0.2, seed: int = 7) -> list[dict]:
    """``n_per_task`` unique examples per task, each with ``split`` train or test."""
    rng = random.Random(seed)
    rows: list[dict] = []
    for task, make in MAKERS.items():
        seen: set[str] = set()
        task_rows: list[dict] = []
        while len(task_rows) < n_per_task:
            row = make(rng)
            if row["instruction"] not in seen:
                seen.add(row["instruction"])
                task_rows.append(row)
        n_test = round(n_per_task * test_share)
        for i, row in enumerate(task_rows):
            row["split"] = "test" if i < n_test else "train"
        rows.extend(task_rows)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=600, help="examples per task")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).parent / "instruct_tasks" / "tasks.jsonl")
    args = parser.parse_args()
    rows = generate(args.n, seed=args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} examples to {args.out}")


if __name__ == "__main__":
    main()
