"""Generate the spoken medical-jargon data set's text manifest: data/asr_jargon/manifest.jsonl.

Each row is one clip to synthesise: a sentence plus the eSpeak NG voice, speed and pitch that
speak it. Sentences are either *domain* (one medical term - a drug, a condition or a
procedure - in a short clinical sentence) or *everyday* (small talk built from slots).

Splits are disjoint by sentence. Domain test sentences come in two kinds (field
``context``): ``known`` - a training sentence frame with a term it never carried in training
(one such combination per term is held out) - and ``new`` - a sentence frame that never occurs
in training, so the term is heard in a new context. Validation uses frames of its own.
Training sentences are rendered twice (two different voices), validation and test once.
No external text; deterministic for a given seed. Audio is not stored:
``ftkit.asr.whisper.synthesize_rows`` renders it on demand and caches it.

Used in notebooks/16_whisper_asr.ipynb (paper §11.4).

    python data/asr_jargon/make_manifest.py                 # seed 16
    python data/asr_jargon/make_manifest.py --seed 1 --out /tmp/manifest.jsonl
"""
from __future__ import annotations

import argparse
import itertools
import json
import random
from pathlib import Path

TERMS = {
    "drug": ["amoxicillin", "metoprolol", "levothyroxine", "atorvastatin", "metformin",
             "lisinopril", "omeprazole", "warfarin", "prednisolone", "gabapentin",
             "azithromycin", "furosemide"],
    "condition": ["tachycardia", "hypothyroidism", "pneumothorax", "cholecystitis",
                  "atrial fibrillation", "bronchiectasis", "pancreatitis", "hyperkalemia",
                  "osteomyelitis", "diverticulitis"],
    "procedure": ["echocardiogram", "colonoscopy", "bronchoscopy", "thoracentesis",
                  "electroencephalogram", "angioplasty", "laparoscopy", "spirometry"],
}

# sentence frames per term category and split; no frame is shared between splits
TEMPLATES = {
    "drug": {
        "train": ["The doctor prescribed {t} this morning.",
                  "Please take {t} twice a day with food.",
                  "She stopped taking {t} last week.",
                  "We increased the dose of {t} yesterday.",
                  "Is he still on {t} at night?",
                  "Remember to bring your {t} to the clinic."],
        "val": ["The ward ran out of {t} on Sunday."],
        "test": ["The pharmacist had no {t} left in stock.",
                 "His new prescription replaces {t} entirely.",
                 "Do not mix {t} with alcohol."],
    },
    "condition": {
        "train": ["The patient was admitted with {t}.",
                  "Her scan confirmed {t} on Monday.",
                  "We are treating his {t} at home.",
                  "There are no signs of {t} today.",
                  "The registrar suspected {t} on the ward."],
        "val": ["Her father was treated for {t} years ago."],
        "test": ["Nobody had mentioned {t} to her before.",
                 "The family asked what {t} actually means.",
                 "His symptoms fit {t} quite well."],
    },
    "procedure": {
        "train": ["The {t} is booked for Thursday.",
                  "She needs an urgent {t} tomorrow.",
                  "The results of the {t} were normal.",
                  "We will repeat the {t} next month.",
                  "He was nervous before the {t}."],
        "val": ["The consultant reviewed the {t} carefully."],
        "test": ["Nobody explained why the {t} took so long.",
                 "The nurse cancelled the {t} after lunch.",
                 "My sister had her {t} in the spring."],
    },
}

EVERYDAY_TEMPLATES = [
    "{name} will meet us at the {place} {time}.",
    "Could you pick up some {food} on the way home?",
    "I left my {thing} at the {place} {time}.",
    "{name} is cooking {food} for dinner {time}.",
    "The train to the {place} was late again {time}.",
    "Let's go for a walk near the {place} {time}.",
    "{name} found an old {thing} in the garage.",
    "We ran out of {food} {time}.",
    "Have you seen my {thing} anywhere?",
    "{name} wants to paint the {place} blue.",
]
SLOTS = {
    "name": ["Maria", "Tom", "My brother", "Our neighbour", "Grandma", "Peter", "Anna", "Jack"],
    "place": ["station", "library", "park", "market", "river", "office", "beach", "school"],
    "time": ["tomorrow", "this evening", "on Saturday", "after work", "next week",
             "in the morning", "yesterday"],
    "food": ["bread", "apples", "rice", "soup", "cheese", "pasta", "coffee"],
    "thing": ["umbrella", "jacket", "phone", "bicycle", "wallet", "guitar", "keys"],
}
EVERYDAY_COUNTS = {"train": 72, "val": 8, "test": 48}

VOICES = ["en-us", "en-us+f3", "en-us+m3", "en-gb-x-rp", "en-gb-x-rp+f2", "en-us-nyc",
          "en-us+m1", "en-gb-x-rp+m2"]
SPEEDS = (135, 185)  # words per minute, drawn uniformly
PITCHES = (35, 70)  # eSpeak's 0-100 scale
RENDERINGS = {"train": 2, "val": 1, "test": 1}


def domain_sentences() -> list[dict]:
    """Every (term, frame) combination, with its split taken from the frame; for each term,
    one combination with a training frame (a different frame per term, in turn) goes to test
    as a ``known``-context sentence."""
    rows = []
    for category, terms in TERMS.items():
        for split, frames in TEMPLATES[category].items():
            for (i, term), (j, frame) in itertools.product(enumerate(terms), enumerate(frames)):
                held_out = split == "train" and j == i % len(frames)
                rows.append({"text": frame.format(t=term), "kind": "domain",
                             "split": "test" if held_out else split,
                             "context": "known" if split == "train" else "new",
                             "terms": [term], "category": category})
    return rows


def _fill(template: str, rng: random.Random) -> str:
    values = {k: rng.choice(v) for k, v in SLOTS.items() if "{" + k + "}" in template}
    text = template.format(**values)
    return text[0].upper() + text[1:]


def everyday_sentences(rng: random.Random) -> list[dict]:
    """Distinct filled templates, dealt out to the splits (no sentence in two splits)."""
    seen: set[str] = set()
    total = sum(EVERYDAY_COUNTS.values())
    while len(seen) < total:
        seen.add(_fill(rng.choice(EVERYDAY_TEMPLATES), rng))
    texts = sorted(seen)
    rng.shuffle(texts)
    rows, start = [], 0
    for split, count in EVERYDAY_COUNTS.items():
        rows += [{"text": t, "kind": "everyday", "split": split, "context": "everyday",
                  "terms": [], "category": "everyday"} for t in texts[start:start + count]]
        start += count
    return rows


def render(sentences: list[dict], rng: random.Random) -> list[dict]:
    """One row per clip: each sentence with its distinct voices, speeds and pitches."""
    rows = []
    for n, sentence in enumerate(sentences):
        voices = rng.sample(VOICES, RENDERINGS[sentence["split"]])
        for k, voice in enumerate(voices):
            rows.append({"id": f"s{n:04d}-{k}", "sentence_id": f"s{n:04d}", **sentence,
                         "voice": voice, "speed": rng.randint(*SPEEDS),
                         "pitch": rng.randint(*PITCHES)})
    return rows


def build(seed: int = 16) -> list[dict]:
    rng = random.Random(seed)
    return render(domain_sentences() + everyday_sentences(rng), rng)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument("--out", default=str(Path(__file__).with_name("manifest.jsonl")))
    args = parser.parse_args()
    rows = build(args.seed)
    with open(args.out, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    counts = {}
    for r in rows:
        key = (r["kind"], r["split"])
        counts[key] = counts.get(key, 0) + 1
    print(f"wrote {len(rows)} clips to {args.out}: {dict(sorted(counts.items()))}")


if __name__ == "__main__":
    main()
