"""Recasting frozen Linear layers: the same loss and gradients, no bf16 weight copies kept."""
import copy
import platform

import torch

from ftkit import models
from ftkit.compress.quantization import quantize_weights
from ftkit.core.config import AdapterConfig
from ftkit.models.tiny import tiny_llama
from ftkit.train import adapters
from ftkit.train.speed.fastloss import label_only_loss
from ftkit.train.speed.frozen_linear import RecastLinear, use_recast_frozen_linears


def _lora_model():
    torch.manual_seed(0)
    model, tok = models.load("tiny-llama")
    model = adapters.apply_method(model, AdapterConfig(lora_r=4, lora_alpha=8))
    ids = tok(["LoRA adds low-rank matrices to frozen weights."] * 2, return_tensors="pt")
    return model.eval(), ids["input_ids"]  # no dropout: both passes see the same masks


def _step(model, ids):
    """Loss, LoRA gradients and the bytes of new tensors autograd saved for backward (the
    model's own parameters are referenced, not copied), under bf16 autocast."""
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in params:
            saved[ptr] = t.untyped_storage().nbytes()
        return t

    model.zero_grad()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast("cpu", dtype=torch.bfloat16):
        loss = label_only_loss(model, ids, None, ids)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return loss.detach(), grads, sum(saved.values())


def test_recast_keeps_the_numbers_and_saves_the_weight_copies():
    model, ids = _lora_model()
    loss, grads, saved = _step(model, ids)
    frozen = {name: m for name, m in model.named_modules() if type(m) is torch.nn.Linear
              and not m.weight.requires_grad}
    assert use_recast_frozen_linears(model) == len(frozen) > 0
    loss2, grads2, saved2 = _step(model, ids)
    torch.testing.assert_close(loss2, loss, rtol=0, atol=0)
    for name, grad in grads.items():
        torch.testing.assert_close(grads2[name], grad, rtol=1e-3, atol=1e-6)
    # the first layer's q/k/v inputs need no gradient, so those save nothing either way;
    # every other frozen projection stops saving its bf16 weight copy
    copies = sum(m.weight.numel() * 2 for name, m in frozen.items()
                 if not any(f"layers.0.self_attn.{p}_proj" in name for p in "qkv"))
    assert saved - saved2 >= copies


def test_only_frozen_plain_linears_switch_and_models_still_copy():
    model, ids = _lora_model()
    use_recast_frozen_linears(model)
    for module in model.modules():
        if isinstance(module, RecastLinear):
            assert not module.weight.requires_grad
        elif type(module) is torch.nn.Linear:  # LoRA A/B matrices train
            assert module.weight.requires_grad
    twin = copy.deepcopy(model)
    with torch.no_grad():
        torch.testing.assert_close(twin(ids).logits, model(ids).logits)


def test_quantised_weights_keep_the_stock_linear_and_still_train():
    """A torchao int8 weight has no plain product with the weight on the right (the recast
    backward's), so its layer stays an nn.Linear and the input gradient still flows."""
    model, _ = tiny_llama()
    q = quantize_weights(model, "int8").requires_grad_(False)
    assert use_recast_frozen_linears(q) == 0
    x = q.get_input_embeddings()(torch.tensor([[1, 2, 3]])).detach().requires_grad_(True)
    q(inputs_embeds=x).logits.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_skipping_peft_input_casts_changes_no_value_and_restores_the_switch():
    from ftkit.train.speed.fastloss import _no_adapter_input_casts

    for method in ("lora", "ia3"):
        torch.manual_seed(0)
        model, tok = models.load("tiny-llama")
        model = adapters.apply_method(model, AdapterConfig(peft_method=method, lora_r=4)).eval()
        ids = tok(["Adapters on frozen weights."], return_tensors="pt")["input_ids"]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref = label_only_loss(model, ids, None, ids)
            with _no_adapter_input_casts(model):
                layers = [m for m in model.modules() if hasattr(m, "_cast_input_dtype")]
                assert layers and not any(m.cast_input_dtype_enabled for m in layers)
                loss = label_only_loss(model, ids, None, ids)
        assert torch.equal(loss, ref)
        assert all(getattr(m, "cast_input_dtype_enabled", True) for m in layers)


def _mapped_lora_model(tmp_path, method="lora"):
    """The tiny model saved and loaded again, so its weights are mapped from the file."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model, tok = models.load("tiny-llama")
    model.save_pretrained(tmp_path)
    model = AutoModelForCausalLM.from_pretrained(tmp_path, dtype=torch.float32)
    model = adapters.apply_method(model, AdapterConfig(peft_method=method, lora_r=4, lora_alpha=8))
    ids = tok(["LoRA adds low-rank matrices to frozen weights."] * 2, return_tensors="pt")
    use_recast_frozen_linears(model)
    return model.eval(), ids["input_ids"]


def test_held_bf16_copies_change_no_number_and_release_the_fp32_pages(tmp_path):
    from ftkit.core.env import file_mappings
    from ftkit.train.speed.frozen_linear import drop_bf16_copies, hold_bf16_copies

    model, ids = _mapped_lora_model(tmp_path)
    recast = [m for m in model.modules() if isinstance(m, RecastLinear)]
    assert file_mappings() and recast
    loss, grads, _ = _step(model, ids)
    layers, released = hold_bf16_copies(model)
    assert layers == len(recast)
    assert all(m._bf16[2].dtype == torch.bfloat16 for m in recast)
    if platform.system() == "Linux":
        assert released > 0
    loss2, grads2, _ = _step(model, ids)
    assert torch.equal(loss2, loss)
    for name, grad in grads.items():
        assert torch.equal(grads2[name], grad), name
    drop_bf16_copies(model)
    assert all(m._bf16 is None for m in recast)
    loss3, _, _ = _step(model, ids)
    assert torch.equal(loss3, loss)


def test_released_pages_come_back_unchanged_and_written_weights_are_kept(tmp_path):
    from ftkit.train.speed.frozen_linear import hold_bf16_copies

    model, _ = _mapped_lora_model(tmp_path)
    recast = [m for m in model.modules() if isinstance(m, RecastLinear)]
    before = [m.weight.detach().clone() for m in recast]
    with torch.no_grad():
        recast[0].weight.add_(0.5)  # its pages are now this process's own copy
    before[0] += 0.5
    hold_bf16_copies(model)
    for module, weight in zip(recast, before):
        assert torch.equal(module.weight, weight)
    # no copy where the pages stay: it would add memory
    assert recast[0]._bf16 is None and all(m._bf16 is not None for m in recast[1:])


def test_a_changed_weight_is_not_served_from_a_stale_copy(tmp_path):
    from ftkit.train.speed.frozen_linear import hold_bf16_copies

    model, ids = _mapped_lora_model(tmp_path)
    hold_bf16_copies(model)
    layer = next(m for m in model.modules() if isinstance(m, RecastLinear))
    x = torch.randn(3, layer.in_features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer._weight(x) is layer._bf16[2]
        with torch.no_grad():
            layer.weight.mul_(2.0)  # e.g. a merge written into the base weight
        assert layer._weight(x) is layer.weight
    assert layer._weight(x) is layer.weight  # outside autocast the fp32 weight, always


def test_no_copies_in_memory_and_dora_weights_keep_their_pages(tmp_path):
    from ftkit.core.env import release_file_pages
    from ftkit.train.speed.frozen_linear import hold_bf16_copies

    model, _ = _lora_model()  # built in memory: copies would only add memory
    use_recast_frozen_linears(model)
    assert hold_bf16_copies(model) == (0, 0)
    assert release_file_pages([torch.randn(4096, 16)]) == 0
    dora, ids = _mapped_lora_model(tmp_path, method="dora")
    loss, grads, _ = _step(dora, ids)
    recast = [m for m in dora.modules() if isinstance(m, RecastLinear)]
    bases = [m.get_base_layer() for m in dora.modules() if getattr(m, "use_dora", {}).get("default")]
    others = [m for m in recast if all(m is not b for b in bases)]  # the output head
    layers, released = hold_bf16_copies(dora)
    assert bases and layers == len(recast)  # DoRA's norms read the fp32 weight: kept
    assert released <= sum(m.weight.numel() * 4 for m in others)
    loss2, grads2, _ = _step(dora, ids)
    assert torch.equal(loss2, loss)
    for name, grad in grads.items():
        assert torch.equal(grads2[name], grad), name
