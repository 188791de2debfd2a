"""Instruction tasks: the generator, loading and selecting, exact scoring, SFT data, evaluation."""
import datetime
import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.data import instruct
from ftkit.evaluate import tasks
from ftkit.models.generation import chat_batch

ROOT = Path(__file__).resolve().parents[2]
TASKS_FILE = ROOT / "data" / "instruct_tasks" / "tasks.jsonl"
TEAMS = {"Kestrel", "Heron", "Osprey", "Wren", "Finch"}


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("make_instruct_tasks",
                                                  ROOT / "data" / "make_instruct_tasks.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def rows():
    return instruct.load_tasks(TASKS_FILE)


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    return path


# --- the generator ------------------------------------------------------------------------


def test_generate_is_deterministic_per_seed(gen):
    assert gen.generate(20, seed=3) == gen.generate(20, seed=3)
    assert gen.generate(20, seed=3) != gen.generate(20, seed=4)


def test_generate_gives_n_per_task_with_the_test_share(gen):
    rows = gen.generate(40, test_share=0.25, seed=1)
    assert Counter(r["task"] for r in rows) == {"extract": 40, "date": 40, "route": 40}
    assert Counter((r["task"], r["split"]) for r in rows) == {
        (t, s): n for t in ("extract", "date", "route") for s, n in (("test", 10), ("train", 30))}
    assert all(set(r) == {"task", "instruction", "response", "split"} for r in rows)
    instructions = [r["instruction"] for r in rows]
    assert len(set(instructions)) == len(instructions)


def test_generated_rows_follow_each_task_s_rules(gen):
    rows = gen.generate(120, seed=5)
    for r in rows:
        assert r["instruction"].startswith(f"[{r['task']}] "), r
        if r["task"] == "extract":
            answer = json.loads(r["response"])
            assert isinstance(answer, dict) and sorted(answer) == ["city", "name", "order"], r
            for value in answer.values():
                assert isinstance(value, str) and value in r["instruction"], r
        elif r["task"] == "date":
            assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", r["response"]), r
            datetime.date.fromisoformat(r["response"])  # a real calendar date
        else:
            assert r["task"] == "route" and r["response"] in TEAMS, r
    # every team occurs, so routing is not a constant answer
    assert {r["response"] for r in rows if r["task"] == "route"} == TEAMS


def test_committed_file_is_what_the_script_generates(gen, rows):
    expected = gen.generate()  # defaults: seed 7, 600 per task, 20 % test
    assert rows == expected
    text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in expected)
    assert TASKS_FILE.read_text("utf-8") == text


# --- loading and selecting ----------------------------------------------------------------


def test_load_tasks_missing_file_says_how_to_generate(tmp_path):
    with pytest.raises(ConfigError, match="does not exist.*make_instruct_tasks.py"):
        instruct.load_tasks(tmp_path / "nope.jsonl")


def test_load_tasks_row_without_response_names_line_and_column(tmp_path):
    path = _write(tmp_path / "t.jsonl", [
        {"task": "date", "instruction": "[date] x", "response": "2020-01-01", "split": "train"},
        {"task": "date", "instruction": "[date] y", "split": "train"}])
    with pytest.raises(ConfigError, match=r"line 2: missing or empty \['response'\]"):
        instruct.load_tasks(path)


def test_load_tasks_rejects_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(b'{"task": "date", "instruction": "caf\xe9", "response": "x", '
                     b'"split": "train"}\n')
    with pytest.raises(ConfigError, match="not UTF-8"):
        instruct.load_tasks(path)


def test_load_tasks_names_the_line_that_is_not_json(tmp_path):
    good = {"task": "date", "instruction": "[date] x", "response": "2020-01-01", "split": "train"}
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good)[:-5] + "\n", "utf-8")
    with pytest.raises(ConfigError, match="line 2"):
        instruct.load_tasks(path)


@pytest.mark.parametrize("content", ["", "\n\n  \n"])
def test_load_tasks_rejects_a_file_without_examples(tmp_path, content):
    path = tmp_path / "t.jsonl"
    path.write_text(content, "utf-8")
    with pytest.raises(ConfigError, match="holds no examples"):
        instruct.load_tasks(path)


def test_load_tasks_skips_blank_lines(tmp_path):
    row = {"task": "route", "instruction": "[route] x", "response": "Wren", "split": "test"}
    path = tmp_path / "t.jsonl"
    path.write_text("\n" + json.dumps(row) + "\n\n", "utf-8")
    assert instruct.load_tasks(path) == [row]


def test_select_unknown_task_lists_the_known_ones(rows):
    with pytest.raises(ConfigError) as err:
        instruct.select(rows, "extract,summary", "train")
    assert "['summary']" in str(err.value)
    assert "['date', 'extract', 'route']" in str(err.value)


def test_select_n_per_task_from_one_split(rows):
    picked = instruct.select(rows, "extract, route", "test", n=7, seed=1)
    assert Counter(r["task"] for r in picked) == {"extract": 7, "route": 7}
    assert all(r["split"] == "test" for r in picked)
    assert instruct.select(rows, ["extract", "route"], "test", n=7, seed=1) == picked
    everything = instruct.select(rows, "date", "train")
    assert len(everything) == 480 and all(r["split"] == "train" for r in everything)


def test_select_bad_split(rows):
    with pytest.raises(ConfigError, match="choose 'train' or 'test'"):
        instruct.select(rows, "date", "validation")


# --- scoring ------------------------------------------------------------------------------

REF = '{"name": "Ada Park", "order": "QA-1234", "city": "Graz"}'


@pytest.mark.parametrize("task, prediction, reference, expected", [
    ("extract", REF, REF, 1.0),
    ("extract", '{"city":"Graz","order":"QA-1234","name":"Ada Park"}', REF, 1.0),
    ("extract", ' \n{ "name" : "Ada Park",\n "order": "QA-1234", "city": "Graz" }\n', REF, 1.0),
    ("extract", '{"name": "Ada Park", "order": "QA-1234"}', REF, 0.0),
    ("extract", '{"name": "Ada Park", "order": "QA-1234", "city": "Graz", "x": 1}', REF, 0.0),
    ("extract", '{"name": "Ada Park", "order": "QA-1235", "city": "Graz"}', REF, 0.0),
    ("extract", "name: Ada Park, order: QA-1234, city: Graz", REF, 0.0),
    ("extract", '["Ada Park", "QA-1234", "Graz"]', REF, 0.0),
    ("extract", "", REF, 0.0),
    ("date", "2021-04-03", "2021-04-03", 1.0),
    ("date", " 2021-04-03\n", "2021-04-03", 1.0),
    ("date", "2021-4-3", "2021-04-03", 0.0),
    ("date", "2021-04-03.", "2021-04-03", 0.0),
    ("date", "3 April 2021", "2021-04-03", 0.0),
    ("route", "Kestrel", "Kestrel", 1.0),
    ("route", "Kestrel.", "Kestrel", 1.0),
    ("route", "  Kestrel . ", "Kestrel", 1.0),
    ("route", "kestrel", "Kestrel", 0.0),
    ("route", "Kestrel team", "Kestrel", 0.0),
    ("route", "Heron", "Kestrel", 0.0),
])
def test_score(task, prediction, reference, expected):
    assert tasks.score(task, prediction, reference) == expected


@pytest.mark.parametrize("prediction, expected", [
    (REF, 1.0),
    ('{"city": "Graz", "name": "Ada Park", "order": "QA-1234"}', 1.0),
    ('{"name": "Ada Park", "order": "QA-1234"}', 2 / 3),
    ('{"name": "Ada Park", "order": "QA-9999", "city": "Graz"}', 2 / 3),
    ('{"name": "Ada Park", "order": "QA-1234", "city": "Graz", "extra": 1}', 1.0),
    ('{"name": "Ada"}', 0.0),
    ("not json at all", 0.0),
    ('["Ada Park"]', 0.0),
])
def test_field_accuracy(prediction, expected):
    assert tasks.field_accuracy(prediction, REF) == pytest.approx(expected)


def test_field_accuracy_needs_a_json_object_reference():
    with pytest.raises(ValueError, match="not a JSON object"):
        tasks.field_accuracy(REF, "Kestrel")


def test_unknown_task_has_no_scorer():
    with pytest.raises(ValueError, match=r"no scorer for task 'summary'.*'route'"):
        tasks.score("summary", "a", "a")


# --- SFT data, generation and evaluation on the tiny model --------------------------------


def test_sft_dataset_puts_the_loss_on_the_answer_only(rows):
    _, tok = models.load("tiny-llama")
    picked = [next(r for r in rows if r["task"] == t) for t in ("extract", "date", "route")]
    ds = instruct.sft_dataset(tok, picked, max_length=512)
    assert len(ds) == 3
    for row, ex in zip(picked, ds):
        prompt = tok.apply_chat_template([{"role": "user", "content": row["instruction"]}],
                                         tokenize=False, add_generation_prompt=True)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        ids, labels = ex["input_ids"], ex["labels"]
        assert len(ids) == len(labels) > n_prompt
        assert labels[:n_prompt] == [-100] * n_prompt
        assert labels[n_prompt:] == ids[n_prompt:]
        assert tok.decode(ids[:n_prompt]) == prompt
        answer = tok.decode(labels[n_prompt:])
        assert answer == row["response"] + tok.eos_token
        assert ids[-1] == tok.eos_token_id


def _lively_tiny_llama():
    """tiny-llama with larger random weights: the default init answers every prompt with
    newlines, which would make any comparison of generated text trivially equal."""
    model, tok = models.load("tiny-llama")
    torch.manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0, 0.3)
    return model.eval(), tok


def test_batched_generation_with_left_padding_matches_one_at_a_time():
    model, tok = _lively_tiny_llama()
    prompts = ["hi", "What is the capital of France? Answer in one word, please.",
               "[date] Convert the date below to ISO format.\nInvoice issued 3.4.2021, "
               "payable within 30 days.", "Numbers: 0 1 2"]
    one = chat_batch(model, tok, prompts, max_new_tokens=5, batch_size=1)
    three = chat_batch(model, tok, prompts, max_new_tokens=5, batch_size=3)
    assert len(one) == len(prompts) and any(one)
    assert three == one
    assert tok.padding_side == "right"  # restored after generating


def test_evaluate_returns_a_table_and_accuracy_per_task(rows):
    model, tok = _lively_tiny_llama()
    model.train()
    picked = [next(r for r in rows if r["task"] == t and r["split"] == "test")
              for t in ("extract", "date", "route")]
    table, scores = tasks.evaluate(model, tok, picked, max_new_tokens=4, batch_size=3)
    assert model.training  # the mode it had before is restored
    assert list(table.columns) == ["task", "answer", "reference", "correct"]
    assert table.task.tolist() == ["extract", "date", "route"]
    assert table.reference.tolist() == [r["response"] for r in picked]
    assert table.correct.isin([0.0, 1.0]).all()
    assert set(scores) == {"extract", "date", "route"}
    assert all(0.0 <= v <= 1.0 for v in scores.values())
