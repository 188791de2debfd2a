"""Parameters of memory tuning and retrieval (notebook 11, paper §6.5, §1.9).

Light on purpose (no torch): notebook schemas, panels and the ``ftkit`` command read them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ftkit.core.config import Section, param

# The ways of answering the shop's fact questions that ftkit.memory.compare knows.
METHODS = ("base", "lora", "memory", "rag")


@dataclass(frozen=True)
class MemoryConfig(Section):
    """The fact base, and the four ways of making the assistant answer from it."""
    facts_dir: str = param("../data/shop_facts", "Folder with facts.jsonl, questions.jsonl "
                           "and updates.jsonl (data/make_shop_facts.py).")
    n_facts: int = param(48, "Facts the models learn and are asked about (0 = all); the "
                         "retriever always indexes the whole fact base.", min=0)
    n_updated: int = param(10, "Of those, facts that change later (from updates.jsonl).", min=0)
    methods: list[str] = param(list(METHODS), "Ways to answer: base (no help), lora (plain "
                               "fine-tuning at a usual loss), memory (a bank of memory "
                               "experts trained to near-zero loss), rag (retrieval).")
    lora_epochs: float = param(2.0, "Plain LoRA: passes over the fact questions (a usual "
                               "fine-tuning run stops while the loss is still well above "
                               "zero).", min=0.1, max=100.0, step=0.5)
    lora_lr: float = param(1e-3, "Plain LoRA: learning rate.", min=0.0, min_exclusive=True,
                           max=1.0, log=True)
    n_experts: int = param(4, "Memory experts in the bank (one LoRA adapter each; the "
                           "router picks one per question).", min=1, max=256)
    expert_r: int = param(16, "LoRA rank of each memory expert.", min=1, max=512)
    expert_layers: int = param(8, "Memory experts sit in the top this many decoder layers "
                               "(the backbone below stays frozen and untouched).", min=1)
    memory_lr: float = param(2e-3, "Memory experts: learning rate.", min=0.0,
                             min_exclusive=True, max=1.0, log=True)
    target_loss: float = param(0.05, "Memory experts train until every fact's own loss "
                               "(mean over its answer tokens) is below this.", min=0.0, min_exclusive=True,
                               max=10.0, log=True)
    max_epochs: int = param(20, "Memory experts: at most this many passes over their facts.",
                            min=1, max=1000)
    route_threshold: float = param(0.6, "Router: a question whose cosine similarity to every "
                                   "training question is below this goes to the backbone "
                                   "alone (no expert); 0 = always an expert.", min=0.0,
                                   max=1.0, step=0.05)
    top_k: int = param(3, "RAG: facts retrieved into the prompt.", min=1, max=50)
    index_kind: Literal["flat", "hnsw", "exact"] = param(
        "flat", "RAG index: FAISS exact inner product (flat), FAISS HNSW graph (hnsw, "
        "approximate) or plain torch search (exact, no FAISS).")
    encoder: str = param("minilm-l6", "Sentence encoder of the retriever and the router.")
    confident: float = param(0.5, "An answer counts as confident when the mean probability "
                             "of its tokens is at least this (a confident wrong answer is a "
                             "hallucination).", min=0.0, max=1.0, step=0.05)
    max_new_tokens: int = param(24, "Longest answer generated.", min=1, max=512)
    gen_batch_size: int = param(16, "Questions answered per generate call.", min=1, max=512)

    def check(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or len(set(self.methods)) != len(self.methods) or not self.methods:
            self.fail("methods", f"name each of {list(METHODS)} at most once (got "
                      f"{self.methods})")
        if self.n_facts and self.n_updated > self.n_facts:
            self.fail("n_updated", f"{self.n_updated} updated facts cannot be among "
                      f"{self.n_facts} facts")
