"""GGUF files written by ftkit load in a fresh process with plain transformers, same model."""
import numpy as np
import pytest
import torch

from ftkit.compress import export, gguf_file
from ftkit.core.config import ConfigError
from ftkit.models.tiny import tiny_llama

IDS = torch.tensor([[1, 5, 9, 13, 2, 40, 7]])

FRESH_GGUF = """
import sys, numpy, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
folder, name, ids_file, out_file = sys.argv[1:5]
model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name).eval()
tok = AutoTokenizer.from_pretrained(folder, gguf_file=name)
assert tok("where is my parcel")["input_ids"] == [int(x) for x in sys.argv[5].split(",")]
with torch.no_grad():
    numpy.save(out_file, model(input_ids=torch.from_numpy(numpy.load(ids_file))).logits.numpy())
"""


@pytest.fixture(scope="module")
def model():
    m, tok = tiny_llama(seed=3)
    return m.eval(), tok


def fresh_gguf_logits(path, tok, tmp_path) -> np.ndarray:
    import subprocess
    import sys

    np.save(tmp_path / "ids.npy", IDS.numpy())
    want = ",".join(map(str, tok("where is my parcel")["input_ids"]))
    subprocess.run([sys.executable, "-c", FRESH_GGUF, str(path.parent), path.name,
                    str(tmp_path / "ids.npy"), str(tmp_path / "out.npy"), want],
                   check=True, capture_output=True, timeout=180)
    return np.load(tmp_path / "out.npy")


@pytest.mark.parametrize("qtype,tol", [("F32", 1e-5), ("Q8_0", 0.05), ("Q4_0", 0.6)])
def test_a_gguf_file_loads_in_a_fresh_process_with_plain_transformers(qtype, tol, model, tmp_path):
    m, tok = model
    path = gguf_file.export_gguf(m, tok, tmp_path / f"m-{qtype}.gguf", qtype)
    with torch.no_grad():
        want = m(input_ids=IDS).logits.numpy()
    got = fresh_gguf_logits(path, tok, tmp_path)
    diff = np.abs(got - want).max()
    assert diff <= tol, f"{qtype}: logits differ by {diff}"
    if qtype != "F32":  # a quantised file is smaller and not the same numbers
        assert path.stat().st_size < 0.6 * gguf_file.export_gguf(
            m, tok, tmp_path / "f32.gguf", "F32").stat().st_size
        assert diff > 1e-6


def test_the_rotary_permutation_is_what_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8 * 4, 3)  # 4 heads of dim 8
    back = LlamaTensorProcessor()._reverse_permute_weights(gguf_file.rotary_permute(w, 4), 4, 4)
    np.testing.assert_array_equal(back, w)
    assert not np.array_equal(gguf_file.rotary_permute(w, 4), w)


def test_names_and_bad_input(model, tmp_path):
    m, tok = model
    assert gguf_file.gguf_name("model.layers.3.mlp.down_proj.weight") == "blk.3.ffn_down.weight"
    assert gguf_file.gguf_name("model.embed_tokens.weight") == "token_embd.weight"
    with pytest.raises(ConfigError, match="no GGUF name"):
        gguf_file.gguf_name("model.layers.0.mlp.experts.weight")
    with pytest.raises(ConfigError, match="Q4_K"):
        gguf_file.export_gguf(m, tok, tmp_path / "k.gguf", "Q4_K")
    (tmp_path / "taken.gguf").write_bytes(b"x")
    with pytest.raises(ConfigError, match="exists"):
        gguf_file.export_gguf(m, tok, tmp_path / "taken.gguf", "Q8_0")
    with pytest.raises(ConfigError, match="no GGUF file"):
        gguf_file.load_gguf(tmp_path / "missing.gguf")


def test_a_failed_write_leaves_nothing_behind(model, tmp_path, monkeypatch):
    m, tok = model

    def disk_full(*args, **kwargs):
        raise OSError("disk full")
    monkeypatch.setattr("gguf.GGUFWriter.write_tensors_to_file", disk_full)
    with pytest.raises(OSError):
        gguf_file.export_gguf(m, tok, tmp_path / "m.gguf", "Q8_0")
    assert list(tmp_path.iterdir()) == []


def test_gguf_table_reads_every_file_back(model, tmp_path):
    m, tok = model
    texts = ["where is my parcel, it was due on monday", "i want a refund for the broken mug"]
    table = gguf_file.gguf_table(m, tok, tmp_path, ["F32", "Q8_0"], texts, IDS)
    assert list(table.index) == ["source", "F32", "Q8_0"]
    assert abs(table.perplexity_change["F32"]) < 1e-4 and table.max_logit_diff["F32"] < 1e-4
    assert table.file_mb["Q8_0"] < table.file_mb["F32"]
    assert export.folder_mb(tmp_path) > 0
