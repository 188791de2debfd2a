"""Adapter merging: every combination on real tiny LoRAs, peft's semantics, refusals, save/load."""
import pytest
import torch
from peft import IA3Config, LoraConfig, PeftModel, get_peft_model

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.train import merging

TARGETS = ["q_proj", "v_proj"]
IDS = torch.tensor([[1, 5, 9, 14, 3, 7]])


def lora(r: int = 4, **kwargs) -> LoraConfig:
    return LoraConfig(r=r, lora_alpha=2 * r, target_modules=TARGETS, task_type="CAUSAL_LM",
                      **kwargs)


def two_adapters(cfg_a=None, cfg_b=None):
    """The tiny Llama with adapters "math" (``cfg_a``) and "code" (``cfg_b``), random lora_B."""
    torch.manual_seed(0)
    model, _ = models.load("tiny-llama")
    peft_model = get_peft_model(model, cfg_a or lora(), adapter_name="math")
    peft_model.add_adapter("code", cfg_b or lora())
    for n, p in peft_model.named_parameters():
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.5)
    return peft_model.eval()


def logits(peft_model, adapter: str | None = None) -> torch.Tensor:
    with torch.no_grad():
        if adapter is None:
            with peft_model.disable_adapter():
                return peft_model(input_ids=IDS).logits
        peft_model.set_adapter(adapter)
        return peft_model(input_ids=IDS).logits


def q_proj(peft_model):
    return peft_model.base_model.model.model.layers[0].self_attn.q_proj


@pytest.fixture(scope="module")
def pair():
    return two_adapters()


@pytest.mark.parametrize("combination", list(merging.COMBINATIONS))
def test_every_combination_makes_a_new_active_adapter(pair, combination):
    density = 0.5 if combination in merging.NEEDS_DENSITY else None
    out = merging.merge(pair, ["math", "code"], [0.6, 0.4], combination, density=density)
    assert out["name"] == f"{combination}_math_code" and pair.active_adapter == out["name"]
    assert out["seconds"] >= 0 and out["weights"] == [0.6, 0.4]
    assert out["rank"] == (8 if combination == "cat" else 4)
    merged = logits(pair, out["name"])
    assert not torch.allclose(merged, logits(pair), atol=1e-4)


def test_cat_is_the_exact_weighted_sum_of_updates_and_svd_matches_it_at_full_rank(pair):
    cat = merging.merge(pair, ["math", "code"], [0.7, -0.3], "cat", name="cat73")
    svd = merging.merge(pair, ["math", "code"], [0.7, -0.3], "svd", name="svd73", svd_rank=8)
    q = q_proj(pair)
    expected = 0.7 * q.get_delta_weight("math") - 0.3 * q.get_delta_weight("code")
    assert cat["rank"] == 8 and svd["rank"] == 8
    assert torch.allclose(q.get_delta_weight("cat73"), expected, atol=1e-5)
    assert torch.allclose(q.get_delta_weight("svd73"), expected, atol=1e-4)


def test_linear_weights_a_and_b_by_sqrt_of_weight_times_scaling(pair):
    merging.merge(pair, ["math", "code"], [0.5, 0.5], "linear", name="lin55")
    q = q_proj(pair)
    s = q.scaling["math"]  # both adapters have alpha / r = 2
    wa, wb = (0.5 * s) ** 0.5, (0.5 * s) ** 0.5
    B = wa * q.lora_B["math"].weight + wb * q.lora_B["code"].weight
    A = wa * q.lora_A["math"].weight + wb * q.lora_A["code"].weight
    assert q.scaling["lin55"] == 1.0
    assert torch.allclose(q.get_delta_weight("lin55"), B @ A, atol=1e-5)
    # the cross terms: not the weighted sum of the two updates
    plain_sum = 0.5 * q.get_delta_weight("math") + 0.5 * q.get_delta_weight("code")
    assert not torch.allclose(q.get_delta_weight("lin55"), plain_sum, atol=1e-3)


def test_linear_with_weights_one_zero_reproduces_the_first_adapter(pair):
    merging.merge(pair, ["math", "code"], [1.0, 0.0], "linear", name="lin10")
    assert torch.allclose(logits(pair, "lin10"), logits(pair, "math"), atol=1e-5)
    assert not torch.allclose(logits(pair, "math"), logits(pair, "code"), atol=1e-3)


def test_one_adapter_is_allowed_with_linear_only(pair):
    out = merging.merge(pair, ["code"], [2.0], "linear", name="code_twice")
    q = q_proj(pair)
    assert out["rank"] == 4
    expected = 2 * q.get_delta_weight("code")
    assert torch.allclose(q.get_delta_weight("code_twice"), expected, atol=1e-5)


def _ia3_model():
    model, _ = models.load("tiny-llama")
    cfg = IA3Config(target_modules=["k_proj", "v_proj", "down_proj"],
                    feedforward_modules=["down_proj"], task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, cfg, adapter_name="math")
    peft_model.add_adapter("code", cfg)
    return peft_model


REFUSALS = [
    # (id, adapter configs or a builder, merge kwargs, word in the message)
    ("dora", dict(cfg_a=lora(use_dora=True)), {}, "DoRA"),
    ("dora_second", dict(cfg_b=lora(use_dora=True)), {}, "magnitude"),
    ("rslora", dict(cfg_a=lora(use_rslora=True)), {}, "rsLoRA"),
    ("rslora_second", dict(cfg_b=lora(use_rslora=True)), {}, "sqrt(r)"),
    ("lora_bias", dict(cfg_b=lora(lora_bias=True)), {}, "bias"),
    ("ia3", "ia3", {}, "IA3"),
    ("unknown_name", {}, dict(adapters=["math", "poetry"]), "['poetry']"),
    ("duplicate_name", {}, dict(adapters=["math", "math"]), "twice"),
    ("one_adapter_ties", {}, dict(adapters=["math"], weights=[1.0], combination="ties",
                                  density=0.5), "at least 2"),
    ("weights_length", {}, dict(weights=[1.0]), "one weight per adapter"),
    ("weights_nan", {}, dict(weights=[1.0, float("nan")]), "finite"),
    ("unknown_combination", {}, dict(combination="average"), "dare_ties"),
    ("ties_no_density", {}, dict(combination="ties"), "density"),
    ("density_zero", {}, dict(combination="dare_linear", density=0.0), "(0, 1]"),
    ("density_too_big", {}, dict(combination="magnitude_prune", density=1.5), "(0, 1]"),
    ("density_unused", {}, dict(combination="cat", density=0.5), "no effect"),
    ("svd_rank_unused", {}, dict(combination="cat", svd_rank=4), "no effect"),
    ("svd_rank_too_big", {}, dict(combination="svd", svd_rank=64), "[1, 32]"),
    ("unequal_ranks", dict(cfg_b=lora(r=2)), dict(combination="linear"), "equal ranks"),
    ("unequal_ranks_ties", dict(cfg_b=lora(r=2)), dict(combination="ties", density=0.5),
     "{'math': 4, 'code': 2}"),
    ("mixed_target_kinds", dict(cfg_b=LoraConfig(r=4, target_modules=r".*\.q_proj",
                                                 task_type="CAUSAL_LM")), {}, "target_modules"),
    ("name_taken", {}, dict(name="code"), "already"),
]


@pytest.mark.parametrize("build, kwargs, word", [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_bad_merges_are_refused_before_any_compute(build, kwargs, word):
    peft_model = _ia3_model() if build == "ia3" else two_adapters(**build)
    before = set(peft_model.peft_config)
    call = dict(adapters=["math", "code"], weights=[0.5, 0.5], combination="linear") | kwargs
    with pytest.raises(ConfigError) as err:
        merging.merge(peft_model, **call)
    assert word in str(err.value)
    assert set(peft_model.peft_config) == before


def test_peft_alone_botches_rslora_and_dora_merges():
    """Why the guards exist (peft 0.21): if this starts failing, peft fixed it; relax them."""
    rs = two_adapters(cfg_a=lora(use_rslora=True))
    rs.add_weighted_adapter(["math", "code"], [1.0, 0.0], "m", combination_type="linear")
    q = q_proj(rs)
    ratio = q.get_delta_weight("m").norm() / q.get_delta_weight("math").norm()
    assert ratio == pytest.approx(4 ** 0.5, rel=1e-4)  # sqrt(r) too large
    dora = two_adapters(cfg_a=lora(use_dora=True))
    for layer in (q_proj(dora), dora.base_model.model.model.layers[0].self_attn.v_proj):
        layer.lora_magnitude_vector["math"].weight.data.mul_(1.5)  # as training moves it
    dora.add_weighted_adapter(["math", "code"], [1.0, 0.0], "m", combination_type="linear")
    assert not torch.allclose(logits(dora, "m"), logits(dora, "math"), atol=1e-3)


def test_unequal_ranks_are_fine_for_cat_and_svd():
    peft_model = two_adapters(cfg_b=lora(r=2))
    assert merging.merge(peft_model, ["math", "code"], [1, 1], "cat")["rank"] == 6
    assert merging.merge(peft_model, ["math", "code"], [1, 1], "svd")["rank"] == 4


def test_a_merged_adapter_saves_and_loads_with_plain_peft(tmp_path):
    peft_model = two_adapters()
    name = merging.merge(peft_model, ["math", "code"], [0.7, 0.3], "cat", name="mix")["name"]
    expected = logits(peft_model, name)
    peft_model.save_pretrained(tmp_path, selected_adapters=[name])
    fresh, _ = models.load("tiny-llama")
    loaded = PeftModel.from_pretrained(fresh, tmp_path / name).eval()
    assert loaded.peft_config["default"].r == 8
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=IDS).logits, expected, atol=1e-5)


def test_mix_grid_rows_are_merge_arguments(pair):
    rows = merging.mix_grid(["math", "code"], ["linear", "ties"], [[1, 0], [0.5, 0.5]])
    assert len(rows) == 4
    assert rows[0] == {"combination": "linear", "weights": [1, 0], "density": None}
    assert rows[3] == {"combination": "ties", "weights": [0.5, 0.5], "density": 0.5}
    out = merging.merge(pair, ["math", "code"], name="grid_ties", **rows[3])
    assert out["combination"] == "ties"
    with pytest.raises(ConfigError, match="weight per adapter"):
        merging.mix_grid(["math", "code"], ["cat"], [[1.0]])
    with pytest.raises(ConfigError, match="unknown"):
        merging.mix_grid(["math", "code"], ["mean"], [[1.0, 1.0]])
