"""data/make_support_records.py: seeded, with every kind of problem, written to four formats."""
from collections import Counter
from pathlib import Path

import pytest
from conftest import data_script

from ftkit.data import load, pii, prep

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gen():
    return data_script("make_support_records")


def test_same_seed_same_records_other_seed_differs(gen):
    assert gen.generate(3) == gen.generate(3)
    assert gen.generate(3) != gen.generate(4)


def test_every_kind_in_the_requested_numbers(gen):
    rows = gen.generate(1)
    kinds = Counter(r["kind"] for r in rows)
    for kind, n in gen.COUNTS.items():
        if kind != "pii_share":
            assert kinds[kind] == n, kind
    assert len({r["id"] for r in rows}) == len(rows)
    families = {r["id"]: r["family"] for r in rows}
    assert all(families[r["family"]] == r["family"] for r in rows if r["kind"] == "near_dup")


def test_card_numbers_follow_luhn(gen):
    import random

    rng = random.Random(0)
    assert all(pii.luhn_ok(gen.card_number(rng, True)) for _ in range(20))
    assert not any(pii.luhn_ok(gen.card_number(rng, False)) for _ in range(20))


def test_written_files_load_back_with_the_ground_truth(gen, tmp_path):
    counts = {**gen.COUNTS, "clean": 40, "exact_dup": 3, "near_dup": 3}
    rows = gen.generate(2, counts)
    per_source = gen.write_all(rows, tmp_path, seed=2)
    assert sum(per_source.values()) == len(rows)
    folder = prep.data_folder(str(tmp_path))
    sources = {"csv": load.load_csv(folder / "tickets.csv", on_bad="replace"),
               "jsonl": load.load_jsonl(folder / "tickets.jsonl"),
               "parquet": load.load_parquet(folder / "tickets.parquet"),
               "sqlite": load.load_sql("SELECT * FROM tickets", folder / "tickets.sqlite")}
    assert {k: len(v) for k, v in sources.items()} == per_source
    truth = prep.ground_truth(folder)
    assert set(load.collect(sources)["id"]) == set(truth)
    with pytest.raises(load.DataLoadError, match="not valid UTF-8"):
        load.load_csv(folder / "tickets.csv")


def test_committed_files_are_small():
    folder = ROOT / "data" / "support_records"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 1_000_000
