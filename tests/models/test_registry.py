"""Model registry: names, clear errors, tiny models, quantisation."""
import copy

import pytest
import torch

from ftkit import models
from ftkit.evaluate.perplexity import perplexity
from ftkit.models import footprint, generation


def test_unknown_name_lists_known_ones():
    with pytest.raises(models.ModelNotFoundError) as err:
        models.load("smollm-9000")
    for name in ("smollm2-135m", "whisper-tiny.en", "minilm-l6"):
        assert name in str(err.value)


def test_unreachable_hub_id_fails_fast_with_advice(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    models.hub_reachable.cache_clear()
    with pytest.raises(models.ModelNotFoundError, match="registry name"):
        models.load_model("no-such-org/no-such-model")
    models.hub_reachable.cache_clear()


def test_tiny_llama_chats_and_trains():
    model, tok = models.load("tiny-llama")
    ids = generation.chat_ids(tok, "hello")
    assert ids.shape[0] == 1 and ids[0, 0] == tok.bos_token_id
    answer = generation.chat(model, tok, "hello", max_new_tokens=5)
    assert isinstance(answer, str)
    batch = tok(["The model answered."], return_tensors="pt")
    loss = model(**batch, labels=batch["input_ids"]).loss
    loss.backward()
    assert torch.isfinite(loss) and model.lm_head.weight.grad is not None


def test_tiny_models_are_deterministic():
    a, _ = models.load("tiny-llama")
    b, _ = models.load("tiny-llama")
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_tiny_bert_encodes():
    from ftkit.models.embeddings import encode
    model, tok = models.load("tiny-bert")
    emb = encode(model, tok, ["a test", "another longer test sentence"])
    assert emb.shape == (2, 32)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_parameter_breakdown_counts_every_parameter_once():
    model, _ = models.load("tiny-llama")
    parts = footprint.parameter_breakdown(model)
    assert sum(parts.values()) == footprint.count_parameters(model)
    assert parts["mlp"] > 0 and parts["attention"] > 0 and parts["embeddings"] > 0


def test_int8_weight_only_keeps_outputs_close_and_shrinks_linears():
    model, tok = models.load("tiny-llama")
    quant = models.quantize(copy.deepcopy(model), "int8-weight")
    ids = tok(["The quick brown fox jumps over the lazy dog."], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref, got = model(ids).logits, quant(ids).logits
    assert torch.allclose(ref, got, atol=0.05 * ref.abs().max())
    assert quant.lm_head.weight is quant.model.embed_tokens.weight  # tie survives
    assert footprint.serialized_mb(quant) < footprint.serialized_mb(model)


def test_int8_dynamic_runs_and_unknown_method_is_refused():
    model, tok = models.load("tiny-llama")
    quant = models.quantize(copy.deepcopy(model), "int8-dynamic")
    assert perplexity(quant, tok, ["The model answered the question correctly."]) > 1
    with pytest.raises(ValueError, match="int8-weight"):
        models.quantize(model, "int3")


def test_4bit_needs_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("GPU present")
    with pytest.raises(RuntimeError, match="CUDA GPU"):
        models.load_model("smollm2-135m", quantization="4bit")
