"""Exports load back with the plain libraries, in a fresh process, with the same logits."""
import json
import subprocess
import sys

import pytest
import torch

from ftkit.compress import export
from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method

IDS = [[1, 5, 9, 13, 2]]

FRESH = """
import json, sys, torch
from transformers import AutoModelForCausalLM
kind, folder, base = sys.argv[1], sys.argv[2], sys.argv[3]
if kind == "merged":
    model = AutoModelForCausalLM.from_pretrained(folder)
else:
    from peft import PeftModel
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder)
with torch.no_grad():
    print(json.dumps(model(torch.tensor(%s)).logits.flatten().tolist()))
""" % IDS


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


def fresh_logits(kind, folder, base_dir) -> torch.Tensor:
    out = subprocess.run([sys.executable, "-c", FRESH, kind, str(folder), str(base_dir)],
                         capture_output=True, text=True, check=True, timeout=120).stdout
    return torch.tensor(json.loads(out.strip().splitlines()[-1]))


@pytest.mark.parametrize("kind", ["merged", "adapter"])
def test_each_export_loads_in_a_fresh_process_with_the_same_logits(kind, trained, tmp_path):
    model, tok, base_dir = trained
    write = export.export_merged if kind == "merged" else export.export_adapter
    folder = write(model, tok, tmp_path / kind)
    assert list(folder.glob("*.safetensors")) and not list(folder.glob("*.bin"))
    with torch.no_grad():
        expected = model(torch.tensor(IDS)).logits.flatten()
    torch.testing.assert_close(fresh_logits(kind, folder, base_dir), expected, atol=1e-4,
                               rtol=1e-4)
    assert hasattr(model, "peft_config"), "exporting merged leaves the model unmerged"


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken"]
