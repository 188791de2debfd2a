"""The lm-eval bridge: task files checked, a tiny model scored offline, results read back."""
import json

import pytest
import yaml

from ftkit.core.config import ConfigError
from ftkit.evaluate import harness
from ftkit.models.tiny import tiny_bert

MC = {"task": "tiny_mc", "dataset_path": "json",
      "dataset_kwargs": {"data_files": {"test": "tiny.jsonl"}}, "test_split": "test",
      "output_type": "multiple_choice", "doc_to_text": "Q: {{question}}\nA:",
      "doc_to_choice": "{{choices}}", "doc_to_target": "answer",
      "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
      "metadata": {"version": 1.0}}


def _task(folder, rows, **changes):
    (folder / "tiny.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows),
                                       encoding="utf-8")
    path = folder / "tiny_mc.yaml"
    path.write_text(yaml.safe_dump({**MC, **changes}), encoding="utf-8")
    return path


ROWS = [{"question": f"{a} plus {b}?", "choices": [str(a + b), str(a + b + 1), "seven"],
         "answer": 0} for a, b in [(1, 2), (2, 2), (3, 1), (4, 4)]]


def test_a_task_runs_offline_and_its_samples_are_read(tmp_path, policy):
    model, tok = policy
    result = harness.run_tasks(model, tok, [_task(tmp_path, ROWS)], bootstrap_iters=10)
    row = result.table.set_index("metric").loc["acc"]
    assert row.task == "tiny_mc" and 0.0 <= row.value <= 1.0 and row.n == 4
    assert "tiny_mc" in result.markdown and "acc" in result.markdown
    choices = harness.choice_table(result.samples["tiny_mc"])
    assert len(choices) == 4 and all(len(ll) == 3 for ll in choices.loglik)
    assert choices.correct.mean() == pytest.approx(row.value)


def test_the_projects_tasks_load_with_absolute_data_files():
    for name in ("shop_knowledge", "shop_intent", "general_knowledge", "shop_answer"):
        cfg = harness.load_task(name)
        for file in cfg["dataset_kwargs"]["data_files"].values():
            assert file.startswith("/") and file.endswith(".jsonl")


def test_bad_task_files_are_refused_with_the_reason(tmp_path):
    with pytest.raises(ConfigError, match="missing \\['doc_to_target'\\]"):
        harness.load_task(_without(tmp_path, "doc_to_target"))
    with pytest.raises(ConfigError, match="row lacks \\['choices'\\]"):
        harness.load_task(_task(tmp_path, [{"question": "x", "answer": 0}]))
    with pytest.raises(ConfigError, match="empty"):
        harness.load_task(_task(tmp_path, []))
    with pytest.raises(ConfigError, match="the project's tasks"):
        harness.load_task("no_such_task")


def _without(folder, key):
    path = _task(folder, ROWS)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    del cfg[key]
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    return path


def test_a_model_that_is_not_a_causal_lm_is_refused(tmp_path):
    model, tok = tiny_bert()
    with pytest.raises(ConfigError, match="not a causal language model"):
        harness.run_tasks(model, tok, [_task(tmp_path, ROWS)])
