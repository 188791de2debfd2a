"""Pruning: unstructured zeros keep shapes, structured pruning removes the channels that
matter least and still gives a plain checkpoint."""
import pytest
import torch
from transformers import AutoModelForCausalLM

from ftkit.compress import pruning
from ftkit.core.config import ConfigError
from ftkit.models.tiny import tiny_llama

TEXTS = ["where is my parcel, it was due on monday", "i want a refund for the broken mug",
         "can i change the delivery address of order 1234"]
IDS = torch.tensor([[1, 5, 9, 13, 2, 40, 7]])


@pytest.fixture
def model():
    m, tok = tiny_llama(seed=1)
    return m.eval(), tok


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, "0.3", None])
def test_a_sparsity_outside_zero_to_one_is_refused(bad, model):
    with pytest.raises(ConfigError, match=r"\[0, 1\)"):
        pruning.magnitude_prune(model[0], bad)


def test_magnitude_pruning_zeroes_that_share_and_keeps_the_shapes(model):
    m, _ = model
    before = {n: p.clone() for n, p in m.named_parameters()}
    pruned = pruning.magnitude_prune(m, 0.4)
    for block in pruning.mlps(pruned):
        for name in pruning.PROJECTIONS:
            w = getattr(block, name).weight
            assert abs((w == 0).float().mean().item() - 0.4) < 0.01
    assert pruning.mlp_parameters(pruned) == pruning.mlp_parameters(m)
    assert all(torch.equal(p, before[n]) for n, p in m.named_parameters()), "original kept"
    kept = pruning.mlps(pruned)[0].up_proj.weight
    orig = pruning.mlps(m)[0].up_proj.weight
    assert orig[kept == 0].abs().max() <= orig[kept != 0].abs().min(), "the smallest went"


def test_channels_that_write_nothing_score_zero_and_removing_them_changes_nothing(model, tmp_path):
    m, tok = model
    dead = [0, 5, 17, 30]
    with torch.no_grad():
        for block in pruning.mlps(m):
            block.down_proj.weight[:, dead] = 0.0
    scores = pruning.channel_importance(m, tok, TEXTS)
    assert all(s.shape == (128,) and torch.all(s[dead] == 0) and torch.all(s[[1, 2]] > 0)
               for s in scores)
    small = pruning.prune_mlp_channels(m, len(dead) / 128, scores)
    assert small.config.intermediate_size == 124
    assert pruning.mlp_parameters(small) == pruning.mlp_parameters(m) * 124 // 128
    with torch.no_grad():
        torch.testing.assert_close(small(IDS).logits, m(IDS).logits, atol=1e-5, rtol=1e-5)
    small.save_pretrained(tmp_path)  # a plain checkpoint: the config says the new width
    with torch.no_grad():
        again = AutoModelForCausalLM.from_pretrained(tmp_path)(IDS).logits
    torch.testing.assert_close(again, small(IDS).logits)


def test_a_sweep_compares_both_methods_at_the_same_parameter_count(model):
    m, tok = model
    scores = pruning.channel_importance(m, tok, TEXTS)
    table, variants = pruning.sparsity_sweep(m, tok, TEXTS, [0.25, 0.5], scores, rounds=1,
                                             score=lambda model: 0.5)
    assert list(table.index) == ["dense", "unstructured 25%", "structured 25%",
                                 "unstructured 50%", "structured 50%"]
    for s in ("25%", "50%"):
        u, st = table.loc[f"unstructured {s}"], table.loc[f"structured {s}"]
        assert abs(u.removed - st.removed) <= 0.01 * st.removed
        assert u.parameters == table.loc["dense", "parameters"] > st.parameters
        assert st.size_mb < u.size_mb
    assert (table.task_score == 0.5).all() and table.forward_ms.gt(0).all()
    assert table.loc["dense", "speedup"] == 1.0 and set(variants) == set(table.index)


def test_a_silent_attention_group_scores_zero_and_pruning_it_changes_nothing(model, tmp_path):
    m, tok = model  # 4 query heads sharing 2 key/value heads: groups of 2 heads of dim 16
    with torch.no_grad():
        for block in pruning.attentions(m):
            block.o_proj.weight[:, 32:64] = 0.0  # group 1's heads write nothing
    scores = pruning.group_importance(m, tok, TEXTS)
    assert all(s.shape == (2,) and s[1] == 0 and s[0] > 0 for s in scores)
    small = pruning.prune_attention_groups(m, 1, scores)
    assert (small.config.num_attention_heads, small.config.num_key_value_heads) == (2, 1)
    with torch.no_grad():
        torch.testing.assert_close(small(IDS).logits, m(IDS).logits, atol=1e-5, rtol=1e-5)
    small.save_pretrained(tmp_path)
    with torch.no_grad():
        again = AutoModelForCausalLM.from_pretrained(tmp_path)(IDS).logits
    torch.testing.assert_close(again, small(IDS).logits)
    with pytest.raises(ConfigError, match="prune from 0 to 1 of the 2"):
        pruning.prune_attention_groups(m, 2, scores)
