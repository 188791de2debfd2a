"""Exports load back with the plain libraries, in a fresh process, with the same logits."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from ftkit.compress import export
from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method

IDS = [[1, 5, 9, 13, 2]]

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model, tok = tiny_llama()
    base_dir = tmp_path_factory.mktemp("base")
    model.save_pretrained(base_dir)
    peft_model = apply_method(model, AdapterConfig(lora_r=2, lora_dropout=0.0))
    with torch.no_grad():  # a non-zero update, so merging has something to merge
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    return peft_model.eval(), tok, base_dir


@pytest.mark.parametrize("kind", ["merged", "adapter"])
def test_each_export_loads_in_a_fresh_process_with_the_same_logits(kind, trained, tmp_path):
    model, tok, base_dir = trained
    write = export.export_merged if kind == "merged" else export.export_adapter
    folder = write(model, tok, tmp_path / kind)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    with torch.no_grad():
        expected = model(torch.tensor(IDS)).logits
    got = export.logits_in_fresh_process(folder, torch.tensor(IDS),
                                         base_dir if kind == "adapter" else None)
    torch.testing.assert_close(torch.from_numpy(got), expected, atol=1e-4, rtol=1e-4)
    assert hasattr(model, "peft_config"), "exporting merged leaves the model unmerged"
    with torch.no_grad():
        base = AutoModelForCausalLM.from_pretrained(base_dir)(torch.tensor(IDS)).logits
    assert (base - expected).abs().max() > 1e-3, "the adapter changes the logits: a real check"


def test_verify_exports_reports_float_rounding_for_both_exports(trained, tmp_path):
    model, tok, base_dir = trained
    folders = {"base": base_dir, "adapter": export.export_adapter(model, tok, tmp_path / "a"),
               "merged": export.export_merged(model, tok, tmp_path / "m")}
    table = export.verify_exports(folders, model, torch.tensor(IDS))
    assert list(table.index) == ["adapter", "merged"]
    assert (table.max_logit_diff < 1e-4).all() and (table.size_mb > 0).all()


def test_a_fresh_process_that_cannot_load_says_so(tmp_path):
    with pytest.raises(RuntimeError, match="fresh process failed"):
        export.logits_in_fresh_process(tmp_path, torch.tensor(IDS))


def test_a_non_empty_target_is_refused_and_a_failed_export_leaves_nothing(trained, tmp_path):
    model, tok, _ = trained
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "file").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export.export_merged(model, tok, tmp_path / "taken")

    def broken(folder):
        (folder / "half.safetensors").write_text("partial")
        raise RuntimeError("disk full")
    with pytest.raises(RuntimeError):
        export.publish(broken, tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["taken"]
