"""The running example: built once per key, reused after, rebuilt when data or recipe change."""
import shutil

import pytest
import torch

from ftkit.core.config import ConfigError
from ftkit.data import prep
from ftkit.train import assistant


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ftkit-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FTKIT_CACHE", str(folder))
        yield folder


def test_records_follow_notebook_01_and_are_cached(cache, monkeypatch):
    data = assistant.records(seed=3)
    assert set(data) == {"train", "test"} and len(data["test"]) > 0
    assert set(data["train"]["id"]).isdisjoint(data["test"]["id"])
    assert not any("@" in q for q in data["train"]["instruction"]), "PII redacted"
    calls = []
    monkeypatch.setattr(assistant, "prepare", lambda *a, **k: calls.append(1))
    again = assistant.records(seed=3)
    assert calls == [] and list(again["train"]["id"]) == list(data["train"]["id"])


def test_the_key_changes_with_data_recipe_and_seed(tmp_path):
    recipe = assistant.recipe_for("smoke")
    key = assistant.cache_key("fine_tuned", recipe, 0)
    assert key == assistant.cache_key("fine_tuned", recipe, 0)
    assert key != assistant.cache_key("fine_tuned", recipe, 1)
    assert key != assistant.cache_key("fine_tuned", assistant.recipe_for("workshop"), 0)
    copy = tmp_path / "records"
    shutil.copytree(prep.data_folder(assistant.DATA_DIR), copy)
    assert assistant.cache_key("fine_tuned", recipe, 0, str(copy)) == key
    with open(copy / "tickets.jsonl", "a", encoding="utf-8") as fh:
        fh.write("\n")
    assert assistant.cache_key("fine_tuned", recipe, 0, str(copy)) != key


def test_fine_tuned_trains_once_then_loads_the_same_adapter(cache, monkeypatch):
    first = assistant.fine_tuned("smoke", seed=3)
    info = first.info
    assert info["eval_loss_after"] < info["eval_loss_before"]
    assert (cache / "assistant" / info["key"] / "adapter" / "adapter_model.safetensors").is_file()
    monkeypatch.setattr(assistant, "_train", lambda *a: pytest.fail("trained again"))
    second = assistant.fine_tuned("smoke", seed=3)
    ids = first.tokenizer("where is my order", return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        assert torch.equal(first.model(ids).logits, second.model(ids).logits)
    assert len(second.reply(["where is my order"], max_new_tokens=2)) == 1


def test_a_failed_build_leaves_no_entry(tmp_path):
    def build(folder):
        (folder / "half-written").write_text("x")
        raise RuntimeError("killed mid-build")

    with pytest.raises(RuntimeError, match="killed"):
        assistant.publish(build, tmp_path / "entry")
    assert [p.name for p in tmp_path.iterdir()] == [".entry.lock"]  # only the builders' lock


def test_an_unknown_profile_names_the_known_ones():
    with pytest.raises(ConfigError, match="'laptop' has no assistant recipe; choose one of"):
        assistant.recipe_for("laptop")
