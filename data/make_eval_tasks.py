"""Generate local benchmark tasks for lm-evaluation-harness: data/eval_tasks/.

Notebook 13 evaluates the shop's customer-support assistant (SmolLM2-135M with a LoRA adapter
trained on data/support_records) against its base model with EleutherAI's lm-eval, offline.
This script writes the four tasks it uses, each as a JSONL file plus a task YAML:

- ``general_knowledge`` — multiple choice, four options: easy facts (arithmetic, units and
  time, everyday science, geography, colours, opposites, animals) written here from the
  script's own lists. It checks that fine-tuning did not damage what the model already knew.
- ``shop_knowledge`` — multiple choice, four options: a held-out customer message with the
  shop's true reply and three replies from other held-out records of the same category that
  state a different policy. Does the model prefer the shop's actual answer?
- ``shop_intent`` — multiple choice over the five categories (billing, shipping, returns,
  account, technical): what a held-out customer message is about.
- ``shop_answer`` — generation: the model writes the reply to a held-out message, scored
  against the shop's reply with chrF.

The shop tasks use the test split of ``ftkit.train.assistant.records(seed=42)``, which the
assistant never sees in training. Choice order is shuffled with ``--seed``; the output is the
same bytes on every run. The YAML files name their data files relative to their own folder.

    python data/make_eval_tasks.py                     # seed 7, into data/eval_tasks
    python data/make_eval_tasks.py --seed 1 --out /tmp/eval_tasks
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

CATEGORIES = ["billing", "shipping", "returns", "account", "technical"]
RECORDS_SEED = 42  # the split the assistant is trained on (ftkit.train.assistant)
SHOP_PER_CATEGORY = 16  # 80 rows for shop_knowledge and shop_intent
ANSWER_PER_CATEGORY = 8  # 40 rows for shop_answer
SAME_POLICY = 0.35  # word-set Jaccard above which two replies state the same policy

# (question, correct answer, three wrong answers); the correct one is listed first here only
FACTS = {
    "units_and_time": [
        ("How many days are there in a week?", "7", ["5", "10", "12"]),
        ("How many minutes are there in an hour?", "60", ["30", "100", "24"]),
        ("How many hours are there in a day?", "24", ["12", "60", "7"]),
        ("How many months are there in a year?", "12", ["10", "7", "52"]),
        ("How many seconds are there in a minute?", "60", ["100", "10", "24"]),
        ("How many days are there in a year that is not a leap year?", "365",
         ["300", "52", "100"]),
        ("How many centimetres are there in a metre?", "100", ["10", "12", "1000"]),
        ("How many grams are there in a kilogram?", "1000", ["100", "10", "60"]),
        ("How many metres are there in a kilometre?", "1000", ["100", "10", "60"]),
        ("How many weeks are there in a year?", "52", ["12", "7", "100"]),
        ("Which day comes after Monday?", "Tuesday", ["Sunday", "Friday", "Saturday"]),
        ("Which month comes after January?", "February", ["December", "June", "October"]),
        ("What is the first month of the year?", "January", ["December", "July", "May"]),
    ],
    "science": [
        ("At sea level, at what temperature does water boil?", "100 degrees Celsius",
         ["10 degrees Celsius", "50 degrees Celsius", "500 degrees Celsius"]),
        ("At what temperature does water freeze?", "0 degrees Celsius",
         ["50 degrees Celsius", "100 degrees Celsius", "30 degrees Celsius"]),
        ("Which gas do people need to breathe in to stay alive?", "oxygen",
         ["helium", "smoke", "neon"]),
        ("What does a plant need from the sun to grow?", "light", ["sound", "snow", "sand"]),
        ("What is ice made of?", "frozen water", ["sand", "glass", "paper"]),
        ("Which planet do we live on?", "Earth", ["Mars", "Jupiter", "Venus"]),
        ("What is the star at the centre of our solar system?", "the Sun",
         ["the Moon", "Mars", "a comet"]),
        ("What force pulls objects down towards the ground?", "gravity",
         ["wind", "light", "sound"]),
        ("Which organ pumps blood around the body?", "the heart",
         ["the lungs", "the stomach", "the skin"]),
        ("Which part of the body do we use to see?", "the eyes",
         ["the ears", "the nose", "the knees"]),
        ("What do bees make?", "honey", ["milk", "glass", "wool"]),
        ("Which of these is a liquid at room temperature?", "water",
         ["stone", "iron", "wood"]),
        ("What do we call water falling from clouds?", "rain", ["sand", "smoke", "dust"]),
    ],
    "geography": [
        ("What is the capital of France?", "Paris", ["Berlin", "Madrid", "Rome"]),
        ("What is the capital of Germany?", "Berlin", ["Paris", "Vienna", "Warsaw"]),
        ("What is the capital of Italy?", "Rome", ["Paris", "Madrid", "Athens"]),
        ("What is the capital of Spain?", "Madrid", ["Lisbon", "Rome", "Paris"]),
        ("What is the capital of Japan?", "Tokyo", ["Beijing", "Seoul", "Bangkok"]),
        ("What is the capital of the United Kingdom?", "London", ["Dublin", "Paris", "Oslo"]),
        ("What is the capital of Russia?", "Moscow", ["Kyiv", "Warsaw", "Prague"]),
        ("What is the capital of China?", "Beijing", ["Tokyo", "Seoul", "Bangkok"]),
        ("What is the capital of Egypt?", "Cairo", ["Nairobi", "Lagos", "Rabat"]),
        ("On which continent is Brazil?", "South America", ["Europe", "Asia", "Africa"]),
        ("On which continent is Kenya?", "Africa", ["Europe", "South America", "Australia"]),
        ("Which ocean lies between Europe and North America?", "the Atlantic Ocean",
         ["the Indian Ocean", "the Pacific Ocean", "the Southern Ocean"]),
        ("What is the largest ocean on Earth?", "the Pacific Ocean",
         ["the Atlantic Ocean", "the Indian Ocean", "the Arctic Ocean"]),
        ("In which country is the city of New York?", "the United States",
         ["Canada", "Mexico", "Brazil"]),
        ("In which city is the Eiffel Tower?", "Paris", ["London", "Rome", "Berlin"]),
    ],
    "colours": [
        ("What colour is the sky on a clear day?", "blue", ["green", "red", "black"]),
        ("What colour is grass?", "green", ["blue", "red", "white"]),
        ("What colour is snow?", "white", ["black", "green", "red"]),
        ("What colour is a ripe banana?", "yellow", ["blue", "purple", "black"]),
        ("What colour is coal?", "black", ["white", "yellow", "pink"]),
        ("What colour is a ripe tomato?", "red", ["blue", "white", "black"]),
        ("What colour do you get when you mix blue and yellow?", "green",
         ["red", "black", "white"]),
        ("What colour do you get when you mix red and white?", "pink",
         ["green", "blue", "black"]),
        ("What colour is milk?", "white", ["green", "blue", "red"]),
        ("What colour are the leaves of most trees in summer?", "green",
         ["blue", "purple", "white"]),
        ("What colour is the fruit called an orange?", "orange", ["black", "blue", "white"]),
    ],
    "opposites": [
        ("What is the opposite of hot?", "cold", ["tall", "loud", "early"]),
        ("What is the opposite of big?", "small", ["long", "loud", "heavy"]),
        ("What is the opposite of up?", "down", ["over", "high", "top"]),
        ("What is the opposite of day?", "night", ["morning", "sun", "week"]),
        ("What is the opposite of open?", "closed", ["empty", "wide", "bright"]),
        ("What is the opposite of fast?", "slow", ["quick", "loud", "tall"]),
        ("What is the opposite of happy?", "sad", ["glad", "tired", "funny"]),
        ("What is the opposite of wet?", "dry", ["cold", "clean", "soft"]),
        ("What is the opposite of heavy?", "light", ["big", "hard", "strong"]),
        ("What is the opposite of young?", "old", ["small", "short", "kind"]),
        ("What is the opposite of in?", "out", ["on", "at", "by"]),
        ("What is the opposite of first?", "last", ["second", "next", "early"]),
        ("What is the opposite of left?", "right", ["up", "next", "far"]),
        ("What is the opposite of empty?", "full", ["hollow", "open", "bare"]),
    ],
    "animals": [
        ("Which animal says moo?", "a cow", ["a cat", "a dog", "a duck"]),
        ("Which animal barks?", "a dog", ["a cow", "a fish", "a bird"]),
        ("Which animal has a very long neck?", "a giraffe", ["a mouse", "a pig", "a rabbit"]),
        ("How many legs does a spider have?", "eight", ["two", "four", "six"]),
        ("How many legs does a dog have?", "four", ["two", "six", "eight"]),
        ("What do fish use to breathe under water?", "gills",
         ["feathers", "wings", "horns"]),
        ("Which animal is called the king of the jungle?", "the lion",
         ["the mouse", "the frog", "the sheep"]),
        ("What is a baby cat called?", "a kitten", ["a puppy", "a calf", "a chick"]),
        ("What is a baby dog called?", "a puppy", ["a kitten", "a foal", "a lamb"]),
        ("Which of these animals can fly?", "a bird", ["a fish", "a cow", "a snake"]),
        ("Which of these animals lives in water?", "a fish", ["a horse", "a camel", "a goat"]),
        ("Which animal gives the milk people most often drink?", "a cow",
         ["a snake", "a frog", "a shark"]),
        ("What does a caterpillar turn into?", "a butterfly", ["a bee", "a worm", "a spider"]),
        ("Which animal has black and white stripes?", "a zebra",
         ["a lion", "a camel", "a bear"]),
    ],
}
ARITHMETIC = [  # (template, operation); operands are drawn with the seed
    ("What is {a} plus {b}?", lambda a, b: a + b),
    ("What is {a} + {b}?", lambda a, b: a + b),
    ("What is {a} times {b}?", lambda a, b: a * b),
]
N_ARITHMETIC = 12

PROMPT_GENERAL = "Question: {{question}}\\nAnswer:"
PROMPT_REPLY = "Customer message: {{question}}\\nThe shop's reply:"
PROMPT_INTENT = "Customer message: {{question}}\\nThis message is about:"

MC_METRICS = """\
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
  - metric: acc_norm
    aggregation: mean
    higher_is_better: true
"""
GEN_METRICS = """\
metric_list:
  - metric: chrf
    aggregation: chrf
    higher_is_better: true
"""


def _mc(rng: random.Random, correct: str, wrong: list[str]) -> tuple[list[str], int]:
    """The four choices in a seeded order and the index of the correct one."""
    choices = [correct, *wrong]
    rng.shuffle(choices)
    return choices, choices.index(correct)


def arithmetic_questions(rng: random.Random) -> list[tuple[str, str, list[str]]]:
    """Sums and small products of one-digit numbers, with nearby wrong results."""
    out, seen = [], set()
    while len(out) < N_ARITHMETIC:
        template, op = ARITHMETIC[len(out) % len(ARITHMETIC)]
        a, b = rng.randint(1, 9), rng.randint(1, 5 if "times" in template else 9)
        question = template.format(a=a, b=b)
        if question in seen:
            continue
        seen.add(question)
        result = op(a, b)
        near = [n for n in range(max(0, result - 6), result + 7) if n != result]
        out.append((question, str(result), [str(n) for n in rng.sample(near, 3)]))
    return out


def general_knowledge(seed: int) -> list[dict]:
    rng = random.Random(seed)
    topics = {"arithmetic": arithmetic_questions(rng), **FACTS}
    rows = []
    for topic, facts in topics.items():
        for question, correct, wrong in facts:
            choices, answer = _mc(rng, correct, wrong)
            rows.append({"id": f"gk{len(rows) + 1:03d}", "question": question,
                         "choices": choices, "answer": answer, "topic": topic})
    return rows


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if len(w) > 3}


def _same_policy(a: set[str], b: set[str]) -> bool:
    """Two replies of one answer template share most content words (Jaccard 0.35-1 on the
    test records), replies of different templates little more than greetings and closings
    (at most 0.33)."""
    return len(a & b) / max(1, len(a | b)) >= SAME_POLICY


def distractors(row: dict, pool: list[dict], rng: random.Random) -> list[str] | None:
    """Three replies of other records of the row's category, each stating a policy different
    from the row's and from each other's; None when fewer than three exist."""
    true_words = _words(row["response"])
    candidates = [r for r in pool if r["id"] != row["id"] and r["category"] == row["category"]
                  and r["response"] != row["response"]
                  and not _same_policy(_words(r["response"]), true_words)]
    rng.shuffle(candidates)
    chosen: list[dict] = []
    for cand in candidates:
        words = _words(cand["response"])
        if all(not _same_policy(words, _words(c["response"])) for c in chosen):
            chosen.append(cand)
        if len(chosen) == 3:
            return [c["response"] for c in chosen]
    return None


def shop_tasks(seed: int) -> tuple[list[dict], list[dict], list[dict]]:
    """Rows of shop_knowledge, shop_intent and shop_answer from the held-out records."""
    from ftkit.train import assistant

    test = [dict(r) for r in assistant.records(seed=RECORDS_SEED)["test"]]
    rng = random.Random(seed)
    order = list(range(len(test)))
    rng.shuffle(order)
    knowledge, intent, answer = [], [], []
    taken = dict.fromkeys(CATEGORIES, 0)
    for i in order:
        row = test[i]
        cat = row["category"]
        if cat not in taken or taken[cat] >= SHOP_PER_CATEGORY:
            continue
        wrong = distractors(row, test, rng)
        if wrong is None:
            continue
        taken[cat] += 1
        choices, idx = _mc(rng, row["response"], wrong)
        base = {"id": row["id"], "question": row["instruction"]}
        knowledge.append({**base, "choices": choices, "answer": idx, "category": cat})
        intent.append({**base, "choices": list(CATEGORIES), "answer": CATEGORIES.index(cat),
                       "category": cat})
        if taken[cat] <= ANSWER_PER_CATEGORY:
            answer.append({**base, "answer": row["response"], "category": cat})
    return knowledge, intent, answer


def task_yaml(name: str, what: str, prompt: str, kind: str) -> str:
    """The lm-eval task config; the data file is named relative to the YAML's folder."""
    head = (f"# {name}: {what}\n"
            f"task: {name}\n"
            "dataset_path: json\n"
            "dataset_kwargs:\n"
            "  data_files:\n"
            f"    test: {name}.jsonl\n"
            "test_split: test\n")
    if kind == "mc":
        body = (f"output_type: multiple_choice\n"
                f'doc_to_text: "{prompt}"\n'
                'doc_to_choice: "{{choices}}"\n'
                "doc_to_target: answer\n" + MC_METRICS)
    else:
        body = (f"output_type: generate_until\n"
                f'doc_to_text: "{prompt}"\n'
                "doc_to_target: answer\n"
                "generation_kwargs:\n"
                "  until:\n"
                '    - "\\n\\n"\n'
                "  max_gen_toks: 48\n"
                "  do_sample: false\n" + GEN_METRICS)
    return head + body + "metadata:\n  version: 1.0\n"


WHAT = {
    "general_knowledge": ("easy facts (arithmetic, units and time, science, geography, colours, "
                          "opposites, animals); 4 choices; does the model keep what it knew?"),
    "shop_knowledge": ("the shop's true reply to a held-out customer message against 3 replies "
                       "of the same category stating other policies; 4 choices"),
    "shop_intent": ("which of the five categories a held-out customer message is about; "
                    "5 choices"),
    "shop_answer": ("the reply the model writes to a held-out customer message, scored against "
                    "the shop's reply with chrF"),
}
TASKS = {  # name: (what it measures, prompt, kind)
    "general_knowledge": (WHAT["general_knowledge"], PROMPT_GENERAL, "mc"),
    "shop_knowledge": (WHAT["shop_knowledge"], PROMPT_REPLY, "mc"),
    "shop_intent": (WHAT["shop_intent"], PROMPT_INTENT, "mc"),
    "shop_answer": (WHAT["shop_answer"], PROMPT_REPLY, "gen"),
}


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "eval_tasks")
    args = parser.parse_args()
    knowledge, intent, answer = shop_tasks(args.seed)
    rows = {"general_knowledge": general_knowledge(args.seed), "shop_knowledge": knowledge,
            "shop_intent": intent, "shop_answer": answer}
    args.out.mkdir(parents=True, exist_ok=True)
    for name, (what, prompt, kind) in TASKS.items():
        write_jsonl(args.out / f"{name}.jsonl", rows[name])
        (args.out / f"{name}.yaml").write_text(task_yaml(name, what, prompt, kind),
                                               encoding="utf-8", newline="\n")
        print(f"{name}: {len(rows[name])} rows")
    print(f"wrote {len(TASKS)} tasks to {args.out}")


if __name__ == "__main__":
    main()
