"""ftkit.data.validate: each bad input gives a count and a clear error, or a reported skip."""
import datasets
import pytest

from ftkit.data import load, validate
from ftkit.models.tiny import tiny_bpe_tokenizer

SCHEMA = validate.Schema(labels=("billing", "shipping"))


def _ds(rows):
    return load.to_dataset(__import__("pandas").DataFrame(rows))


def _row(i, **kw):
    return {"id": f"r{i}", "instruction": "Where is my parcel now?", "response": "On its way.",
            "category": "shipping", **kw}


BAD = _ds([_row(0), _row(1, response=7), _row(2, instruction="  "), _row(3, response=None),
           _row(4, instruction="caf\ufffd order"), _row(5, category="misc"),
           _row(6, response="word " * 300)])


def test_skip_reports_every_check_with_counts():
    tok = tiny_bpe_tokenizer()
    ok, report = validate.validate(BAD, SCHEMA, tok, max_tokens=100)
    counts = dict(zip(report["check"], report["rows"]))
    assert counts == {"wrong type": 1, "empty text": 2, "non-UTF-8 bytes": 1,
                      "label not in set": 1, "too many tokens": 1}
    assert ok["id"] == ["r0"] and load.ISSUE not in ok.column_names
    assert report.set_index("check").loc["label not in set", "example_ids"] == ["r5"]


@pytest.mark.parametrize("rows, words", [
    ([_row(0), _row(1, response=7)], ["wrong type", "1 of 2 rows", "r1", "strings"]),
    ([_row(0), _row(1, instruction="")], ["empty text", "1 of 2", "non-empty"]),
    ([_row(0, instruction="x\ufffd")], ["non-UTF-8", "1 of 1"]),
    ([_row(0, category="misc"), _row(1, category="x")], ["label not in set", "2 of 2",
                                                           "category", "r0"]),
])
def test_raise_names_check_column_count_and_rule(rows, words):
    with pytest.raises(validate.DataValidationError) as err:
        validate.validate(_ds(rows), SCHEMA, on_bad="raise")
    assert all(w in str(err.value) for w in words), str(err.value)


def test_token_limit_raise_names_the_limit():
    with pytest.raises(validate.DataValidationError, match="<= 20 tokens"):
        validate.validate(_ds([_row(0, response="word " * 50)]), SCHEMA, tiny_bpe_tokenizer(), 20,
                          on_bad="raise")


def test_missing_column_always_raises():
    ds = _ds([_row(0)]).remove_columns("category")
    with pytest.raises(validate.DataValidationError, match=r"missing column\(s\) \['category'\]"):
        validate.validate(ds, SCHEMA, on_bad="skip")


def test_non_text_column_type_is_named():
    ds = datasets.Dataset.from_dict({"id": ["a"], "instruction": [3], "response": ["x"],
                                     "category": ["billing"]})
    with pytest.raises(validate.DataValidationError, match="'instruction' has type int64"):
        validate.validate(ds, SCHEMA)


def test_clean_data_passes_untouched():
    ds = _ds([_row(0), _row(1)])
    ok, report = validate.validate(ds, SCHEMA, on_bad="raise")
    assert len(ok) == 2 and report["rows"].sum() == 0
