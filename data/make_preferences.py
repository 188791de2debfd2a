"""Generate preference triples with a checkable preference: data/preferences/preferences.jsonl.

Every prompt is a short factual question followed by a request about the reply's form: half
ask for a terse reply ("Answer with one word only.", "Reply with just the number." ...), half
for a short sentence ("Answer in one short sentence."). The *chosen* reply is right and of the
asked form: the bare answer, or the full sentence. The *rejected* reply is of the wrong form in
half of the rows (``verbose``: the right sentence where one word was asked, the way
SmolLM2-135M-Instruct answers; ``terse``: the bare answer where a sentence was asked) and of
the right form but wrong in the other half (``wrong``: a wrong word, or the sentence with a
wrong answer). Length alone therefore does not separate chosen from rejected: the chosen reply
is the shorter one in a quarter of the pairs and the longer one in another quarter.

A rule-based judge (``ftkit.evaluate.judge``) can decide every comparison: a reply scores one
point for holding the right answer and one for its length (``min_words`` to ``max_words``: the
answer's words for a terse ask, 3 to 12 for a sentence). Facts whose question names the answer
("What colour is an orange?") are left out: the judge could not tell.

Facts come from small hand-written tables in this file (capitals, arithmetic, opposites,
plurals, counts, colours, animal sounds). Held-out prompts use *facts* that never occur in the
training split, so a policy has to learn the behaviour, not the answers. Deterministic for a
given seed.

Used in notebooks 08_dpo_alignment and 09_rlhf_reward_and_ppo (paper §6.8-6.9).

    python data/make_preferences.py                       # seed 7, 48 held-out prompts
    python data/make_preferences.py --seed 1 --n-test 24 --out /tmp/prefs.jsonl
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

CAPITALS = {
    "France": "Paris", "Italy": "Rome", "Spain": "Madrid", "Germany": "Berlin",
    "Japan": "Tokyo", "Egypt": "Cairo", "Russia": "Moscow", "Greece": "Athens",
    "Portugal": "Lisbon", "Austria": "Vienna", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Poland": "Warsaw", "Ireland": "Dublin",
    "Hungary": "Budapest", "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago",
    "Cuba": "Havana", "Thailand": "Bangkok", "China": "Beijing", "Canada": "Ottawa",
    "Belgium": "Brussels", "Netherlands": "Amsterdam", "Turkey": "Ankara",
    "Iran": "Tehran", "Iraq": "Baghdad", "Mexico": "Mexico City", "India": "New Delhi",
    "Argentina": "Buenos Aires", "Australia": "Canberra", "Ukraine": "Kyiv",
    "Vietnam": "Hanoi", "Colombia": "Bogota", "Morocco": "Rabat", "Ghana": "Accra",
    "Nigeria": "Abuja", "Ethiopia": "Addis Ababa",
}
OPPOSITES = {
    "hot": "cold", "up": "down", "big": "small", "fast": "slow", "happy": "sad",
    "light": "dark", "open": "closed", "old": "young", "tall": "short", "early": "late",
    "full": "empty", "wet": "dry", "hard": "soft", "rich": "poor", "strong": "weak",
    "loud": "quiet", "day": "night", "win": "lose", "push": "pull", "left": "right",
    "buy": "sell", "clean": "dirty", "thick": "thin", "heavy": "light", "first": "last",
    "inside": "outside", "above": "below", "sweet": "sour", "true": "false", "love": "hate",
}
PLURALS = {
    "mouse": "mice", "child": "children", "foot": "feet", "tooth": "teeth", "man": "men",
    "woman": "women", "goose": "geese", "person": "people", "leaf": "leaves",
    "knife": "knives", "wolf": "wolves", "box": "boxes", "city": "cities", "baby": "babies",
    "fox": "foxes", "ox": "oxen", "cactus": "cacti", "wife": "wives", "half": "halves",
    "bus": "buses",
}
COUNTS = {
    "legs does a spider have": "8", "days are in a week": "7", "legs does a dog have": "4",
    "months are in a year": "12", "sides does a triangle have": "3",
    "sides does a square have": "4", "hours are in a day": "24",
    "minutes are in an hour": "60", "wheels does a bicycle have": "2",
    "legs does an insect have": "6", "sides does a hexagon have": "6",
    "players are on a soccer team on the field": "11", "days are in a leap year": "366",
    "continents are there": "7", "strings does a violin have": "4",
    "arms does an octopus have": "8",
}
COLOURS = {
    "a ripe banana": "yellow", "grass": "green", "a clear daytime sky": "blue", "snow": "white",
    "coal": "black", "a ripe tomato": "red", "an orange": "orange", "a lemon": "yellow",
    "a polar bear's fur": "white", "a crow": "black", "a carrot": "orange", "blood": "red",
    "a pumpkin": "orange", "milk": "white", "a lime": "green", "chocolate": "brown",
}
SOUNDS = {
    "moo": "cow", "bark": "dog", "meow": "cat", "quack": "duck", "neigh": "horse",
    "oink": "pig", "baa": "sheep", "hoot": "owl", "roar": "lion", "cluck": "hen",
    "croak": "frog", "buzz": "bee", "hiss": "snake", "howl": "wolf",
}
TERSE = ["Answer with one word only.", "Answer in a single word.", "One word, please.",
         "Reply with just the answer, not a sentence.", "Give only the answer, nothing else."]
TERSE_NUMBER = ["Reply with just the number.", "Give only the number.",
                "Answer with the number only.", "Just the number, please."]
SENTENCE = ["Answer in one short sentence.", "Reply with a short full sentence.",
            "Please answer in a complete sentence."]
SENTENCE_WORDS = (3, 12)  # a sentence reply has 3-12 words (the tables' have 3-9)


def _fact(family, question, answer, sentence, pool, numeric=False):
    return {"family": family, "question": question, "answer": answer, "sentence": sentence,
            "pool": pool, "numeric": numeric}


def facts() -> list[dict]:
    """Every fact as a question, its answer, a full-sentence reply and wrong-answer pool."""
    out = [_fact("capital", f"What is the capital of {c}?", a,
                 f"The capital of {c} is {a}.", list(CAPITALS.values()))
           for c, a in CAPITALS.items()]
    out += [_fact("opposite", f"What is the opposite of {w}?", a,
                  f"The opposite of {w} is {a}.", list(OPPOSITES.values()))
            for w, a in OPPOSITES.items()]
    out += [_fact("plural", f"What is the plural of {w}?", a,
                  f'The plural of "{w}" is "{a}".', list(PLURALS.values()))
            for w, a in PLURALS.items()]
    out += [_fact("count", f"How many {q}?", a, f"There are {a} {q.split(' ', 1)[0]}.",
                  [str(n) for n in range(2, 30)], numeric=True) for q, a in COUNTS.items()]
    out += [_fact("colour", f"What colour is {t}?", a, f"{t[0].upper() + t[1:]} is {a}.",
                  sorted(set(COLOURS.values()))) for t, a in COLOURS.items()]
    out += [_fact("sound", f"Which animal says {s}?", a,
                  f'The animal that says "{s}" is the {a}.', list(SOUNDS.values()))
            for s, a in SOUNDS.items()]
    return out + arithmetic()


def arithmetic() -> list[dict]:
    """Small sums, differences and products (the pool of wrong answers is near the truth)."""
    ops = {"plus": lambda a, b: a + b, "minus": lambda a, b: a - b,
           "times": lambda a, b: a * b}
    out = []
    for name, fn in ops.items():
        for a in range(2, 10):
            for b in range(2, 10):
                r = fn(a, b)
                if (name == "minus" and b >= a) or r in (a, b):
                    continue  # no negatives; no result the question already names
                out.append(_fact("arithmetic", f"What is {a} {name} {b}?", str(r),
                                 f"{a} {name} {b} equals {r}.",
                                 [str(r + d) for d in (-3, -2, -1, 1, 2, 3) if r + d >= 0],
                                 numeric=True))
    return out


def triple(fact: dict, rng: random.Random) -> dict:
    """One prompt/chosen/rejected row for ``fact``; half the asks are terse, half a sentence.

    The rejected reply is of the wrong length (half the rows: a right sentence for a terse ask,
    ``verbose``; the bare right answer for a sentence ask, ``terse``) or of the right length
    but wrong (``wrong``): a wrong word, or the sentence with a wrong answer.
    """
    n = len(fact["answer"].split())
    wrong = rng.choice([w for w in fact["pool"]  # as many words as the answer
                        if w.lower() != fact["answer"].lower() and len(w.split()) == n])
    bad_length = rng.random() < 1 / 2
    if rng.random() < 1 / 2:
        ask, style = rng.choice(TERSE_NUMBER if fact["numeric"] else TERSE), "terse"
        chosen = fact["answer"]
        kind, rejected = ("verbose", fact["sentence"]) if bad_length else ("wrong", wrong)
        min_words, max_words = 1, n
    else:
        ask, style = rng.choice(SENTENCE), "sentence"
        chosen = fact["sentence"]
        kind, rejected = (("terse", fact["answer"]) if bad_length else
                          ("wrong", swap_answer(fact["sentence"], fact["answer"], wrong)))
        min_words, max_words = SENTENCE_WORDS
    return {"family": fact["family"], "prompt": f"{fact['question']} {ask}", "chosen": chosen,
            "rejected": rejected, "answer": fact["answer"], "min_words": min_words,
            "max_words": max_words, "ask": style, "rejected_kind": kind}


def swap_answer(sentence: str, answer: str, wrong: str) -> str:
    """``sentence`` with its (last) mention of ``answer`` replaced by ``wrong``."""
    head, sep, tail = sentence.rpartition(answer)
    if not sep:
        raise ValueError(f"answer {answer!r} not in {sentence!r}")
    return head + wrong + tail


def build(seed: int = 7, n_test: int = 48, n_arithmetic: int = 60) -> list[dict]:
    """All rows, shuffled, with a ``split`` of train or test (test facts unseen in train).

    ``n_arithmetic`` caps the arithmetic facts so that they do not outnumber the other families.
    """
    rng = random.Random(seed)
    pool = [f for f in facts()  # a question that names its answer cannot be judged
            if f["answer"].lower() not in re.findall(r"[\w ]+", f["question"].lower())[0].split()]
    arith = [f for f in pool if f["family"] == "arithmetic"]
    pool = [f for f in pool if f["family"] != "arithmetic"] + rng.sample(arith, n_arithmetic)
    rng.shuffle(pool)
    rows = []
    for i, fact in enumerate(pool):
        row = triple(fact, rng)
        rows.append({"id": f"p{i:04d}", **row, "split": "test" if i < n_test else "train"})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--n-test", type=int, default=48)
    ap.add_argument("--out", default=str(Path(__file__).parent / "preferences" /
                                         "preferences.jsonl"))
    args = ap.parse_args()
    rows = build(args.seed, args.n_test)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    n_train = sum(r["split"] == "train" for r in rows)
    print(f"wrote {len(rows)} rows ({n_train} train, {len(rows) - n_train} test) to {args.out}")


if __name__ == "__main__":
    main()
