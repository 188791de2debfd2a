"""ftkit.train.dora: the reference DoRA forward matches peft, effective weights, ΔM/ΔD analysis."""
import copy
import math

import matplotlib

matplotlib.use("Agg")

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from torch import nn  # noqa: E402

from ftkit import models  # noqa: E402
from ftkit.core.config import ConfigError  # noqa: E402
from ftkit.train import dora  # noqa: E402

TARGETS = ["q_proj", "v_proj"]


def randomize(peft_model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-zero lora_B and a perturbed magnitude, so DoRA is not the base weight."""
    torch.manual_seed(seed)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            nn.init.normal_(p, std=0.3)
        elif "lora_magnitude_vector" in name:
            with torch.no_grad():
                p.mul_(1 + 0.5 * torch.rand_like(p))
    return peft_model.eval()


def lora_layers(peft_model: nn.Module) -> list[nn.Module]:
    return [m for n, m in peft_model.named_modules() if n.endswith(("q_proj", "v_proj"))
            and hasattr(m, "lora_A")]


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(12, 7, bias=True)

    def forward(self, x):
        return self.proj(x)


@pytest.fixture(scope="module")
def tiny_dora():
    torch.manual_seed(0)
    model, _ = models.load("tiny-llama")
    config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.1, target_modules=TARGETS,
                        use_dora=True)
    return randomize(get_peft_model(model, config))


def test_reference_matches_peft_on_a_standalone_linear():
    torch.manual_seed(1)
    config = LoraConfig(r=3, lora_alpha=5, target_modules=["proj"], use_dora=True)
    layer = randomize(get_peft_model(Tiny(), config)).base_model.model.proj
    x = torch.randn(5, 12)
    with torch.no_grad():
        expected = layer(x)
        assert not torch.allclose(expected, layer.get_base_layer()(x), atol=1e-3)
        assert torch.allclose(dora.reference_output(layer, x), expected, atol=1e-5)
        parts = dict(weight=layer.get_base_layer().weight, bias=layer.get_base_layer().bias,
                     lora_A=layer.lora_A["default"].weight, lora_B=layer.lora_B["default"].weight,
                     magnitude=layer.lora_magnitude_vector["default"].weight,
                     scaling=layer.scaling["default"])
        assert layer.scaling["default"] == pytest.approx(5 / 3)
        assert torch.allclose(dora.dora_forward(x, **parts), expected, atol=1e-5)


def test_reference_gradients_match_peft():
    torch.manual_seed(2)
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["proj"], use_dora=True)
    layer = randomize(get_peft_model(Tiny(), config)).base_model.model.proj
    x = torch.randn(4, 12)
    params = [layer.lora_A["default"].weight, layer.lora_B["default"].weight,
              layer.lora_magnitude_vector["default"].weight]
    ours = torch.autograd.grad(dora.reference_output(layer, x).pow(2).sum(), params)
    theirs = torch.autograd.grad(layer(x).pow(2).sum(), params)
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, atol=1e-5)


def test_reference_matches_peft_on_tiny_llama(tiny_dora):
    torch.manual_seed(3)
    layers = lora_layers(tiny_dora)
    assert len(layers) == 4  # 2 layers × (q_proj, v_proj)
    for layer in layers:
        x = torch.randn(2, 5, layer.get_base_layer().in_features)
        with torch.no_grad():
            expected = layer(x)
            assert not torch.allclose(expected, layer.get_base_layer()(x), atol=1e-3)
            assert torch.allclose(dora.reference_output(layer, x), expected, atol=1e-5)


def test_reference_output_refuses_a_plain_lora_layer():
    config = LoraConfig(r=2, lora_alpha=4, target_modules=["proj"])
    layer = get_peft_model(Tiny(), config).base_model.model.proj
    with pytest.raises(ConfigError, match="use_dora=True"):
        dora.reference_output(layer, torch.randn(1, 12))


@pytest.mark.parametrize("use_dora", [False, True])
def test_linear_weights_equal_merged_weights_and_leave_model_alone(use_dora):
    torch.manual_seed(4)
    model, _ = models.load("tiny-llama")
    base = dora.linear_weights(model)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=TARGETS, use_dora=use_dora)
    peft_model = randomize(get_peft_model(model, config))
    before = {k: v.clone() for k, v in peft_model.state_dict().items()}
    tuned = dora.linear_weights(peft_model)
    merged = dora.linear_weights(copy.deepcopy(peft_model).merge_and_unload())
    assert sorted(tuned) == sorted(merged) == sorted(base)
    assert "model.layers.1.self_attn.q_proj" in tuned
    for key in tuned:
        assert tuned[key].dtype == torch.float32 and tuned[key].device.type == "cpu"
        assert torch.allclose(tuned[key], merged[key], atol=1e-5), key
        assert not torch.allclose(tuned[key], base[key], atol=1e-4), key
    after = peft_model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not any(m.merged for m in lora_layers(peft_model))


def test_linear_weights_refuses_unknown_modules():
    model, _ = models.load("tiny-llama")
    with pytest.raises(ConfigError, match="qproj"):
        dora.linear_weights(model, modules=("qproj",))


def test_magnitude_direction_separates_scaling_from_rotation():
    torch.manual_seed(5)
    w0 = torch.randn(6, 8)
    assert dora.magnitude_direction(w0, w0.clone()) == pytest.approx((0.0, 0.0), abs=1e-6)

    scaled = w0 * torch.linspace(0.5, 2.0, 6).unsqueeze(1)  # same directions, new lengths
    delta_m, delta_d = dora.magnitude_direction(w0, scaled)
    assert delta_m > 0.1 and delta_d == pytest.approx(0.0, abs=1e-6)
    expected_m = (w0.norm(dim=1) * (torch.linspace(0.5, 2.0, 6) - 1).abs()).mean()
    assert delta_m == pytest.approx(float(expected_m), rel=1e-5)

    rotation, _ = torch.linalg.qr(torch.randn(8, 8))  # orthogonal: row norms are kept
    delta_m, delta_d = dora.magnitude_direction(w0, w0 @ rotation)
    assert delta_m == pytest.approx(0.0, abs=1e-5) and delta_d > 0.1

    flipped = dora.magnitude_direction(w0, -w0)  # opposite rows: cos = -1, so ΔD = 2
    assert flipped == pytest.approx((0.0, 2.0), abs=1e-5)


def test_decomposition_table_rows_columns_correlation_and_plot(tiny_dora):
    model, _ = models.load("tiny-llama")
    base = dora.linear_weights(model)
    torch.manual_seed(6)
    full = {k: v + 0.05 * torch.randn_like(v) for k, v in base.items()}
    table = pd.concat([dora.decomposition_table(base, dora.linear_weights(tiny_dora), "dora"),
                       dora.decomposition_table(base, full, "full")], ignore_index=True)
    assert list(table.columns) == dora.COLUMNS
    dora_rows = table[table["method"] == "dora"]
    assert sorted(zip(dora_rows["layer"], dora_rows["module"])) == [
        (0, "q_proj"), (0, "v_proj"), (1, "q_proj"), (1, "v_proj")]
    assert table["layer"].dtype.kind == "i" and (table[["delta_m", "delta_d"]] > 0).all().all()

    corr = dora.correlation(table)
    assert set(corr) == {"dora", "full"} and all(-1 <= r <= 1 for r in corr.values())
    fig = dora.plot_decomposition(table)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert fig.axes[0].get_title().startswith("dora: r = ")
    assert fig.axes[1].get_title() == f"full: r = {corr['full']:+.2f}"


def test_correlation_sign_and_degenerate_cases():
    rows = [{"method": "up", "layer": i, "module": "q_proj", "delta_m": i, "delta_d": 2 * i}
            for i in range(4)]
    rows += [{"method": "down", "layer": i, "module": "q_proj", "delta_m": -i, "delta_d": i}
             for i in range(4)]
    rows += [{"method": "one", "layer": 0, "module": "q_proj", "delta_m": 1.0, "delta_d": 1.0}]
    corr = dora.correlation(pd.DataFrame(rows, columns=dora.COLUMNS))
    assert corr["up"] == pytest.approx(1.0) and corr["down"] == pytest.approx(-1.0)
    assert math.isnan(corr["one"])
    with pytest.raises(ConfigError, match="delta_d"):
        dora.correlation(pd.DataFrame({"method": ["a"], "delta_m": [1.0]}))


def test_bad_inputs_name_the_key():
    key = "model.layers.0.self_attn.q_proj"
    base = {key: torch.zeros(4, 3), "model.layers.0.self_attn.v_proj": torch.zeros(2, 3)}
    with pytest.raises(ConfigError, match=r"model\.layers\.0\.self_attn\.v_proj.*tuned_weights"):
        dora.decomposition_table(base, {key: torch.ones(4, 3)}, "lora")
    bad = {key: torch.ones(4, 5), "model.layers.0.self_attn.v_proj": torch.ones(2, 3)}
    with pytest.raises(ConfigError, match=r"q_proj.*\(4, 3\).*\(4, 5\)"):
        dora.decomposition_table(base, bad, "lora")
    with pytest.raises(ConfigError, match="no layer index"):
        dora.decomposition_table({"proj": torch.ones(2, 2)}, {"proj": torch.ones(2, 2)}, "lora")
    with pytest.raises(ConfigError, match="method"):
        dora.decomposition_table(base, base, "")


def _fast_and_peft(dropout: float, bias: bool = True, seed: int = 4):
    torch.manual_seed(seed)
    config = LoraConfig(r=3, lora_alpha=6, target_modules=["proj"], use_dora=True,
                        lora_dropout=dropout)
    model = Tiny()
    if not bias:
        model.proj = nn.Linear(12, 7, bias=False)
    peft_model = randomize(get_peft_model(model, config))
    fast_model = copy.deepcopy(peft_model)
    assert dora.use_fast_dora(fast_model) == 1
    return peft_model, fast_model


@pytest.mark.parametrize("bias", [True, False])
def test_fast_dora_matches_peft_forward_and_gradients(bias):
    peft_model, fast_model = _fast_and_peft(0.0, bias)
    x = torch.randn(6, 12)
    grads, outputs = [], []
    for model in (peft_model, fast_model):
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        out = model(x)
        outputs.append(out.detach())
        grads.append(torch.autograd.grad(out.pow(2).sum(), params))
    assert not torch.allclose(outputs[0], peft_model.get_base_model().proj.base_layer(x),
                              atol=1e-3)
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_fast_dora_under_bf16_autocast_stays_close_to_peft():
    peft_model, fast_model = _fast_and_peft(0.0)
    x = torch.randn(6, 12)
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        ours, theirs = fast_model(x).float(), peft_model(x).float()
    assert torch.allclose(ours, theirs, atol=0.05, rtol=0.02)


def test_fast_dora_with_dropout_in_training_matches_peft():
    peft_model, fast_model = _fast_and_peft(0.3)
    x = torch.randn(6, 12)
    outs, grads = [], []
    for model in (peft_model, fast_model):
        model.train()
        torch.manual_seed(7)  # the same dropout mask
        out = model(x)
        outs.append(out.detach())
        grads.append(torch.autograd.grad(out.pow(2).sum(),
                                         [p for p in model.parameters() if p.requires_grad]))
    assert torch.allclose(outs[0], outs[1], atol=1e-5)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)
    with torch.no_grad():  # eval: dropout off, the fast path
        assert torch.allclose(peft_model.eval()(x), fast_model.eval()(x), atol=1e-5)


def test_fast_row_norm_equals_the_materialised_norm():
    torch.manual_seed(6)
    w, a, b = torch.randn(9, 7), torch.randn(2, 7), torch.randn(9, 2)
    expected = torch.linalg.norm(w + 0.7 * (b @ a), dim=1)
    assert torch.allclose(dora.fast_row_norm(w, a, b, 0.7), expected, atol=1e-5)


def test_fast_dora_follows_an_in_place_weight_change_and_merges_like_peft():
    peft_model, fast_model = _fast_and_peft(0.0)
    x = torch.randn(3, 12)
    for model in (peft_model, fast_model):
        model.eval()
        with torch.no_grad():
            model(x)  # fills the cache
            model.get_base_model().proj.base_layer.weight.mul_(1.5)
    with torch.no_grad():
        assert torch.allclose(fast_model(x), peft_model(x), atol=1e-5)
        merged = [m.merge_and_unload()(x) for m in (peft_model, fast_model)]
    assert torch.allclose(merged[0], merged[1], atol=1e-5)


def test_apply_method_switches_dora_to_the_fast_forward():
    from ftkit.core.config import AdapterConfig
    from ftkit.train.adapters import apply_method

    model, _ = models.load("tiny-llama")
    peft_model = apply_method(model, AdapterConfig(peft_method="dora", lora_r=2))
    forwards = [v.forward for m in peft_model.modules()
                for v in getattr(m, "lora_variant", {}).values()]
    assert forwards and all(f is dora.fast_dora_forward for f in forwards)
    assert dora.use_fast_dora(Tiny()) == 0
