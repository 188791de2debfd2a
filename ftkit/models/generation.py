"""Chat generation with a causal LM and its chat template; timing per token.

Used in notebooks/03_model_initialisation.ipynb and later notebooks that compare answers.
"""
from __future__ import annotations

import copy
import statistics
import time

import torch


def chat_ids(tokenizer, prompt: str | list[dict], system: str | None = None) -> torch.Tensor:
    """Token ids ``(1, T)`` of a chat prompt, ending with the assistant's turn marker."""
    messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
    if system:
        messages.insert(0, {"role": "system", "content": system})
    enc = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                        return_dict=True)
    return enc["input_ids"]


@torch.inference_mode()
def chat(model, tokenizer, prompt: str | list[dict], max_new_tokens: int = 48,
         system: str | None = None) -> str:
    """Greedy answer of ``model`` to one user ``prompt`` (or a list of chat messages)."""
    ids = chat_ids(tokenizer, prompt, system).to(model.device)
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                         do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()


@torch.inference_mode()
def ms_per_token(model, tokenizer, prompt: str, new_tokens: int = 32, repeats: int = 2) -> float:
    """Milliseconds per generated token (greedy, KV cache on), best of ``repeats`` runs."""
    ids = chat_ids(tokenizer, prompt).to(model.device)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                             max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             pad_token_id=tokenizer.pad_token_id)
        produced = out.shape[1] - ids.shape[1]
        best = min(best, (time.perf_counter() - t0) * 1000 / max(produced, 1))
    return best


@torch.inference_mode()
def chat_batch(model, tokenizer, prompts: list[str], max_new_tokens: int = 48,
               batch_size: int = 16, progress=None) -> list[str]:
    """Greedy answers to many user prompts, ``batch_size`` at a time (left padding, KV cache).

    ``progress`` wraps the batch iterator (e.g. ``ft.progress``) for a progress bar.
    """
    texts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                           add_generation_prompt=True) for p in prompts]
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    has_bos = bool(tokenizer.bos_token) and all(t.startswith(tokenizer.bos_token) for t in texts)
    starts = range(0, len(texts), batch_size)
    answers: list[str] = []
    try:
        for i in (progress(starts, desc="generate") if progress else starts):
            enc = tokenizer(texts[i:i + batch_size], return_tensors="pt", padding=True,
                            add_special_tokens=not has_bos).to(model.device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id)
            answers += tokenizer.batch_decode(out[:, enc["input_ids"].shape[1]:],
                                              skip_special_tokens=True)
    finally:
        tokenizer.padding_side = side
    return [a.strip() for a in answers]


def left_padded(tokenizer, texts: list[str], device=None) -> dict:
    """``texts`` (already in the chat template) as one left-padded batch, on ``device``."""
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    try:
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    finally:
        tokenizer.padding_side = side
    return enc.to(device) if device is not None else enc


def _prefill(model, ids: torch.Tensor, mask: torch.Tensor):
    """The key/value cache of left-padded prompts without their last token (generate feeds
    that one), at the positions generate gives them."""
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    position = (mask.cumsum(-1) - 1).clamp(min=0)
    model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=position[:, :-1],
          past_key_values=cache, use_cache=True)
    return cache


def _continue(model, ids, mask, cache, count: int, last: bool, **generate_kwargs):
    """``count`` continuations of each prompt from its prefilled ``cache`` (copied unless
    ``last``: generate extends the cache it is given)."""
    past = cache if last else copy.deepcopy(cache)
    if count > 1:
        past.batch_repeat_interleave(count)
    out = model.generate(input_ids=ids.repeat_interleave(count, 0),
                         attention_mask=mask.repeat_interleave(count, 0), past_key_values=past,
                         **generate_kwargs)
    return out[:, ids.shape[1]:]


def continue_groups(model, ids: torch.Tensor, mask: torch.Tensor, count: int,
                    **generate_kwargs) -> torch.Tensor:
    """``count`` continuations of each left-padded prompt (``ids``/``mask``), each prompt
    computed once (its cache repeated ``count`` times) instead of once per continuation; the
    new tokens only, ``(len(ids) · count, L)``, each prompt's continuations adjacent."""
    return _continue(model, ids, mask, _prefill(model, ids, mask), count, True, **generate_kwargs)


@torch.inference_mode()
def sample_groups(model, tokenizer, texts: list[str], n: int, max_new_tokens: int,
                  temperature: float = 1.0, greedy_first: bool = True) -> list[list[str]]:
    """``n`` answers to each of ``texts`` (prompts already in the chat template), the prompt
    computed once per text rather than once per answer.

    ``generate(num_return_sequences=n)`` copies every prompt ``n`` times before the first
    forward pass, so a prompt of P tokens costs ``n · P`` token-forwards; here each prompt
    (all but its last token) runs once, its key/value cache is repeated ``n`` times, and
    generation continues from there: ``P`` token-forwards, the same greedy answers (a test
    compares them with plain ``generate``). With ``greedy_first`` the first answer is greedy
    and the other ``n - 1`` are sampled at ``temperature``.
    """
    enc = left_padded(tokenizer, texts, model.device)
    ids, mask = enc["input_ids"], enc["attention_mask"]
    cache = _prefill(model, ids, mask)
    plan = [(c, s) for c, s in [(1, False)] * int(greedy_first) + [(n - int(greedy_first), True)]
            if c > 0]
    groups: list[list[str]] = [[] for _ in texts]
    for i, (count, sample) in enumerate(plan):
        out = _continue(model, ids, mask, cache, count, i == len(plan) - 1,
                        max_new_tokens=max_new_tokens, do_sample=sample,
                        temperature=temperature if sample else None, top_p=None, top_k=None,
                        pad_token_id=tokenizer.pad_token_id)
        for j, text in enumerate(tokenizer.batch_decode(out, skip_special_tokens=True)):
            groups[j // count].append(text.strip())
    return groups


@torch.inference_mode()
def generate_groups(model, prompt_ids: list[list[int]], group: int, generation_config,
                    pad_token_id: int, eos_token_ids: list[int]) -> list[list[int]] | None:
    """Completions for token-id prompts that come in runs of ``group`` identical ones (as a
    GRPO trainer asks for them), each distinct prompt computed once; every completion cut
    after its first end token. None when the prompts do not come in such runs."""
    distinct = prompt_ids[::group]
    if group < 1 or len(prompt_ids) != len(distinct) * group or any(
            prompt_ids[k] != distinct[k // group] for k in range(len(prompt_ids))):
        return None
    width = max(map(len, distinct))
    device = next(model.parameters()).device
    ids = torch.tensor([[pad_token_id] * (width - len(p)) + p for p in distinct], device=device)
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in distinct], device=device)
    out = continue_groups(model, ids, mask, group, generation_config=generation_config)
    completions = []
    for row in out.tolist():
        end = next((k for k, t in enumerate(row) if t in eos_token_ids), len(row) - 1)
        completions.append(row[:end + 1])
    return completions


@torch.inference_mode()
def forward_ms(variants: dict, input_ids: torch.Tensor, rounds: int = 5) -> dict[str, float]:
    """Median milliseconds of one forward pass over ``input_ids`` for each model, measured
    side by side: every round times each model once, after one untimed warm-up pass each,
    and each round starts one model further down the list, so no model is always the one
    timed first. Logits are computed for the last position only, as in the prefill step of
    generation."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for model in variants.values():
        model(input_ids=input_ids, logits_to_keep=1)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            variants[name](input_ids=input_ids, logits_to_keep=1)
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(t) for name, t in times.items()}


def timing_batch(tokenizer, texts: list[str], batch: int = 4, length: int = 128) -> torch.Tensor:
    """``(batch, length)`` token ids cut from ``texts`` joined, for timing forward passes."""
    ids = tokenizer(" ".join(texts), return_tensors="pt")["input_ids"][0]
    need = batch * length
    ids = ids.repeat(need // max(len(ids), 1) + 1)[:need]
    return ids.reshape(batch, length)
