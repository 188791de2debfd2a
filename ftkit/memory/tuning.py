"""Memory tuning against plain fine-tuning and retrieval (paper §6.5, §1.9; notebook 11).

**Plain LoRA** trains one adapter on the fact questions for a usual number of epochs: the loss
ends well above zero, the way a fine-tuning run for style or format stops.

**Memory tuning**, in the spirit of Lamini-1's mixture of memory experts (§6.5.1): a bank of
small LoRA adapters (the *memory experts*) in the top decoder layers of a frozen backbone and
a frozen *router* that picks one expert per question. As in Lamini-1 the selection is fixed
before the experts learn: each subject's facts (all facts about one product, store or
category) belong to one expert, subjects are spread over the experts by their embedding so
that similar subjects share an expert, and the router is a nearest-neighbour search over the
training questions' embeddings (the same MiniLM encoder as the retriever). Then each expert
trains on its own facts only, until their loss is near zero (``target_loss``): computation
scales with the facts, and an update retrains one expert.

**RAG** (ftkit.memory.retrieval) answers with the retrieved sentences in the prompt, and the
**base** model answers with no help. Every way is scored the same way (ftkit.memory.facts).
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from transformers import TrainerCallback

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.evaluate.perplexity import perplexity
from ftkit.memory import facts as F
from ftkit.memory.params import MemoryConfig
from ftkit.memory.retrieval import Encoder, Retriever
from ftkit.train import finetune, sft
from ftkit.train.adapters import linear_names

EXPERT = "expert_{}"
NO_EXPERT = -1  # the router's answer for a text about none of the facts


# ---------------------------------------------------------------- plain LoRA
def train_lora(model_name: str, adapter: AdapterConfig, tokenizer, rows: list[dict],
               epochs: float, lr: float, output_dir: str, seed: int = 42,
               batch_size: int = 16):
    """One LoRA adapter on all the fact questions for ``epochs``; ``(model, cost row)``."""
    train = TrainConfig(lr=lr, num_epochs=epochs, batch_size=min(batch_size, len(rows)),
                        warmup_ratio=0.0, lr_scheduler="constant", eval_steps=5,
                        report_to="none")
    return finetune.train_method(model_name, adapter, train, F.examples(tokenizer, rows), None,
                                 output_dir, seed, title=f"plain LoRA, {epochs:g} epochs")


# ---------------------------------------------------------------- the router
def _balanced_groups(vectors: np.ndarray, n: int, seed: int, rounds: int = 10) -> list[int]:
    """k-means with equal capacity: each of ``n`` groups takes at most ceil(len/n) points."""
    rng = np.random.default_rng(seed)
    centres = vectors[rng.choice(len(vectors), n, replace=False)]
    cap = math.ceil(len(vectors) / n)
    group = [0] * len(vectors)
    for _ in range(rounds):
        sims = vectors @ centres.T
        order = np.argsort(-sims.max(1))  # the surest points choose first
        load = [0] * n
        for i in order:
            for g in np.argsort(-sims[i]):
                if load[g] < cap:
                    group[i], load[g] = int(g), load[g] + 1
                    break
        for g in range(n):
            members = vectors[[i for i in range(len(vectors)) if group[i] == g]]
            if len(members):
                c = members.mean(0)
                centres[g] = c / max(np.linalg.norm(c), 1e-8)
    return group


@dataclass
class Router:
    """Frozen expert selection: nearest training question (cosine) → its fact → its expert."""
    encoder: Encoder
    keys: np.ndarray  # (Q, H) training questions' embeddings
    key_facts: list[str]
    expert_of_fact: dict[str, int]

    @classmethod
    def build(cls, rows: list[dict], encoder: Encoder, n_experts: int, seed: int = 42) -> Router:
        subjects = sorted({r["subject"] for r in rows})
        if not 1 <= n_experts <= len(subjects):
            raise ConfigError(f"n_experts = {n_experts}, but the chosen facts have "
                              f"{len(subjects)} subjects (each subject's facts share one "
                              "expert); use at most that many")
        groups = _balanced_groups(encoder(subjects), n_experts, seed)
        of_subject = dict(zip(subjects, groups))
        expert_of_fact = {r["fact"]: of_subject[r["subject"]] for r in rows}
        return cls(encoder, encoder([r["question"] for r in rows]), [r["fact"] for r in rows],
                   expert_of_fact)

    def route(self, texts: list[str], threshold: float = 0.0) -> tuple[list[int], list[str]]:
        """The expert for each text, and the fact whose question it is nearest to. A text
        whose cosine similarity to every training question is below ``threshold`` is about
        none of the facts: it gets expert :data:`NO_EXPERT` (the backbone alone) and fact
        ``""``."""
        sims = self.encoder(texts) @ self.keys.T
        nearest, best = sims.argmax(1), sims.max(1)
        found = [self.key_facts[i] if s >= threshold else "" for i, s in zip(nearest, best)]
        return [self.expert_of_fact[f] if f else NO_EXPERT for f in found], found

    def load(self) -> list[int]:
        """Facts per expert."""
        counts = [0] * (max(self.expert_of_fact.values()) + 1)
        for e in self.expert_of_fact.values():
            counts[e] += 1
        return counts


# ---------------------------------------------------------------- memory experts
@torch.inference_mode()
def fact_losses(model, dataset, pad_id: int, batch_size: int = 32) -> list[float]:
    """Mean loss of each example's answer tokens (the value and the end of turn)."""
    was_training = model.training
    model.eval()
    losses = []
    try:
        for i in range(0, len(dataset), batch_size):
            rows = dataset[i:i + batch_size]
            width = max(len(x) for x in rows["input_ids"])
            ids = torch.tensor([x + [pad_id] * (width - len(x)) for x in rows["input_ids"]])
            labels = torch.tensor([x + [-100] * (width - len(x)) for x in rows["labels"]])
            mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in rows["input_ids"]])
            logits = model(input_ids=ids.to(model.device),
                           attention_mask=mask.to(model.device)).logits[:, :-1].float()
            target = labels[:, 1:].to(logits.device)
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target.clamp(min=0),
                                                    reduction="none")
            keep = (target != -100).float()
            losses += ((nll * keep).sum(1) / keep.sum(1).clamp(min=1.0)).tolist()
    finally:
        model.train(was_training)
    return losses


class StopWhenMemorised(TrainerCallback):
    """After each epoch, every fact's own loss (:func:`fact_losses`, in eval mode); stops
    when the worst is below ``target``: each fact memorised, not merely the average (Lamini
    looks at the loss of individual facts, §6.5). ``history`` keeps the mean and the worst
    fact loss of every epoch."""
    def __init__(self, target: float, dataset, pad_id: int) -> None:
        self.target, self.dataset, self.pad_id = target, dataset, pad_id
        self.history: list[dict] = []

    def on_epoch_end(self, args, state, control, model=None, **kwargs):
        losses = fact_losses(model, self.dataset, self.pad_id)
        self.history.append({"mean": statistics.mean(losses), "worst": max(losses)})
        if max(losses) < self.target:
            control.should_training_stop = True


@dataclass
class MemoryBank:
    """The backbone with one LoRA adapter per memory expert, and the router over them."""
    model: object
    router: Router
    cfg: MemoryConfig
    curves: dict[int, list[dict]] = field(default_factory=dict)  # expert -> fact losses per epoch
    seconds: dict[int, float] = field(default_factory=dict)
    epochs: dict[int, int] = field(default_factory=dict)

    @property
    def added_params(self) -> int:
        return sum(p.numel() for n, p in self.model.named_parameters() if "lora_" in n)

    def expert_rows(self, rows: list[dict], expert: int) -> list[dict]:
        return [r for r in rows if self.router.expert_of_fact[r["fact"]] == expert]

    def train_expert(self, expert: int, rows: list[dict], tokenizer, output_dir: str,
                     seed: int = 42, batch_size: int = 8) -> float:
        """Train ``expert`` on ``rows`` until every fact's loss is below the target (at most
        ``max_epochs``); returns the seconds it took."""
        if not rows:
            raise ConfigError(f"memory expert {expert} has no facts to learn")
        cfg, name = self.cfg, EXPERT.format(expert)
        self.model.set_adapter(name)  # only this expert's weights train
        data = F.examples(tokenizer, rows)
        stop = StopWhenMemorised(cfg.target_loss, data, tokenizer.pad_token_id)
        train = TrainConfig(lr=cfg.memory_lr, num_epochs=float(cfg.max_epochs),
                            batch_size=min(batch_size, len(rows)), warmup_ratio=0.0,
                            lr_scheduler="constant", eval_steps=5, report_to="none")
        trainer = sft.make_trainer(self.model, tokenizer, data, None,
                                   train, f"{output_dir}/{name}", seed,
                                   title=f"memory expert {expert} ({len(rows)} questions)",
                                   callbacks=[stop])
        t0 = time.perf_counter()
        trainer.train()
        self.model = sft.unwrap(trainer)
        self.model.config.use_cache = True
        self.curves[expert], self.epochs[expert] = stop.history, len(stop.history)
        self.seconds[expert] = time.perf_counter() - t0
        return self.seconds[expert]

    @torch.inference_mode()
    def answer(self, tokenizer, questions: list[str]) -> tuple[list[str], list[float]]:
        """Each question routed to its expert; each expert answers its questions in batches."""
        experts, _ = self.router.route(questions, self.cfg.route_threshold)
        answers, confidence = [""] * len(questions), [0.0] * len(questions)
        for e in sorted(set(experts)):
            idx = [i for i, x in enumerate(experts) if x == e]
            with self.expert(e):
                a, c = F.generate(self.model, tokenizer,
                                  [F.prompt(tokenizer, questions[i]) for i in idx],
                                  self.cfg.max_new_tokens, self.cfg.gen_batch_size)
            for i, ai, ci in zip(idx, a, c):
                answers[i], confidence[i] = ai, ci
        return answers, confidence

    @contextlib.contextmanager
    def expert(self, e: int):
        """Inside, the model computes with memory expert ``e`` (or, for :data:`NO_EXPERT`,
        the backbone alone)."""
        if e == NO_EXPERT:
            with self.model.disable_adapter():
                yield self.model
        else:
            self.model.set_adapter(EXPERT.format(e))
            yield self.model

    def perplexity(self, tokenizer, texts: list[str], threshold: float | None = None) -> float:
        """Perplexity of general text, each text through the expert the router picks for it
        (what a deployment does; ``threshold`` default: ``cfg.route_threshold``, 0 sends
        every text through some expert); texts weighted equally in log space."""
        experts, _ = self.router.route(
            texts, self.cfg.route_threshold if threshold is None else threshold)
        logs = []
        for e in sorted(set(experts)):
            group = [t for t, x in zip(texts, experts) if x == e]
            with self.expert(e):
                logs += [math.log(perplexity(self.model, tokenizer, group))] * len(group)
        return math.exp(statistics.mean(logs))


def memory_bank(model_name: str, rows: list[dict], encoder: Encoder, cfg: MemoryConfig,
                seed: int = 42) -> MemoryBank:
    """The frozen backbone, ``cfg.n_experts`` fresh LoRA experts in its top
    ``cfg.expert_layers`` layers, and the router (built before any expert trains)."""
    from peft import LoraConfig, get_peft_model

    router = Router.build(rows, encoder, cfg.n_experts, seed)
    env.seed_everything(seed)
    base = models.load_model(model_name)
    n_layers = base.config.num_hidden_layers
    if cfg.expert_layers > n_layers:
        raise ConfigError(f"expert_layers = {cfg.expert_layers}, but {model_name} has "
                          f"{n_layers} decoder layers")
    lora = LoraConfig(r=cfg.expert_r, lora_alpha=2 * cfg.expert_r, lora_dropout=0.0,
                      target_modules=sorted({n.split(".")[-1] for n in linear_names(base)}),
                      layers_to_transform=list(range(n_layers - cfg.expert_layers, n_layers)))
    model = get_peft_model(base, lora, adapter_name=EXPERT.format(0))
    for e in range(1, cfg.n_experts):
        model.add_adapter(EXPERT.format(e), lora)
    model.config.use_cache = False
    return MemoryBank(model, router, cfg)


def train_memory(bank: MemoryBank, tokenizer, rows: list[dict], output_dir: str,
                 seed: int = 42, progress=None) -> MemoryBank:
    """Train every expert of ``bank`` on its own facts' questions (see the module)."""
    experts = range(bank.cfg.n_experts)
    for e in (progress(experts, desc="memory experts") if progress else experts):
        bank.train_expert(e, bank.expert_rows(rows, e), tokenizer, output_dir, seed)
    return bank


# ---------------------------------------------------------------- one table for every way
def plain_answer(model, tokenizer, questions: list[str], cfg: MemoryConfig):
    return F.generate(model, tokenizer, [F.prompt(tokenizer, q) for q in questions],
                      cfg.max_new_tokens, cfg.gen_batch_size)


def rag_answer(model, tokenizer, retriever: Retriever, questions: list[str], cfg: MemoryConfig):
    hits = retriever.retrieve(questions, cfg.top_k)
    texts = [F.prompt(tokenizer, q, [h[1] for h in row]) for q, row in zip(questions, hits)]
    return F.generate(model, tokenizer, texts, cfg.max_new_tokens, cfg.gen_batch_size)


def evaluate(answer_fn, rows: list[dict], cfg: MemoryConfig) -> tuple[object, dict]:
    """Ask every question of ``rows`` through ``answer_fn(questions) -> (answers,
    confidences)``; the scored table and its summary with milliseconds per answer."""
    if not rows:
        raise ConfigError("no questions to ask")
    (answers, confidence), seconds = F.timed(answer_fn, [r["question"] for r in rows])
    table = F.score(rows, answers, confidence, cfg.confident)
    return table, {**F.summary(table), "ms_per_answer": 1000 * seconds / len(rows)}


def one_per_fact(rows: list[dict]) -> list[dict]:
    """The first question of each fact (a training phrasing: does the model know what it
    was taught, word for word?)."""
    seen, out = set(), []
    for r in rows:
        if r["fact"] not in seen:
            seen.add(r["fact"])
            out.append(r)
    return out


def update_report(answer_fns: dict, rows: list[dict], old_values: dict[str, str],
                  cfg: MemoryConfig) -> object:
    """Per way of answering, on questions about changed facts: the share answered with the
    new value, with the old one, and with neither."""
    import pandas as pd

    report = {}
    for name, fn in answer_fns.items():
        table, _ = evaluate(fn, rows, cfg)
        old = [F.is_right(a, old_values[f]) for a, f in zip(table["answer"], table["fact"])]
        report[name] = {"new_value": float(table["right"].mean()), "old_value": float(np.mean(old)),
                        "neither": float(np.mean([not (r or o) for r, o in
                                                  zip(table["right"], old)]))}
    return pd.DataFrame(report).T


# ---------------------------------------------------------------- figures
def methods_figure(table):
    """Exact accuracy and hallucination rate per way of answering (rows of ``table``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    cols = [c for c in ["accuracy", "train_phrasing_accuracy", "hallucination"] if c in table]
    table[cols].plot.bar(ax=axes[0], rot=0)
    axes[0].set(ylim=(0, 1.05), title="held-out paraphrases: right, and confidently wrong")
    axes[0].legend(fontsize=8)
    axes[1].bar(table.index, table["ms_per_answer"], color="tab:gray")
    axes[1].set(ylabel="ms per answer", title="answer latency (batched, this machine)")
    fig.tight_layout()
    return fig


def memorisation_figure(bank: MemoryBank, lora_loss: float | None = None):
    """Each expert's worst and mean fact loss per epoch, with the target (log scale)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    for e, curve in sorted(bank.curves.items()):
        x = range(1, len(curve) + 1)
        line, = ax.plot(x, [c["worst"] for c in curve], marker="o", label=f"expert {e}: worst fact")
        ax.plot(x, [c["mean"] for c in curve], ls=":", color=line.get_color())
    ax.axhline(bank.cfg.target_loss, color="k", ls="--", lw=1, label="target")
    if lora_loss is not None:
        ax.axhline(lora_loss, color="tab:red", lw=1, label="plain LoRA, final loss")
    ax.set(yscale="log", xlabel="epoch", ylabel="loss on the value (nats/token)",
           title="memory experts: trained until every fact is known")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- cost rows of the table
def plain_cost(model, tokenizer, general_texts: list[str], rows: list[dict] | None = None,
               trained: dict | None = None) -> dict:
    """Training time, added weights, general perplexity and (given the training ``rows``)
    the mean and worst fact loss of a single model (the base, or plain LoRA)."""
    row = {"train_seconds": (trained or {}).get("train_seconds", 0.0),
           "added_params": (trained or {}).get("trainable_params", 0),
           "general_ppl": perplexity(model, tokenizer, general_texts)}
    if rows:
        losses = fact_losses(model, F.examples(tokenizer, rows), tokenizer.pad_token_id)
        row.update(fact_loss_mean=statistics.mean(losses), fact_loss_worst=max(losses))
    return row


def bank_cost(bank: MemoryBank, tokenizer, general_texts: list[str]) -> dict:
    """The same row for a trained memory bank; general perplexity with the router's gate and
    without it (every text through some expert)."""
    last = [curve[-1] for curve in bank.curves.values()]
    return {"train_seconds": sum(bank.seconds.values()), "added_params": bank.added_params,
            "general_ppl": bank.perplexity(tokenizer, general_texts),
            "general_ppl_no_gate": bank.perplexity(tokenizer, general_texts, threshold=0.0),
            "fact_loss_mean": statistics.mean(c["mean"] for c in last),
            "fact_loss_worst": max(c["worst"] for c in last)}


def routing_report(router: Router, rows: list[dict], general_texts: list[str],
                   threshold: float) -> dict:
    """How often held-out questions reach their fact's expert, and general texts no expert."""
    experts, _ = router.route([r["question"] for r in rows], threshold)
    general, _ = router.route(general_texts, threshold)
    return {"routing_accuracy": float(np.mean([router.expert_of_fact[r["fact"]] == e
                                               for r, e in zip(rows, experts)])),
            "general_gated": float(np.mean([e == NO_EXPERT for e in general]))}
