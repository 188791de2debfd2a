"""Half fine-tuning (§6.4): block parts, half per part, frozen half untouched by real training."""
import random

import pytest
import torch
from torch import nn

from ftkit import models
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data import formatting
from ftkit.train import adapters, half, sft

PROMPTS = ["Capital of France?", "Red planet?", "Days in a week?", "Largest ocean?",
           "What do bees make?", "Colour of the sky?", "Author of Hamlet?", "Water freezes at?"]
ANSWERS = ["Paris.", "Mars.", "Seven.", "Pacific.", "Honey.", "Blue.", "Shakespeare.", "0 C."]


def _names(model):
    """Parameter object id -> qualified name (to read choices back as names)."""
    return {id(p): n for n, p in model.named_parameters()}


def _chosen_names(model, chosen):
    names = _names(model)
    return sorted(names[id(p)] for p in chosen)


def test_tiny_llama_blocks_split_into_attention_mlp_and_norms():
    model, _ = models.load("tiny-llama")
    groups = half.block_groups(model)
    names = _names(model)
    assert len(groups) == 2
    for i, parts in enumerate(groups):
        assert {k: len(v) for k, v in parts.items()} == {"attention": 4, "mlp": 3, "norm": 2}
        short = {k: sorted(names[id(p)].split(f"layers.{i}.", 1)[1] for p in v)
                 for k, v in parts.items()}
        assert short["attention"] == [f"self_attn.{x}_proj.weight" for x in "koqv"]
        assert short["mlp"] == ["mlp.down_proj.weight", "mlp.gate_proj.weight",
                                "mlp.up_proj.weight"]
        # post_attention_layernorm contains "attention" but is a norm
        assert short["norm"] == ["input_layernorm.weight", "post_attention_layernorm.weight"]


def test_choose_half_takes_half_of_every_part():
    model, _ = models.load("tiny-llama")
    groups = half.block_groups(model)
    chosen = {id(p) for p in half.choose_half(groups, random.Random(0))}
    counts = [{k: sum(id(p) in chosen for p in v) for k, v in parts.items()} for parts in groups]
    # odd-sized mlp parts alternate between rounding up and down across blocks
    assert counts == [{"attention": 2, "mlp": 2, "norm": 1}, {"attention": 2, "mlp": 1, "norm": 1}]
    assert len(chosen) == 9


def test_choose_half_differs_between_seeds_and_rounds():
    model, _ = models.load("tiny-llama")
    groups = half.block_groups(model)
    draws = {seed: _chosen_names(model, half.choose_half(groups, random.Random(seed)))
             for seed in range(4)}
    assert draws[0] == _chosen_names(model, half.choose_half(groups, random.Random(0)))
    assert len({tuple(d) for d in draws.values()}) > 1
    rng = random.Random(0)
    rounds = [tuple(_chosen_names(model, half.choose_half(groups, rng))) for _ in range(4)]
    assert len(set(rounds)) > 1


def test_prepare_makes_exactly_the_block_weights_trainable():
    model, _ = models.load("tiny-llama")
    model = adapters.apply_method(model, AdapterConfig(peft_method="half"))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters() if ".layers." in n}
    assert len(trainable) == 18


def test_new_round_freezes_the_other_half_and_records_the_share():
    model, _ = models.load("tiny-llama")
    model = adapters.apply_method(model, AdapterConfig(peft_method="half"))
    cb = half.HalfFineTuning(model, round_steps=0, seed=3)
    chosen = cb.new_round(step=0)
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert trainable == {id(p) for p in chosen}
    entry = cb.history[-1]
    total = sum(p.numel() for p in model.parameters())
    assert entry["step"] == 0 and entry["trainable"] == sum(p.numel() for p in chosen)
    assert entry["share"] == pytest.approx(entry["trainable"] / total)
    assert 0 < entry["share"] < 1


def _train(tmp_path, monkeypatch, round_steps, max_steps, seed=0):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    model, tok = models.load("tiny-llama")
    pretrained = {n: p.detach().clone() for n, p in model.named_parameters()}
    cfg = AdapterConfig(peft_method="half", half_round_steps=round_steps)
    model = adapters.apply_method(model, cfg)
    extra = adapters.callbacks(model, cfg, seed)
    assert len(extra) == 1 and isinstance(extra[0], half.HalfFineTuning)
    assert extra[0].round_steps == round_steps
    ds = formatting.pairs_dataset(tok, PROMPTS, ANSWERS, max_length=32)
    train = TrainConfig(max_steps=max_steps, batch_size=2, eval_steps=100, lr=1e-2,
                        warmup_ratio=0.0, lr_scheduler="constant", bf16=False)
    trainer = sft.make_trainer(model, tok, ds, ds.select(range(2)), train, str(tmp_path),
                               callbacks=extra)
    trainer.train()
    return model, pretrained, extra[0]


def test_one_round_trains_the_chosen_half_and_leaves_the_rest_bit_identical(
        tmp_path, monkeypatch):
    model, pretrained, cb = _train(tmp_path, monkeypatch, round_steps=0, max_steps=4)
    assert len(cb.history) == 1 and cb.history[0]["step"] == 0
    # the callback's draw is reproducible: the same seed gives the same half
    names = _names(model)
    replay = half.choose_half(half.block_groups(model), random.Random(0))
    chosen = {names[id(p)] for p in replay}
    current = dict(model.named_parameters())
    assert chosen == {n for n, p in current.items() if p.requires_grad}
    block = [n for n in current if ".layers." in n]
    assert len(chosen) == 9 and chosen < set(block)
    for n in block:
        same = torch.equal(current[n].detach(), pretrained[n])
        assert same != (n in chosen), n
    for n in ("model.embed_tokens.weight", "model.norm.weight"):
        assert torch.equal(current[n].detach(), pretrained[n]), n


def test_rounds_draw_new_halves(tmp_path, monkeypatch):
    model, pretrained, cb = _train(tmp_path, monkeypatch, round_steps=2, max_steps=4)
    assert [r["step"] for r in cb.history] == [0, 2]
    rng = random.Random(0)
    groups = half.block_groups(model)
    rounds = [set(_chosen_names(model, half.choose_half(groups, rng))) for _ in cb.history]
    assert rounds[0] != rounds[1]
    current = dict(model.named_parameters())
    changed = {n for n, p in current.items() if not torch.equal(p.detach(), pretrained[n])}
    # what trained in either round moved; nothing outside them (nor outside the blocks) did
    assert changed == rounds[0] | rounds[1]
    for r in cb.history:
        assert 0 < r["share"] < 1


def test_round_steps_must_not_be_negative():
    model, _ = models.load("tiny-llama")
    with pytest.raises(ConfigError, match="round_steps = -1"):
        half.HalfFineTuning(model, round_steps=-1)


def test_a_model_without_repeated_blocks_is_refused():
    with pytest.raises(ConfigError, match="no list of repeated blocks"):
        half.HalfFineTuning(nn.Sequential(nn.Linear(4, 4)))
    with pytest.raises(ConfigError, match="no list of repeated blocks"):
        adapters.apply_method(nn.Sequential(nn.Linear(4, 4)), AdapterConfig(peft_method="half"))


class _Stack(nn.Module):
    def __init__(self, blocks):
        super().__init__()
        self.layers = nn.ModuleList(blocks)


def test_a_block_parameter_of_unknown_kind_is_refused():
    model = _Stack([nn.ModuleDict({"conv": nn.Conv1d(2, 2, 1)}) for _ in range(2)])
    with pytest.raises(ConfigError, match="does not know how to split"):
        half.block_groups(model)


def test_odd_parts_alternate_across_blocks_when_a_block_has_two_odd_parts():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    model = Qwen2ForCausalLM(Qwen2Config(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=32))
    groups = half.block_groups(model)
    assert [{k: len(v) for k, v in parts.items()} for parts in groups] == [
        {"attention": 7, "mlp": 3, "norm": 2}] * 2
    chosen = {id(p) for p in half.choose_half(groups, random.Random(0))}
    for part in ("attention", "mlp", "norm"):
        total = sum(len(parts[part]) for parts in groups)
        drawn = sum(id(p) in chosen for parts in groups for p in parts[part])
        assert drawn in (total // 2, (total + 1) // 2), (part, drawn, total)
