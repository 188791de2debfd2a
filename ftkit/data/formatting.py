"""Formatting (paper §2.1, §3.1.2): templates, chat templates, prompt/completion with label mask.

Two ways to turn (instruction, response) into training text, chosen through ``TEMPLATES``:

- ``paper``: the survey's plain layout, ``###Human: <query>`` then ``###Assistant: <answer>``;
- ``chat``: the model's own chat template (SmolLM2: ``<|im_start|>user ... <|im_end|>``), which
  is what an instruct model saw in its own fine-tuning.

For completion-only loss the prompt and the completion are tokenised separately and joined, so
the boundary is exact, and the prompt positions get label -100 (ignored by the cross-entropy).
Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from datasets import Dataset

from ftkit.core.config import ConfigError

IGNORE_INDEX = -100  # torch.nn.CrossEntropyLoss skips targets equal to this


def paper_template(instruction: str, response: str = "") -> str:
    """``###Human: …`` / ``###Assistant: …``; with no response, the prompt to complete."""
    return f"###Human: {instruction}\n###Assistant: {response}".rstrip() if response else \
        f"###Human: {instruction}\n###Assistant:"


def _paper_pair(tokenizer, instruction: str, response: str) -> dict:
    return {"prompt": paper_template(instruction), "completion": " " + response}


def _chat_pair(tokenizer, instruction: str, response: str) -> dict:
    messages = [{"role": "user", "content": instruction}]
    prompt = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": response}],
                                         tokenize=False)
    if not full.startswith(prompt):  # a template that rewrites earlier turns cannot be split
        raise ValueError("the chat template's prompt is not a prefix of the full conversation")
    # the trailing newline after the end-of-turn token is not something to learn
    return {"prompt": prompt, "completion": full[len(prompt):].rstrip("\n")}


TEMPLATES: dict[str, Callable[..., dict]] = {"paper": _paper_pair, "chat": _chat_pair}


def prompt_completion(tokenizer, instruction: str, response: str, template: str = "paper") -> dict:
    """``{"prompt", "completion"}`` strings in the chosen template (see ``TEMPLATES``)."""
    if template not in TEMPLATES:
        raise ValueError(f"unknown template {template!r}; choose one of {list(TEMPLATES)}")
    return TEMPLATES[template](tokenizer, instruction, response)


def full_text(tokenizer, instruction: str, response: str, template: str = "paper") -> str:
    """Prompt and completion as one training string."""
    pair = prompt_completion(tokenizer, instruction, response, template)
    return pair["prompt"] + pair["completion"]


def tokenize_with_mask(tokenizer, prompt: str, completion: str, max_length: int) -> dict:
    """``input_ids``, ``attention_mask`` and ``labels`` (-100 on prompt tokens), truncated.

    The completion ends with the EOS token so the model learns to stop (unless the template
    already closed the turn with it).
    """
    # special tokens (BOS) once: from the tokenizer, unless the template already wrote them
    has_bos = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
    prompt_ids = tokenizer(prompt, add_special_tokens=not has_bos)["input_ids"]
    answer_ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if eos is not None and (not answer_ids or answer_ids[-1] != eos):
        answer_ids = answer_ids + [eos]
    ids = (prompt_ids + answer_ids)[:max_length]
    n_prompt = min(len(prompt_ids), len(ids))
    labels = [IGNORE_INDEX] * n_prompt + ids[n_prompt:]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def token_lengths(tokenizer, texts: list[str]) -> np.ndarray:
    """Token count of each text (with the tokenizer's special tokens)."""
    return np.array([len(x) for x in tokenizer(list(texts))["input_ids"]])


def length_stats(lengths: np.ndarray, limit: int) -> dict:
    """Mean, median, 95th percentile, max and how many exceed ``limit`` tokens."""
    lengths = np.asarray(lengths)
    return {"rows": int(lengths.size), "mean": round(float(lengths.mean()), 1),
            "p50": round(float(np.percentile(lengths, 50))),
            "p95": round(float(np.percentile(lengths, 95))),
            "max": int(lengths.max()), "limit": limit, "over_limit": int((lengths > limit).sum())}


def pairs_dataset(tokenizer, prompts: Sequence[str], completions: Sequence[str],
                  max_length: int):
    """A Dataset of tokenised prompt/completion pairs; the loss sees only completion tokens."""
    if len(prompts) != len(completions) or not prompts:
        raise ConfigError(f"pairs_dataset: {len(prompts)} prompts and {len(completions)} "
                          "completions; need the same, non-zero number")
    rows = [tokenize_with_mask(tokenizer, p, c, max_length) for p, c in zip(prompts, completions)]
    empty = sum(all(l == -100 for l in r["labels"]) for r in rows)
    if empty:
        raise ConfigError(f"{empty} of {len(rows)} examples have no completion token left "
                          f"after truncation to max_length={max_length}; raise max_length")
    return Dataset.from_list(rows)
