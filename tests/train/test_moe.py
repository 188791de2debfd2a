"""Sparse upcycling into Mixtral (ftkit.train.moe), on the tiny Llama."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.train import moe as M


def test_an_upcycled_model_computes_what_the_dense_one_does():
    dense, tok = models.load("tiny-llama")
    moe = M.upcycle(dense, n_experts=4, top_k=2, seed=0)
    ids = tok(["a short text to compare", "another one"], return_tensors="pt", padding=True)
    with torch.no_grad():
        a = dense(**ids).logits
        b = moe(**ids).logits
    assert torch.allclose(a, b, atol=1e-5)
    counts = M.parameter_counts(moe)
    dense_n = sum(p.numel() for p in dense.parameters())
    mlp = sum(p.numel() for n, p in dense.named_parameters() if ".mlp." in n)
    routers = sum(p.numel() for n, p in moe.named_parameters() if ".mlp.gate." in n)
    assert counts["active_params"] == dense_n + routers + mlp  # two experts' MLPs per token
    assert counts["total_params"] == dense_n + routers + 3 * mlp  # four copies of each MLP


def test_the_saved_moe_loads_with_plain_auto_classes(tmp_path):
    dense, tok = models.load("tiny-llama")
    moe = M.upcycle(dense, n_experts=3, top_k=1)
    moe.save_pretrained(tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    again = AutoModelForCausalLM.from_pretrained(tmp_path)
    ids = tok("hello there", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert torch.allclose(again(ids).logits, moe(ids).logits, atol=1e-6)
    assert type(again).__name__ == "MixtralForCausalLM"


def test_expert_load_counts_every_routed_slot_and_imbalance_reads_it():
    dense, tok = models.load("tiny-llama")
    moe = M.upcycle(dense, n_experts=4, top_k=2, router_std=1.0)
    load = M.expert_load(moe, tok, ["some text", "a little more text here", "x"], batch_size=2)
    assert load.shape == (moe.config.num_hidden_layers, 4)
    assert np.allclose(load.sum(1), 1.0)
    assert M.imbalance(np.full((2, 4), 0.25)) == pytest.approx(1.0)
    assert M.imbalance(np.array([[0.5, 0.5, 0.0, 0.0]])) == pytest.approx(2.0)


def test_trainable_freezes_all_but_the_chosen_parts():
    moe = M.upcycle(models.load_model("tiny-llama"), n_experts=2, top_k=1)
    routers = M.trainable(moe, "router")
    assert routers == sum(p.numel() for n, p in moe.named_parameters() if ".mlp.gate." in n)
    assert M.trainable(moe, "mlp") > routers
    assert M.trainable(moe, "all") == sum(p.numel() for p in moe.parameters())
    with pytest.raises(ConfigError, match="train must be"):
        M.trainable(moe, "experts")
    with pytest.raises(ConfigError, match="nothing to train: LlamaForCausalLM has no router"):
        M.trainable(models.load_model("tiny-llama"), "router")


def test_upcycling_refuses_a_top_k_above_the_experts():
    with pytest.raises(ConfigError, match="top_k = 5: must be between 1 and n_experts = 4"):
        M.upcycle(models.load_model("tiny-llama"), n_experts=4, top_k=5)
    with pytest.raises(ConfigError, match="Llama-family"):
        M.moe_config(models.load_model("tiny-bert").config, 4, 2, 0.0)


def test_training_moves_experts_apart_and_the_model_still_generates(tmp_path):
    from ftkit.core.config import TrainConfig
    from ftkit.data import formatting

    dense, tok = models.load("tiny-llama")
    moe = M.upcycle(dense, n_experts=2, top_k=1, aux_coef=0.1)
    ds = formatting.pairs_dataset(tok, ["question one?", "question two?"] * 2, [" yes", " no"] * 2, 64)
    moe, cost = M.train(moe, tok, ds, TrainConfig(lr=1e-2, max_steps=3, batch_size=2, report_to="none"),
                        str(tmp_path), seed=0)
    experts = moe.model.layers[0].mlp.experts.down_proj
    assert not torch.equal(experts[0], experts[1])
    assert cost["trainable_params"] > 0 and cost["tokens_per_second"] > 0
    out = moe.generate(**tok(["question one?"], return_tensors="pt"), max_new_tokens=3, do_sample=False)
    assert out.shape[1] > 0 and moe.config.output_router_logits is False
