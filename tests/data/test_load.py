"""ftkit.data.load: every format gives the same Dataset; bad bytes and wrong types are explained."""
import json
import sqlite3

import pandas as pd
import pytest

from ftkit.data import load

ROWS = [{"id": "a1", "instruction": "Where is my parcel?", "response": "It ships today.",
         "category": "shipping"},
        {"id": "a2", "instruction": "Refund, café order", "response": "Done, within 5 days.",
         "category": "billing"},
        {"id": "a3", "instruction": "Line with, a comma", "response": "Quoted \"text\" too",
         "category": "returns"}]


def _write_all(tmp_path, rows):
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    (tmp_path / "t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet", index=False)
    with sqlite3.connect(tmp_path / "t.sqlite") as con:
        con.execute("CREATE TABLE t (id, instruction, response, category)")
        con.executemany("INSERT INTO t VALUES (?, ?, ?, ?)", [tuple(r.values()) for r in rows])
    con.close()


def test_same_records_from_every_format_are_equal(tmp_path):
    _write_all(tmp_path, ROWS)
    loaded = {"csv": load.load_csv(tmp_path / "t.csv"),
              "jsonl": load.load_jsonl(tmp_path / "t.jsonl"),
              "parquet": load.load_parquet(tmp_path / "t.parquet"),
              "sqlite": load.load_sql("SELECT * FROM t", tmp_path / "t.sqlite"),
              "hf": load.load_hf("parquet", data_files=str(tmp_path / "t.parquet"))}
    expected = [{**r, load.ISSUE: None} for r in ROWS]
    for name in ("csv", "jsonl", "parquet", "sqlite"):
        assert loaded[name].to_list() == expected, name
    assert loaded["hf"].to_list() == ROWS
    assert load.load_file(tmp_path / "t.jsonl").to_list() == expected


def test_collect_adds_source_and_fills_missing_columns(tmp_path):
    _write_all(tmp_path, ROWS)
    a = load.load_csv(tmp_path / "t.csv")
    b = load.load_jsonl(tmp_path / "t.jsonl").remove_columns("category")
    both = load.collect({"csv": a, "jsonl": b})
    assert len(both) == 6
    assert both["source"] == ["csv"] * 3 + ["jsonl"] * 3
    assert list(both["category"])[3:] == [None] * 3


def test_non_utf8_bytes_raise_with_line_numbers_or_are_replaced(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes("id,instruction\nx1,fine\n".encode() + "x2,caf\xe9\n".encode("latin-1"))
    with pytest.raises(load.DataLoadError, match=r"1 line\(s\).*lines \[3\]"):
        load.load_csv(path)
    ds = load.load_csv(path, on_bad="replace")
    assert ds["instruction"] == ["fine", "caf\ufffd"]


def test_wrong_types_become_null_with_a_note(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a", "response": "ok"}\n{"id": "b", "response": 42}\n', "utf-8")
    ds = load.load_jsonl(path)
    assert ds["response"] == ["ok", None]
    assert ds[load.ISSUE] == [None, "response: int 42 (expected str)"]


def test_sqlite_keeps_numbers_that_validation_must_catch(tmp_path):
    db = tmp_path / "d.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("CREATE TABLE t (id, response)")
        con.executemany("INSERT INTO t VALUES (?, ?)", [("a", "text"), ("b", 3.5)])
    con.close()
    ds = load.load_sql("SELECT * FROM t WHERE id IN ('a', 'b') ORDER BY id", db)
    assert ds["response"] == ["text", None] and "float" in ds[load.ISSUE][1]


def test_sqlalchemy_url(tmp_path):
    pytest.importorskip("sqlalchemy")
    _write_all(tmp_path, ROWS)
    ds = load.load_sql("SELECT id FROM t", f"sqlite:///{tmp_path / 't.sqlite'}")
    assert ds["id"] == ["a1", "a2", "a3"]


@pytest.mark.parametrize("call, words", [
    (lambda p: load.load_file(p / "x.xlsx"), ["no reader", ".xlsx"]),
    (lambda p: load.load_sql("SELECT 1", p / "missing.sqlite"), ["no SQLite database"]),
])
def test_clear_errors(tmp_path, call, words):
    with pytest.raises(load.DataLoadError) as err:
        call(tmp_path)
    assert all(w in str(err.value) for w in words)


def test_malformed_jsonl_names_the_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text('{"id": "a"}\n{"id": \n', "utf-8")
    with pytest.raises(load.DataLoadError, match="line 2"):
        load.load_jsonl(path)


def test_hub_id_offline_fails_fast(monkeypatch):
    from ftkit import models

    monkeypatch.setattr(models, "hub_reachable", lambda *a, **k: False)
    with pytest.raises(load.DataLoadError, match="offline"):
        load.load_hf("some-org/some-dataset")
