"""torchao weight-only quantisation: smaller weights, a tied head kept tied, GPU-only
formats refused on a CPU, memory measured in a fresh process."""
import math

import pytest
import torch

from ftkit.compress import quantization, recovery
from ftkit.core.config import ConfigError
from ftkit.models.tiny import tiny_llama
from ftkit.train import assistant

IDS = torch.tensor([[1, 5, 9, 13, 2, 40, 7]])


@pytest.fixture(scope="module")
def model():
    m, tok = tiny_llama(seed=2)
    return m.eval(), tok


@pytest.mark.parametrize("method,ratio", [("bf16", 0.5), ("int8", 0.3), ("int4", 0.3)])
def test_quantised_weights_are_smaller_and_close(method, ratio, model):
    m, _ = model
    q = quantization.quantize_weights(m, method)
    assert quantization.weight_storage_mb(q) <= ratio * quantization.weight_storage_mb(m) + 1e-3
    assert q.get_output_embeddings().weight is q.get_input_embeddings().weight, "still tied"
    with torch.no_grad():
        ref, got = m(IDS).logits, q(IDS).logits.float()
    assert (got - ref).abs().max() < (0.05 if method != "int4" else 0.5) * ref.abs().max()
    assert not (got == ref).all()
    assert m.get_input_embeddings().weight.dtype == torch.float32, "the source is left alone"


def test_int8_reads_its_table_directly_and_matches_the_dequantised_weights(model):
    m, _ = model
    q = quantization.quantize_weights(m, "int8")
    emb, head = q.get_input_embeddings(), q.get_output_embeddings()
    assert isinstance(emb, quantization.Int8RowEmbedding)
    assert isinstance(head, quantization.Int8TiedHead) and head.weight is emb.weight
    table = emb.weight.dequantize()
    with torch.no_grad():
        assert torch.allclose(emb(IDS), table[IDS])
        hidden = torch.randn(2, 3, table.shape[1])
        want = torch.nn.functional.linear(hidden, table)
        assert torch.allclose(head(hidden), want, atol=1e-4 * want.abs().max().item())
    hidden.requires_grad_(True)
    head(hidden).sum().backward()  # with gradients it takes the dequantised path
    assert torch.allclose(hidden.grad, table.sum(0).expand_as(hidden), atol=1e-4)
    assert set(q.state_dict()) == set(m.state_dict()), "the same names are saved"


@pytest.mark.skipif(torch.cuda.is_available(), reason="bitsandbytes is allowed on a GPU")
@pytest.mark.parametrize("method", ["nf4", "bnb-8bit"])
def test_bitsandbytes_formats_are_refused_without_a_gpu(method, model):
    with pytest.raises(ConfigError, match="needs a CUDA GPU"):
        quantization.quantize_weights(model[0], method)


def test_an_unknown_format_is_refused():
    with pytest.raises(ConfigError, match="unknown; choose one of"):
        quantization.check_method("int3")


def test_memory_is_measured_in_a_fresh_process(model, tmp_path):
    m, tok = model
    m.save_pretrained(tmp_path)
    got = quantization.resident_memory(str(tmp_path), "int8")
    assert got["method"] == "int8" and all(math.isfinite(got[k]) for k in
                                           ("resident_mb", "peak_mb", "weights_mb"))
    assert 0 < got["weights_mb"] < 0.3 * quantization.weight_storage_mb(m)


def test_lora_trains_on_a_quantised_base_and_recovery_merges(model, tmp_path):
    m, tok = model
    records = assistant.records(42)
    texts = [f"{q}\n{a}" for q, a in zip(records["test"]["instruction"][:2],
                                         records["test"]["response"][:2])]
    table = recovery.quantised_base_tuning(m, tok, records, ["fp32", "int8"], 2, texts,
                                           str(tmp_path), max_length=256, train_rows=8)
    assert list(table.index) == ["fp32", "int8"]
    assert table.base_weights_mb["int8"] < 0.3 * table.base_weights_mb["fp32"]
    assert table.perplexity.map(math.isfinite).all()
    merged, info = recovery.recover(m, tok, records, 2, str(tmp_path / "r"), max_length=256,
                                    train_rows=8)
    assert not hasattr(merged, "peft_config") and info["seconds_per_step"] > 0
    with torch.no_grad():
        assert (merged(IDS).logits - m(IDS).logits).abs().max() > 0, "the fine-tune changed it"
