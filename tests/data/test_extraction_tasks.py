"""data/make_extraction_tasks.py: seeded, balanced, and every record readable from its message."""
import json
from pathlib import Path

import pytest
from conftest import data_script

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    return data_script("make_extraction_tasks")


def test_same_seed_same_rows_other_seed_differs(gen):
    assert gen.generate(3) == gen.generate(3)
    assert gen.generate(3) != gen.generate(4)


def test_splits_are_balanced_disjoint_and_checkable(gen):
    splits = gen.generate(1)
    gen.check(splits)  # raises when a record cannot be read back from its message
    assert {k: len(v) for k, v in splits.items()} == gen.SIZES
    messages = [r["message"] for rows in splits.values() for r in rows]
    assert len(set(messages)) == len(messages)
    for rows in splits.values():
        counts = {c: sum(r["category"] == c for r in rows) for c in gen.CATEGORIES}
        assert max(counts.values()) - min(counts.values()) <= 1
        assert any(r["order"] is None for r in rows) and any(r["total"] is None for r in rows)
        assert any(r["order"] and r["total"] for r in rows)


def test_committed_files_are_the_seed_7_output(gen):
    splits = gen.generate(7)
    for split, rows in splits.items():
        lines = (ROOT / "data" / "extraction_tasks" / f"{split}.jsonl").read_text().splitlines()
        assert [json.loads(line) for line in lines] == rows
