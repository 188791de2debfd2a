"""The fact base, prompts, answers with confidence, and scoring (ftkit.memory.facts)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.memory import facts as F

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("answer, value, right", [
    ("The X has a 24-month warranty.", "24 months", True),
    ("36 months", "6 months", False),
    ("€313.99", "€13.99", False),
    ("It costs €381.95.", "€381.95", True),
    ("€381.99", "€381.95", False),
    ("61088 g", "6108 g", False),
    ("It weighs 6108 grams", "6108 g", True),
    ("Open 9:00 to 18:00", "9:00 to 18:00", True),
    ("from 18:00 to 9:00", "9:00 to 18:00", False),
    ("code FA-9656", "FA-9656", True),
    ("FA-96567", "FA-9656", False),
    ("Closed on Mondays.", "Monday", True),
    ("Mondayx", "Monday", False),
])
def test_an_answer_is_right_only_with_the_exact_value(answer, value, right):
    assert F.is_right(answer, value) is right


def test_the_generated_fact_base_is_what_its_script_writes(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "data/make_shop_facts.py"), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for name in F.FILES:
        assert (tmp_path / name).read_text() == (ROOT / "data/shop_facts" / name).read_text()
    facts = [json.loads(line) for line in (tmp_path / "facts.jsonl").read_text().splitlines()]
    assert len(facts) == 282 and len({f["id"] for f in facts}) == 282
    assert len({(f["subject"], f["attribute"]) for f in facts}) == 282


def test_load_chooses_facts_with_the_changed_ones_among_them():
    base = F.load(ROOT / "data/shop_facts", n_facts=10, n_updated=3, seed=1)
    assert len(base.chosen) == 10 and len(base.changed) == 3
    assert set(base.changed) <= set(base.chosen) and set(base.changed) <= set(base.updates)
    assert base.chosen == F.load(ROOT / "data/shop_facts", 10, 3, seed=1).chosen
    train, held = base.rows("train"), base.rows("heldout")
    assert len(train) == 30 and len(held) == 20
    assert not {r["question"] for r in train} & {r["question"] for r in held}
    new = base.updated()
    f = base.changed[0]
    assert new.value(f) != base.value(f) and new.value(f) in new.text(f)
    assert {r["value"] for r in new.rows("heldout", [f])} == {new.value(f)}
    assert dict(new.documents())[f] == new.text(f) and len(new.documents()) == 282


def test_load_refuses_more_facts_than_the_base_holds():
    with pytest.raises(ConfigError, match="n_facts = 9999, but the fact base has 282 facts"):
        F.load(ROOT / "data/shop_facts", n_facts=9999)
    with pytest.raises(ConfigError, match="make_shop_facts"):
        F.load(ROOT / "data/no_such_folder")


def test_training_examples_put_the_loss_on_the_value_only():
    tok = models.load_tokenizer("tiny-llama")
    rows = [{"question": "How much is the kettle?", "value": "€12.00"}]
    ex = F.examples(tok, rows)[0]
    answer = [t for t, lab in zip(ex["input_ids"], ex["labels"]) if lab != -100]
    assert tok.decode(answer).startswith("€12.00")
    assert ex["labels"][:len(ex["labels"]) - len(answer)] == [-100] * (len(ex["labels"]) - len(answer))
    assert "Use these facts" in F.prompt(tok, "q?", ["The kettle costs €12.00."])


def test_generate_gives_each_answer_a_confidence_and_score_counts_hallucinations():
    model, tok = models.load("tiny-llama")
    texts = [F.prompt(tok, q) for q in ["price?", "a longer question about the kettle?"]]
    answers, conf = F.generate(model.eval(), tok, texts, max_new_tokens=4, batch_size=2)
    assert len(answers) == 2 and all(0.0 < c <= 1.0 for c in conf)
    rows = [{"fact": "a", "question": "q", "value": "€5.00"}, {"fact": "b", "question": "q", "value": "7 g"},
            {"fact": "c", "question": "q", "value": "9 g"}]
    table = F.score(rows, ["It is €5.00.", "8 g", "no idea"], [0.9, 0.8, 0.1], threshold=0.5)
    assert table["right"].tolist() == [True, False, False]
    assert table["hallucinated"].tolist() == [False, True, False]
    s = F.summary(table)
    assert s["accuracy"] == pytest.approx(1 / 3) and s["hallucination"] == pytest.approx(1 / 3)
    assert s["wrong_unsure"] == pytest.approx(1 / 3)
