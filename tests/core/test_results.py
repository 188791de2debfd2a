"""Unit tests of ftkit.core.results: what notebooks call to record their results."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import ftkit.core.results as runs


@pytest.fixture(autouse=True)
def clean_state(monkeypatch, tmp_path):
    """Each test starts with no metrics env var, no output dir and its own cwd."""
    monkeypatch.delenv(runs.METRICS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    runs.set_output_dir(None)
    yield
    runs.set_output_dir(None)


@pytest.fixture
def metrics_file(monkeypatch, tmp_path):
    path = tmp_path / "run" / "nb" / "metrics.json"
    monkeypatch.setenv(runs.METRICS_ENV, str(path))
    return path


def read(path):
    return json.loads(path.read_text())


def test_default_paths_are_under_outputs(tmp_path):
    assert runs.metrics_path() == runs.DEFAULT_OUTPUT_DIR / "metrics.json"
    runs.record("a", 1)
    assert read(tmp_path / "outputs" / "metrics.json")["metrics"] == {"a": 1}


def test_env_var_names_the_metrics_file(metrics_file):
    assert runs.metrics_path() == metrics_file
    assert runs.output_dir() == metrics_file.parent.resolve()


def test_set_output_dir_moves_the_default_file(tmp_path):
    runs.set_output_dir("elsewhere")
    assert runs.metrics_path() == tmp_path / "elsewhere" / "metrics.json"


def test_record_prints_stores_and_returns(metrics_file, capsys):
    assert runs.record("loss", 0.25) == 0.25
    runs.record("name", "tiny")
    assert capsys.readouterr().out.splitlines() == ["metric loss = 0.25", "metric name = tiny"]
    doc = read(metrics_file)
    assert doc["metrics"] == {"loss": 0.25, "name": "tiny"}
    assert set(doc) == {"metrics", "tables", "claims", "figures", "params", "readings"}


def test_record_converts_numpy_and_scalar_like_values(metrics_file):
    class FakeTensor:
        def item(self):
            return 3

    runs.record("f", np.float32(0.5))
    runs.record("i", np.int64(7))
    runs.record("b", np.bool_(True))
    runs.record("arr", np.arange(3))
    runs.record("t", FakeTensor())
    runs.record("nested", {"k": (1, np.float64(2.5))})
    stored = read(metrics_file)["metrics"]
    assert stored == {"f": 0.5, "i": 7, "b": True, "arr": [0, 1, 2], "t": 3,
                      "nested": {"k": [1, 2.5]}}
    assert type(stored["b"]) is bool and type(stored["i"]) is int


def test_record_keeps_nan(metrics_file):
    runs.record("bad", float("nan"))
    value = runs.load_metrics(metrics_file)["metrics"]["bad"]
    assert math.isnan(value)
    assert not runs.is_finite_number(value) and runs.is_finite_number(2)


def test_record_rejects_unjsonable_and_huge_values(metrics_file):
    with pytest.raises(TypeError):
        runs.record("obj", object())
    with pytest.raises(ValueError):
        runs.record("big", list(range(100_000)))
    with pytest.raises(ValueError):
        runs.record("", 1)


def test_rerecording_replaces_the_value(metrics_file):
    runs.record("x", 1)
    runs.record("x", 2)
    assert read(metrics_file)["metrics"] == {"x": 2}


def test_claim_prints_verdict_and_replaces_same_text(metrics_file, capsys):
    assert runs.claim("LoRA is cheaper", True, "3x fewer params") is True
    assert runs.claim("full FT wins", np.bool_(False)) is False
    runs.claim("LoRA is cheaper", False)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "CLAIM HOLDS: LoRA is cheaper (3x fewer params)"
    assert out[1] == "CLAIM DOES NOT HOLD: full FT wins"
    claims = read(metrics_file)["claims"]
    assert claims == [{"text": "full FT wins", "ok": False, "detail": ""},
                      {"text": "LoRA is cheaper", "ok": False, "detail": ""}]


def test_save_figure_writes_png_and_lists_relative_path(metrics_file):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    path = runs.save_figure(fig, "loss curve")
    plt.close(fig)
    assert path == metrics_file.parent.resolve() / "figures" / "loss_curve.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read(metrics_file)["figures"] == ["figures/loss_curve.png"]


def test_record_params_replaces_params(metrics_file):
    runs.record_params({"profile": "smoke", "steps": np.int32(3)})
    assert read(metrics_file)["params"] == {"profile": "smoke", "steps": 3}
    with pytest.raises(TypeError):
        runs.record_params(["not", "a", "mapping"])


def test_load_metrics_missing_and_corrupt(tmp_path):
    assert runs.load_metrics(tmp_path / "none.json") == runs.empty_metrics()
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        runs.load_metrics(bad)


def test_writes_leave_no_temporary_files(metrics_file):
    for i in range(5):
        runs.record(f"m{i}", i)
    assert sorted(p.name for p in metrics_file.parent.iterdir()) == ["metrics.json"]


def test_record_table_is_stored_whole_and_shown_in_the_report(tmp_path, monkeypatch):
    import pandas as pd

    from ftkit.batch import report

    monkeypatch.setenv(runs.METRICS_ENV, str(tmp_path / "nb" / "metrics.json"))
    table = pd.DataFrame({"score": [0.91234567, 0.5], "params": [10, 2000]},
                         index=pd.Index(["lora", "full"], name="method"))
    runs.record_table("results", table)
    doc = runs.load_metrics(tmp_path / "nb" / "metrics.json")
    assert doc["tables"]["results"] == {"columns": ["method", "score", "params"],
                                        "rows": [["lora", 0.9123, 10], ["full", 0.5, 2000]]}
    view = {"stem": "nb", "status": "passed", "seconds": 1.0, "doc": doc, "figures": []}
    md = report._md_section(view)
    assert "### Table: results" in md and "| lora | 0.9123 | 10 |" in md
    assert "<h3>Table: results</h3>" in report._html_section(view)


def test_a_reading_is_stored_replaced_by_name_and_shown_in_the_report(metrics_file, capsys):
    from ftkit.batch import report
    from ftkit.ui.plots import reading

    score = 0.8125
    reading("sweep", f"LoRA reached **{score:.2f}**.")
    reading("sweep", f"LoRA reached **{score / 2:.2f}**.")  # a rerun replaces, never appends
    doc = runs.load_metrics(metrics_file)
    assert doc["readings"] == {"sweep": "LoRA reached **0.41**."}
    view = {"stem": "nb", "status": "passed", "seconds": 1.0, "doc": doc, "figures": []}
    assert "### Reading the results: sweep" in report._md_section(view)
    assert "LoRA reached **0.41**." in report._html_section(view)
    with pytest.raises(ValueError, match="non-empty"):
        reading("empty", "  ")
