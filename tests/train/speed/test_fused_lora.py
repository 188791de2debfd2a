"""Fused LoRA layers: peft's values and gradients, peft's own path wherever the fusion does not apply."""
import copy

import pytest
import torch

from ftkit.core.config import AdapterConfig
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method
from ftkit.train.speed.fused_lora import use_fused_lora


def _pair(method="lora", dropout=0.0):
    torch.manual_seed(0)
    model, _ = tiny_llama()
    peft_model = apply_method(model, AdapterConfig(peft_method=method, lora_r=4, lora_alpha=16,
                                                   lora_dropout=dropout))
    for name, p in peft_model.named_parameters():  # B starts at zero: make the update real
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.05)
    return peft_model, copy.deepcopy(peft_model)


def _loss_and_grads(model, ids):
    model.zero_grad()
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                           if p.requires_grad}


def test_same_loss_and_gradients_as_peft(monkeypatch):
    fused, plain = _pair()
    layers = use_fused_lora(fused)
    assert layers > 0
    ids = torch.randint(0, 100, (2, 12))
    calls, addmm_ = [], torch.Tensor.addmm_
    monkeypatch.setattr(torch.Tensor, "addmm_",
                        lambda *a, **k: calls.append(1) or addmm_(*a, **k))
    loss_f, grads_f = _loss_and_grads(fused, ids)
    monkeypatch.undo()
    assert len(calls) == layers  # every layer took the fused path
    loss_p, grads_p = _loss_and_grads(plain, ids)
    assert torch.allclose(loss_f, loss_p, atol=1e-6)
    assert grads_f.keys() == grads_p.keys() and len(grads_f) > 0
    for name in grads_f:
        assert torch.allclose(grads_f[name], grads_p[name], atol=1e-6, rtol=1e-4), name


def test_under_bf16_autocast_matches_peft_closely():
    fused, plain = _pair()
    use_fused_lora(fused)
    ids = torch.randint(0, 100, (2, 12))
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        a, b = fused(input_ids=ids).logits, plain(input_ids=ids).logits
    assert a.dtype == b.dtype
    assert torch.allclose(a.float(), b.float(), atol=0.05)


def test_peft_paths_stay_peft_own():
    fused, plain = _pair()
    use_fused_lora(fused)
    ids = torch.randint(0, 100, (1, 10))
    with torch.no_grad():
        with fused.disable_adapter(), plain.disable_adapter():  # the base model alone
            assert torch.equal(fused(input_ids=ids).logits, plain(input_ids=ids).logits)
        merged = fused.merge_and_unload()
        assert torch.allclose(merged(input_ids=ids).logits, plain(input_ids=ids).logits,
                              atol=1e-5)


@pytest.mark.parametrize("method", ["dora", "ia3"])
def test_other_methods_are_left_alone(method):
    model, _ = _pair(method) if method == "dora" else (apply_method(
        tiny_llama()[0], AdapterConfig(peft_method="ia3")), None)
    before = [type(m) for m in model.modules()]
    count = use_fused_lora(model)
    if method == "ia3":
        assert count == 0 and [type(m) for m in model.modules()] == before
    else:  # DoRA layers switch class but run peft's (or ftkit's fast) DoRA forward
        ids = torch.randint(0, 100, (1, 8))
        ref = copy.deepcopy(model)
        for m in ref.modules():
            if type(m).__name__ == "FusedLoraLinear":
                m.__class__ = type(m).__mro__[1]
        with torch.no_grad():
            assert torch.equal(model(input_ids=ids).logits, ref(input_ids=ids).logits)
