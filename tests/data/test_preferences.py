"""Preference rows: validation (bad rows refused or skipped with a reason), splits, formats."""
import subprocess
import sys
from pathlib import Path

import pytest

from ftkit.core.config import ConfigError
from ftkit.data import preferences

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "preferences" / "preferences.jsonl"
GOOD = {"prompt": "What is 2 plus 2? Just the number.", "chosen": "4", "rejected": "2 plus 2 is 4."}


@pytest.mark.parametrize("row, reason", [
    ({"prompt": "q", "chosen": "a"}, "missing field(s) ['rejected']"),
    ({**GOOD, "chosen": "  "}, "field 'chosen' is empty"),
    ({**GOOD, "prompt": ""}, "field 'prompt' is empty"),
    ({**GOOD, "rejected": "4 "}, "chosen and rejected are the same text"),
    ({**GOOD, "rejected": None}, "field 'rejected' is NoneType, not text"),
    ("not a row", "not a mapping"),
])
def test_bad_rows_raise_with_row_number_and_reason(row, reason):
    with pytest.raises(ConfigError, match=r"row 1: ") as err:
        preferences.validate([GOOD, row])
    assert reason in str(err.value)


def test_skip_mode_reports_what_it_dropped():
    bad = [{**GOOD, "chosen": ""}, {"prompt": "q"}, {**GOOD, "rejected": GOOD["chosen"]}]
    result = preferences.validate([GOOD, *bad, GOOD], on_bad="skip")
    assert len(result.rows) == 2
    assert [i for i, _ in result.skipped] == [1, 2, 3]
    assert "3 skipped" in result.summary() and "row 2: missing" in result.summary()


def test_nothing_usable_is_an_error():
    with pytest.raises(ConfigError, match="no usable preference rows out of 2"):
        preferences.validate([{"prompt": "q"}, {}], on_bad="skip")
    with pytest.raises(ValueError, match="on_bad"):
        preferences.validate([GOOD], on_bad="ignore")


def test_missing_file_says_how_to_build_it(tmp_path):
    with pytest.raises(ConfigError, match="make_preferences.py"):
        preferences.load(tmp_path / "none.jsonl")


def test_committed_data_is_valid_and_held_out_facts_are_unseen():
    rows = preferences.load(DATA).rows
    train, test = preferences.select(rows, "train"), preferences.select(rows, "test")
    assert len(train) >= 100 and len(test) == 48
    question = lambda r: r["prompt"].split("?")[0]  # noqa: E731  (the fact, without the ask)
    assert not {question(r) for r in train} & {question(r) for r in test}
    assert preferences.select(rows, "test", 5, seed=1) == preferences.select(rows, "test", 5, 1)


def test_length_alone_does_not_separate_chosen_from_rejected():
    """Half the rejected replies are of the wrong length, half are wrong; the chosen reply is
    the longer one in about a quarter of the pairs, the shorter one in about a quarter."""
    rows = preferences.load(DATA).rows
    kinds = [r["rejected_kind"] for r in rows]
    wrong = kinds.count("wrong") / len(rows)
    assert 0.4 <= wrong <= 0.6 and set(kinds) == {"verbose", "terse", "wrong"}
    n = lambda t: len(t.split())  # noqa: E731
    longer = sum(n(r["chosen"]) > n(r["rejected"]) for r in rows) / len(rows)
    shorter = sum(n(r["chosen"]) < n(r["rejected"]) for r in rows) / len(rows)
    assert 0.15 <= longer <= 0.35 and 0.15 <= shorter <= 0.35, (longer, shorter)
    for r in rows:  # a question that names its answer could not be judged
        assert r["answer"].lower() not in r["prompt"].split("?")[0].lower().split(), r


def test_generator_is_deterministic(tmp_path):
    out = tmp_path / "p.jsonl"
    subprocess.run([sys.executable, str(ROOT / "data" / "make_preferences.py"), "--out", str(out)],
                   check=True, capture_output=True)
    assert out.read_text() == DATA.read_text()


def test_dpo_dataset_is_conversational():
    ds = preferences.dpo_dataset([GOOD])
    assert ds[0]["prompt"] == [{"role": "user", "content": GOOD["prompt"]}]
    assert ds[0]["chosen"] == [{"role": "assistant", "content": "4"}]
    with pytest.raises(ConfigError):
        preferences.dpo_dataset([{**GOOD, "chosen": GOOD["rejected"]}])


def test_unknown_split_is_refused():
    with pytest.raises(ConfigError, match="split='dev'"):
        preferences.select([{**GOOD, "split": "train"}], "dev")
