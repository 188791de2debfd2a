"""The speed layer's one entry point: what it switches, the line each run prints, and the DPO
levers of DPO (reference once, padding-free pairs, completion positions only: same losses as
the plain path)."""
import pytest
import torch
from peft.tuners.lora.layer import Linear as LoraLinear

from ftkit.align import dpo, family
from ftkit.core.config import AdapterConfig, TrainConfig
from ftkit.models.tiny import tiny_llama
from ftkit.train.adapters import apply_method
from ftkit.train.speed import layer
from ftkit.train.speed.frozen_linear import FrozenWeightCache, RecastLinear
from ftkit.train.speed.fused_lora import FusedLoraLinear

PAIRS = [{"prompt": f"Capital of {c}?", "chosen": a, "rejected": "Rome."}
         for c, a in [("France", "Paris."), ("Spain", "Madrid."), ("Peru", "Lima."),
                      ("Chile", "Santiago.")]]
ADAPTER = AdapterConfig(lora_r=2, lora_alpha=4.0, lora_dropout=0.0)


def lora_model():
    model, _ = tiny_llama()
    return apply_method(model, ADAPTER)


def kinds(model) -> dict[str, int]:
    count = {"fused": 0, "peft": 0, "recast": 0}
    for m in model.modules():
        count["fused"] += type(m) is FusedLoraLinear
        count["peft"] += type(m) is LoraLinear
        count["recast"] += type(m) is RecastLinear
    return count


def test_apply_switches_layers_by_lever_and_precision():
    model = lora_model()
    callbacks, counts = layer.apply(model, bf16=False, levers=layer.Levers())
    found = kinds(model)
    assert found["fused"] == counts["fused_lora"] > 0 and found["peft"] == 0
    assert found["recast"] == 0 and callbacks == [], "recasting acts only under bf16"

    model = lora_model()
    callbacks, counts = layer.apply(model, bf16=True, levers=layer.Levers())
    assert kinds(model)["recast"] == counts["recast_frozen"] > 0
    assert [type(c) for c in callbacks] == [FrozenWeightCache]
    again, _ = layer.apply(model, bf16=True, levers=layer.Levers(hold_frozen_bf16=False))
    assert again == [] and kinds(model)["recast"] == counts["recast_frozen"]

    model = lora_model()
    callbacks, counts = layer.apply(model, bf16=True, levers=layer.PLAIN)
    assert callbacks == [] and set(counts.values()) == {0}
    assert kinds(model)["fused"] == kinds(model)["recast"] == 0 and kinds(model)["peft"] > 0


def test_describe_names_each_lever_and_precision():
    levers = layer.Levers(reference_once=False, label_only_logits=True)
    line = layer.describe("dpo", False, levers, {"fused_lora": 12})
    assert line.startswith("speed layer [dpo]: bf16 autocast off (fp32)")
    assert "fused lora on (12 layers)" in line and "reference once off" in line
    assert "recast frozen off" in line, "a bf16-only lever is off in fp32"
    assert "packing" not in line, "a lever the path does not have is not named"
    assert "recast frozen on" in layer.describe("sft", True, levers)


def test_every_factory_build_prints_its_levers(tmp_path, capsys):
    family.train_ipo(PAIRS, "tiny-llama", ADAPTER, TrainConfig(lr=1e-3, max_steps=1,
                     batch_size=2, bf16=False), str(tmp_path), seed=1, max_length=32)
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("speed layer")]
    assert lines == [lines[0]] and lines[0].startswith("speed layer [dpo]")
    assert "fused lora on" in lines[0] and "reference once off" in lines[0]


@pytest.mark.parametrize("max_steps, epochs, expected", [(2, 1.0, True), (1, 1.0, False),
                                                         (0, 1.0, True), (0, 0.5, False)])
def test_reference_once_only_when_the_run_reads_every_pair(tmp_path, max_steps, epochs,
                                                           expected):
    args = dpo.dpo_arguments(TrainConfig(max_steps=max_steps, num_epochs=epochs, batch_size=2),
                             0.1, str(tmp_path))
    assert dpo.reference_once(args, rows=4) is expected
    assert dpo.reference_once(args, rows=4, wanted=False) is False
    levers = dpo.dpo_levers(args, 4, lora_model(), layer.Levers(reference_once=False))
    assert levers.reference_once is False and args.precompute_ref_log_probs is False
    assert levers.completion_logits is True, "a plain causal LM gets the compact head"
    assert levers.packing is True, "and padding-free pairs"
    assert dpo.dpo_levers(args, 4, lora_model(), layer.Levers(packing=False)).packing is False


def dpo_losses(tmp_path, levers) -> tuple[list[float], bool]:
    torch.manual_seed(0)
    model, tok = tiny_llama()
    model = apply_method(model, ADAPTER)
    train = TrainConfig(lr=1e-2, max_steps=4, batch_size=2, bf16=False, warmup_ratio=0.0)
    from ftkit.data.preferences import dpo_dataset

    trainer = dpo.make_dpo_trainer(model, tok, dpo_dataset(PAIRS), train, 0.1, str(tmp_path),
                                   seed=3, max_length=32, levers=levers)
    trainer.train()
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    return losses, trainer.args.precompute_ref_log_probs


def test_dpo_levers_keep_the_losses_of_the_plain_path(tmp_path):
    """fp32 reference: the plain path (reference computed every step, padded pairs, every
    position through TRL's head, peft's LoRA) against every lever on (reference once,
    padding-free pairs, completion positions only, fused LoRA); 4 steps."""
    plain, once_plain = dpo_losses(tmp_path / "plain", layer.PLAIN.replace(
        reference_once=False, completion_logits=False, packing=False))
    fast, once_fast = dpo_losses(tmp_path / "fast", layer.Levers())
    assert not once_plain and once_fast
    assert len(plain) == len(fast) == 4
    assert fast == pytest.approx(plain, rel=1e-5, abs=1e-6)
    assert plain[-1] < plain[0], "the run learns: the comparison is not of four log 2s"


@pytest.mark.parametrize("packed", [False, True])
def test_completion_head_gives_trls_fused_values_and_gradients(packed):
    from trl.trainer.utils import add_fused_lm_head

    from ftkit.train.speed.completion_head import FIELDS, use_completion_head
    from ftkit.train.speed.packing import use_packed_attention

    torch.manual_seed(0)
    ids = torch.randint(3, 200, (3, 12))
    attention = torch.ones_like(ids)
    attention[2, 9:] = 0
    attention[1, 11:] = 0
    labels = ids.masked_fill(attention == 0, -100)
    labels[:, :5] = -100  # the prompt
    results = []
    for compact in (False, True):
        model, _ = tiny_llama()
        add_fused_lm_head(model, outputs=FIELDS)
        if compact:
            assert not packed or use_packed_attention(model)
            assert use_completion_head(model, FIELDS, packed)
            assert not use_completion_head(model, FIELDS, packed)
        shapes = []
        model.model.layers[0].register_forward_hook(
            lambda module, args, output: shapes.append(tuple(args[0].shape[:2])))
        out = model(input_ids=ids, attention_mask=attention, labels=labels, fused_lm_head=True)
        assert shapes == [(1, 12 + 11 + 9) if compact and packed else (3, 12)]
        out.log_probs.sum().backward()
        grad = model.get_output_embeddings().weight.grad.clone()
        results.append(({f: getattr(out, f) for f in FIELDS}, grad, out.label_mask))
    (full, grad_full, mask_full), (compact, grad_compact, mask_compact) = results
    assert torch.equal(mask_full, mask_compact) and mask_full.sum() == 7 + 6 + 4
    for field in FIELDS:
        if field == "is_top1":
            assert torch.equal(full[field], compact[field])
        else:
            torch.testing.assert_close(compact[field], full[field], rtol=1e-5, atol=1e-5)
    for values in (full, compact):
        assert (values["log_probs"][~mask_full] == 0).all()
    torch.testing.assert_close(grad_compact, grad_full, rtol=1e-4, atol=1e-6)


def test_fused_lora_on_recast_layers_with_a_bias_under_autocast():
    """Whisper's Linear layers have biases: the fused update writes into the recast layer's
    output in place, which must not be a view (a regression: it raised in notebook 16)."""
    import copy

    from peft import LoraConfig, get_peft_model
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 8))
    net.requires_grad_(False)
    plain = get_peft_model(net, LoraConfig(r=2, target_modules=["0", "2"],
                                           init_lora_weights=False))
    fast = copy.deepcopy(plain)
    _, counts = layer.apply(fast, bf16=True, levers=layer.Levers(hold_frozen_bf16=False))
    assert counts["fused_lora"] == 2 and counts["recast_frozen"] == 2
    x = torch.randn(2, 3, 8)
    for autocast in (False, True):  # fp32: the same numbers; bf16: runs, same up to rounding
        results = []
        for model in (plain, fast):
            model.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(x.clone().requires_grad_())
            out.float().pow(2).sum().backward()
            results.append((out.float(), [p.grad.clone() for p in model.parameters()
                                          if p.requires_grad]))
        (out_plain, g_plain), (out_fast, g_fast) = results
        tol = dict(rtol=3e-2, atol=3e-2) if autocast else dict(rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out_fast, out_plain, **tol)
        if not autocast:
            for a, b in zip(g_plain, g_fast):
                torch.testing.assert_close(b, a, **tol)
