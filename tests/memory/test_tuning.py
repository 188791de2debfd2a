"""Plain LoRA, the memory-expert bank and its router (ftkit.memory.tuning), on tiny models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ftkit import models
from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.memory import facts as F
from ftkit.memory import retrieval as R
from ftkit.memory import tuning as T
from ftkit.memory.params import MemoryConfig

SUBJECTS = ["Atlas kettle", "Birch lamp", "Comet chair", "Ember scarf"]


def rows() -> list[dict]:
    out = []
    for i, s in enumerate(SUBJECTS):
        for j, q in enumerate(["How much is the {}?", "What does the {} cost?"]):
            out.append({"fact": f"f{i}", "subject": s, "question": q.format(s), "value": f"€{i + 10}.00",
                        "answer": f"The {s} costs €{i + 10}.00."})
    return out


def test_balanced_groups_respect_capacity():
    vectors = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    groups = T._balanced_groups(vectors / np.linalg.norm(vectors, axis=1, keepdims=True), 3, seed=0)
    counts = np.bincount(groups, minlength=3)
    assert counts.max() <= 4 and counts.sum() == 10


def test_the_router_keeps_each_subject_on_one_expert_and_routes_its_questions_there():
    router = T.Router.build(rows(), R.load_encoder("tiny-bert"), n_experts=2, seed=0)
    assert sorted(router.load()) == [2, 2]
    experts, found = router.route([r["question"] for r in rows()])
    assert found == [r["fact"] for r in rows()]  # the training questions find themselves
    assert experts == [router.expert_of_fact[r["fact"]] for r in rows()]
    with pytest.raises(ConfigError, match="n_experts = 5, but the chosen facts have 4 subjects"):
        T.Router.build(rows(), R.load_encoder("tiny-bert"), n_experts=5)


def test_an_expert_trains_alone_until_its_facts_are_memorised(tmp_path):
    cfg = MemoryConfig(n_experts=2, expert_r=4, expert_layers=1, memory_lr=5e-2, target_loss=10.0,
                       max_epochs=3, max_new_tokens=4)
    tok = models.load_tokenizer("tiny-llama")
    bank = T.memory_bank("tiny-llama", rows(), R.load_encoder("tiny-bert"), cfg, seed=0)
    names = [n for n, _ in bank.model.named_parameters() if "lora_B" in n]
    assert names and all(".layers.1." in n for n in names)  # the top layer only
    before = {n: p.detach().clone() for n, p in bank.model.named_parameters() if "lora_B" in n}
    mine = bank.expert_rows(rows(), 0)
    bank.train_expert(0, mine, tok, str(tmp_path), seed=0)
    changed = {n for n, p in bank.model.named_parameters() if n in before and not torch.equal(p, before[n])}
    assert changed and all("expert_0" in n for n in changed)  # expert 1 untouched
    assert bank.epochs[0] == 1  # a huge target is met after the first epoch
    assert set(bank.curves[0][0]) == {"mean", "worst"}
    answers, conf = bank.answer(tok, [r["question"] for r in rows()[:3]])
    assert len(answers) == 3 and all(0 < c <= 1 for c in conf)
    assert bank.perplexity(tok, ["Some general text.", "Another one."]) > 1.0
    with pytest.raises(ConfigError, match="memory expert 1 has no facts"):
        bank.train_expert(1, [], tok, str(tmp_path))


def test_the_stopping_rule_looks_at_the_worst_fact():
    tok = models.load_tokenizer("tiny-llama")
    model = models.load_model("tiny-llama")
    data = F.examples(tok, rows())
    losses = T.fact_losses(model, data, tok.pad_token_id, batch_size=3)
    assert len(losses) == len(rows()) and all(l > 0 for l in losses)
    assert losses[:2] == pytest.approx(T.fact_losses(model, data.select([0, 1]), tok.pad_token_id), rel=1e-4)

    class Control:
        should_training_stop = False

    stop, control = T.StopWhenMemorised(max(losses) - 1e-6, data, tok.pad_token_id), Control()
    stop.on_epoch_end(None, None, control, model=model)  # the worst fact is just above the target
    assert not control.should_training_stop
    stop.target = max(losses) + 1e-3
    stop.on_epoch_end(None, None, control, model=model)
    assert control.should_training_stop and len(stop.history) == 2


def test_plain_lora_and_the_update_report(tmp_path):
    tok = models.load_tokenizer("tiny-llama")
    model, cost = T.train_lora("tiny-llama", AdapterConfig(lora_r=4), tok, rows(), epochs=1.0, lr=1e-3,
                               output_dir=str(tmp_path))
    assert cost["train_seconds"] > 0 and cost["trainable_params"] > 0
    cfg = MemoryConfig(max_new_tokens=3)
    fixed = {"a": lambda qs: (["€11.00"] * len(qs), [0.9] * len(qs)),
             "b": lambda qs: (["€10.00"] * len(qs), [0.9] * len(qs))}
    report = T.update_report(fixed, rows()[2:4], {"f1": "€10.00"}, cfg)
    assert report.loc["a"].tolist() == [1.0, 0.0, 0.0] and report.loc["b"].tolist() == [0.0, 1.0, 0.0]
    table, summary = T.evaluate(lambda qs: T.plain_answer(model, tok, qs, cfg), rows(), cfg)
    assert len(table) == len(rows()) and summary["ms_per_answer"] > 0
    assert len(T.one_per_fact(rows())) == len(SUBJECTS)
