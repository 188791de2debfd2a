"""Reinforcement learning with verifiable rewards: GRPO through TRL (2024-25 practice).

The paper stops at PPO with a learned reward model (§6.8) and DPO (§6.9). Group Relative
Policy Optimisation (Shao et al., 2024, DeepSeekMath) drops PPO's value network: for each
prompt it samples a *group* of completions, scores each with a reward, and uses the reward's
distance from the group mean (in units of the group's spread) as every token's advantage.
With rewards that a program can check (valid JSON, the right field values, a length limit)
there is no reward model to train or to fool, only the rules, and those can have loopholes.

The task here: turn a customer message of the shop into the record its ticket system files,
``{"order": ..., "total": ...}`` (data/extraction_tasks, made by
``data/make_extraction_tasks.py``): copy the right numbers, skip the distracting ones, write
null for what is missing. Training runs through TRL's ``GRPOTrainer`` with LoRA;
:class:`RolloutGRPOTrainer` adds the kit's speed layer for it on CPUs (see its docstring).

Rewards are plain functions with TRL's signature, ``f(completions, **columns) -> list[float]``
(the columns are the task's fields), so a user can pass their own; :func:`checked` wraps each
one so that an exception or a non-number stops training with a message that names the reward
and the prompt. Used in notebooks/18_grpo_verifiable_rewards.ipynb.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import json
import math
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.core.env import headless
from ftkit.data.formatting import pairs_dataset
from ftkit.models.generation import generate_groups, sample_groups
from ftkit.train import factory, finetune
from ftkit.train.adapters import apply_method
from ftkit.train.speed.fastloss import _parts
from ftkit.train.speed.fused_lora import use_fused_lora

from ftkit.align.dpo import LiveCurves, token_kl
from ftkit.align.params import GRPOSettings

FIELDS = ("order", "total")
SYSTEM = ('Reply with the JSON record {"order": ..., "total": ...}: the order number\'s '
          "digits as a string, the euros paid as a number, null where not given.")
GRPO_CURVES = {"reward": "mean reward", "reward_std": "reward spread (std within groups)",
               "kl": "KL to the base (per token)", "completions/mean_length":
               "completion length (tokens)"}

Reward = Callable[..., list]


# ---------------------------------------------------------------- the task and its checks
def load_records(path: str | Path, n: int = 0) -> list[dict]:
    """Rows of a task file (JSONL with ``message`` and the record's fields); ``n`` > 0 keeps the
    first ``n``. A row without one of them stops with its line number."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"task file {path} not found (python data/make_extraction_tasks.py "
                          "writes it)")
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        missing = [k for k in ("message", *FIELDS) if k not in row]
        if missing or not str(row.get("message") or "").strip():
            raise ConfigError(f"{path.name} line {i}: missing {missing or ['message text']}; "
                              f"each row needs message, {', '.join(FIELDS)} (null allowed)")
        rows.append(row)
    return rows[:n] if n > 0 else rows


def prompt_of(row: dict) -> list[dict]:
    """The conversation the policy answers: the filing rules as the system turn, the customer's
    message as the user turn (the chat template is applied where it is used)."""
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["message"]}]


def target_of(row: dict) -> str:
    """The right record as the policy should write it (the SFT baseline's completion)."""
    return json.dumps({k: row[k] for k in FIELDS})


def text_of(completion: Any) -> str:
    """A completion's text: TRL passes strings, or message lists for chat prompts."""
    if isinstance(completion, list):
        return "".join(m.get("content", "") for m in completion if isinstance(m, dict))
    return str(completion)


def parse_record(text: str) -> dict | None:
    """The first ``{...}`` in ``text`` parsed as a JSON object, or None."""
    match = re.search(r"\{.*?\}", text, re.S)
    if not match:
        return None
    try:
        value = json.loads(match.group(0))
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def field_hits(record: dict | None, row: dict) -> dict[str, bool]:
    """Which fields of ``record`` equal the row's (an order number may be a string or an int)."""
    record = record or {}
    hits = {}
    for k in FIELDS:
        got, want = record.get(k, "<missing>"), row[k]
        if k == "order" and isinstance(got, int) and not isinstance(got, bool):
            got = str(got)
        hits[k] = (got == want) and type(got) is type(want) or (got is None and want is None)
    return hits


def passes(text: str, row: dict) -> bool:
    """The check a ticket system would run: a JSON object with exactly the record's keys, each
    value right."""
    record = parse_record(text)
    return record is not None and set(record) == set(FIELDS) and all(
        field_hits(record, row).values())


def _rows(order, total) -> list[dict]:
    return [dict(zip(FIELDS, v)) for v in zip(order, total)]


# ---------------------------------------------------------------- rewards (TRL's signature)
def valid_json(completions, **_) -> list[float]:
    """1 for a JSON object with exactly the record's keys, 0.5 for other JSON objects, else 0."""
    out = []
    for c in completions:
        record = parse_record(text_of(c))
        out.append(0.0 if record is None else 1.0 if set(record) == set(FIELDS) else 0.5)
    return out


def exact_fields(completions, order, total, **_) -> list[float]:
    """Share of the fields whose value is exactly right (0 when nothing parses)."""
    return [sum(field_hits(parse_record(text_of(c)), row).values()) / len(FIELDS)
            for c, row in zip(completions, _rows(order, total))]


def stops_after_record(completions, max_chars: int = 80, **_) -> list[float]:
    """The length limit: 1 when the answer is one JSON object alone (nothing before or after
    it, at most ``max_chars`` characters), else 0. Whether it is the right record is for the
    other rewards to say."""
    out = []
    for c in completions:
        text = text_of(c).strip()
        ok = text.startswith("{") and text.endswith("}") and text.count("{") == 1
        out.append(float(ok and len(text) <= max_chars and parse_record(text) is not None))
    return out


def loose_fields(completions, order, total, **_) -> list[float]:
    """A reward with a loophole: a field counts as right when its value appears *anywhere* in
    the answer. Writing every number of the message (and a null) satisfies it without
    deciding which number is which."""
    out = []
    for c, row in zip(completions, _rows(order, total)):
        text = text_of(c).lower()
        found = [("null" in text) if row[k] is None else (str(row[k]).lower() in text)
                 for k in FIELDS]
        out.append(sum(found) / len(FIELDS))
    return out


REWARDS: dict[str, Reward] = {"valid_json": valid_json, "exact_fields": exact_fields,
                              "stops_after_record": stops_after_record,
                              "loose_fields": loose_fields}


class RewardError(ValueError):
    """A reward function raised, or returned something other than one number per completion."""


def checked(fn: Reward) -> Reward:
    """``fn`` with its output checked: one finite number (or None) per completion. An exception
    inside ``fn`` is re-raised as :class:`RewardError` naming the reward and the first prompt
    that makes it fail (found by calling ``fn`` on one completion at a time)."""
    name = getattr(fn, "__name__", type(fn).__name__)

    def prompt_text(prompts, i) -> str:
        if not prompts:
            return "?"
        p = prompts[i]
        return (p[-1]["content"] if isinstance(p, list) else str(p))[:80]

    @functools.wraps(fn)
    def wrapper(prompts=None, completions=None, **kwargs):
        completions = completions or []
        try:
            values = fn(prompts=prompts, completions=completions, **kwargs)
        except Exception as error:  # find the prompt that breaks it
            for i in range(len(completions)):
                one = {k: v[i:i + 1] if isinstance(v, list) and len(v) == len(completions)
                       else v for k, v in kwargs.items()}
                try:
                    fn(prompts=prompts[i:i + 1] if prompts else None,
                       completions=completions[i:i + 1], **one)
                except Exception:
                    raise RewardError(f"reward {name!r} raised {type(error).__name__}: {error} "
                                      f"on the prompt {prompt_text(prompts, i)!r}") from error
            raise RewardError(f"reward {name!r} raised {type(error).__name__}: {error}") \
                from error
        if not isinstance(values, (list, tuple)) or len(values) != len(completions):
            raise RewardError(f"reward {name!r} must return one number per completion "
                              f"({len(completions)}), got {type(values).__name__}"
                              f"{'' if not hasattr(values, '__len__') else f' of {len(values)}'}")
        for i, v in enumerate(values):
            if v is None:
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise RewardError(f"reward {name!r} returned {v!r} (not a finite number) on the "
                                  f"prompt {prompt_text(prompts, i)!r}")
        return [None if v is None else float(v) for v in values]

    return wrapper


def rewards_by_name(names: list[str]) -> list[Reward]:
    """The named built-in rewards, checked; an unknown name stops with the valid ones."""
    unknown = [n for n in names if n not in REWARDS]
    if unknown or not names:
        raise ConfigError(f"GRPOSettings.rewards = {names}: choose from {list(REWARDS)}")
    return [checked(REWARDS[n]) for n in names]


def reward_table(examples: dict[str, str], row: dict, rewards: list[Reward]):
    """Each reward on hand-written answers to one row: what the rules pay for (a DataFrame)."""
    import pandas as pd

    columns = {k: [row[k]] * len(examples) for k in FIELDS}
    table = {getattr(r, "__name__", "reward"): r(prompts=[prompt_of(row)] * len(examples),
                                                 completions=list(examples.values()), **columns)
             for r in rewards}
    frame = pd.DataFrame(table, index=list(examples))
    frame["passes"] = [passes(t, row) for t in examples.values()]
    return frame


# ---------------------------------------------------------------- training
@contextlib.contextmanager
def merged_adapter(model):
    """LoRA merged into the base weights while inside (sampling runs through plain Linear
    layers instead of peft's adapter path); unmerged afterwards."""
    mergeable = hasattr(model, "merge_adapter") and not getattr(model, "_ftkit_merged", False)
    if mergeable:
        model.merge_adapter()
        model._ftkit_merged = True
    try:
        yield model
    finally:
        if mergeable:
            model.unmerge_adapter()
            model._ftkit_merged = False


def _trl_grpo():
    from trl import GRPOTrainer

    return GRPOTrainer


def rollout_trainer_class(completion_logits: bool = True, merged_rollouts: bool = True,
                          shared_prompts: bool = True) -> type:
    """TRL's GRPOTrainer with the kit's speed layer for rollouts on a CPU, each lever optional.

    - ``completion_logits``: log-probabilities from the vocabulary head applied only at the
      completion positions. TRL's fused, chunked head scores only the completion positions
      where Triton runs (CUDA/XPU); elsewhere it projects every position, prompt included,
      through its chunk loop. The values are the same (a test compares them).
    - ``merged_rollouts``: the LoRA update merged into the weights while sampling completions,
      unmerged before the gradient step: generation runs through plain Linear layers.
    - ``shared_prompts``: each prompt of a group computed once for its ``group_size``
      completions (``models.generation.generate_groups``) instead of once per completion.
    Measured side by side in ``benchmarks/grpo_step.py``.
    """
    base = _trl_grpo()

    class RolloutGRPOTrainer(base):
        ftkit_levers = {"completion_logits": completion_logits,
                        "merged_rollouts": merged_rollouts, "shared_prompts": shared_prompts}

        def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask,
                                               logits_to_keep, batch_size=None,
                                               compute_entropy=False, compute_aux_loss=False,
                                               **extra):
            parts = _parts(model)
            if (not completion_logits or compute_aux_loss or parts is None
                    or any(v is not None for v in extra.values())):
                return super()._get_per_token_logps_and_entropies(
                    model, input_ids, attention_mask, logits_to_keep, batch_size,
                    compute_entropy, compute_aux_loss, **extra)
            return completion_logps(parts, input_ids, attention_mask, logits_to_keep,
                                    self.temperature, batch_size, compute_entropy,
                                    self.accelerator.autocast)

        def _generate_single_turn(self, prompt_ids, images, multimodal_fields, num_generations,
                                  *args, **kwargs):
            merge = merged_rollouts and hasattr(self.model, "merge_adapter")
            with merged_adapter(self.model) if merge else contextlib.nullcontext():
                if (shared_prompts and not self.use_vllm and not self.args.use_transformers_paged
                        and images is None and not multimodal_fields):
                    model = self.accelerator.unwrap_model(self.model)
                    model.eval()
                    done = generate_groups(model, prompt_ids, num_generations,
                                           self.generation_config,
                                           self._tokenizer.pad_token_id, self.eos_token_ids)
                    model.train()
                    if done is not None:
                        return done, None
                return super()._generate_single_turn(prompt_ids, images, multimodal_fields,
                                                     num_generations, *args, **kwargs)

    return RolloutGRPOTrainer


def completion_logps(parts, input_ids, attention_mask, logits_to_keep: int,
                     temperature: float = 1.0, batch_size: int | None = None,
                     compute_entropy: bool = False, autocast=contextlib.nullcontext):
    """Per-token log-probabilities (and entropies) of the last ``logits_to_keep`` tokens, with
    the vocabulary head applied to those positions only. ``parts``: ``(decoder, head)``."""
    decoder, head = parts
    batch_size = batch_size or input_ids.size(0)
    logps, entropies = [], []
    for start in range(0, input_ids.size(0), batch_size):
        ids = input_ids[start:start + batch_size]
        mask = attention_mask[start:start + batch_size]
        with autocast():
            hidden = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
            logits = head(hidden[:, -logits_to_keep - 1:-1])
        logp = F.log_softmax(logits.float() / temperature, dim=-1)
        logps.append(logp.gather(-1, ids[:, -logits_to_keep:].unsqueeze(-1)).squeeze(-1))
        if compute_entropy:
            with torch.no_grad():
                entropies.append(-(logp.exp() * logp).sum(-1))
    return torch.cat(logps), (torch.cat(entropies) if compute_entropy else None), None


def grpo_arguments(settings: GRPOSettings, output_dir: str, seed: int = 42, beta: float | None = None,
                   **overrides: Any):
    """TRL ``GRPOConfig`` from the notebook's settings; ``overrides`` win.

    One optimiser step per generation batch: ``prompts_per_step`` prompts, ``group_size``
    completions each. Advantages are rewards minus their group's mean, not divided by the
    group's spread (``scale_rewards="none"``, as Dr. GRPO argues, Liu et al. 2025): with
    groups of four nearly equal rewards, dividing by a tiny spread turns a difference of one
    length-limit point into a full-size update. CPU-friendly defaults as for DPO (``use_cpu``, fp32 where bf16 is slow,
    no gradient checkpointing, no checkpoints), a constant learning rate.
    """
    from trl import GRPOConfig

    if settings.group_size < 2:
        raise ConfigError("GRPOSettings.group_size must be at least 2: GRPO's advantage is a "
                          "completion's reward minus its group's mean, which is 0 for a group of 1")
    args = dict(
        output_dir=output_dir, seed=seed, learning_rate=settings.grpo_lr,
        max_steps=settings.grpo_steps, per_device_train_batch_size=settings.prompts_per_step
        * settings.group_size, num_generations=settings.group_size,
        max_completion_length=settings.max_completion, temperature=settings.temperature,
        beta=settings.kl_beta if beta is None else beta, epsilon=settings.clip_eps,
        loss_type="dapo", scale_rewards="none", lr_scheduler_type="constant", warmup_steps=0,
        use_cpu=not torch.cuda.is_available(), bf16=env.use_bf16(False),
        gradient_checkpointing=False, logging_steps=1, save_strategy="no",
        report_to=["tensorboard"],
        disable_tqdm=headless(), dataloader_num_workers=0, log_completions=False)
    return GRPOConfig(**{**args, **overrides})


def grpo_dataset(rows: list[dict]):
    """A Dataset with TRL's conversational ``prompt`` and the fields the rewards read."""
    from datasets import Dataset

    return Dataset.from_list([{"prompt": prompt_of(r), **{k: r[k] for k in FIELDS}}
                              for r in rows])


@dataclass
class GRPORun:
    """One GRPO training run: the trained policy and what was logged."""
    label: str
    model: Any
    logs: list[dict] = field(default_factory=list)
    seconds: float = 0.0
    peak_memory_mb: float = 0.0
    prompts_seen: int = 0

    def curves(self):
        """The per-step logs as a DataFrame indexed by step."""
        import pandas as pd

        frame = pd.DataFrame([h for h in self.logs if "reward" in h])
        return frame.set_index("step") if "step" in frame else frame


def train_grpo(start, tokenizer, adapter: AdapterConfig, settings: GRPOSettings,
               rows: list[dict], rewards: list[Reward], output_dir: str, seed: int = 42,
               beta: float | None = None, steps: int | None = None, label: str = "GRPO",
               completion_logits: bool = True, merged_rollouts: bool = True,
               shared_prompts: bool = True) -> GRPORun:
    """GRPO on a fresh LoRA adapter over a copy of ``start`` (a plain model, e.g. the merged
    cold start; it stays as it is), with live plots of the mean reward, the reward spread
    within groups, the KL to ``start`` (the reference: the adapter switched off) and the
    completion length.

    ``beta``/``steps`` override the settings' ``kl_beta``/``grpo_steps`` (the KL-off run, the
    loophole run)."""
    if hasattr(start, "disable_adapter"):
        raise ConfigError("train_grpo starts from a plain model (merge a cold start's adapter "
                          "first: cold_start does): its reference is that model itself")
    if len(rows) < settings.prompts_per_step:
        raise ConfigError(f"GRPOSettings.prompts_per_step = {settings.prompts_per_step} is "
                          f"more than the {len(rows)} training prompts")
    steps = settings.grpo_steps if steps is None else steps
    args = grpo_arguments(settings, output_dir, seed, beta, max_steps=steps)
    env.seed_everything(seed)
    model = apply_method(copy.deepcopy(start), adapter).train()
    use_fused_lora(model)
    trainer_cls = rollout_trainer_class(completion_logits, merged_rollouts, shared_prompts)
    curves = LiveCurves(GRPO_CURVES, label, every=max(1, steps // 6))
    trainer = factory.build(trainer_cls, model, args, path="grpo", plot=curves,
                            reward_funcs=list(rewards), train_dataset=grpo_dataset(rows),
                            processing_class=tokenizer)
    started = time.perf_counter()
    with env.MemoryTracker() as mem:
        trainer.train()
    model = trainer.model.eval()
    model.config.use_cache = True
    logs = [dict(h, step=i) for i, h in
            enumerate((h for h in trainer.state.log_history if "reward" in h), 1)]
    return GRPORun(label, model, logs, time.perf_counter() - started, mem.delta_mb,
                   steps * settings.prompts_per_step)


def sft_examples(tokenizer, rows: list[dict], max_length: int = 256):
    """Supervised examples: each conversation in the chat template, the right record as the
    completion (the loss sees the completion only)."""
    prompts, completions = [], []
    for r in rows:
        prompt = tokenizer.apply_chat_template(prompt_of(r), tokenize=False,
                                               add_generation_prompt=True)
        full = tokenizer.apply_chat_template(
            prompt_of(r) + [{"role": "assistant", "content": target_of(r)}], tokenize=False)
        prompts.append(prompt)
        completions.append(full[len(prompt):].rstrip("\n"))
    return pairs_dataset(tokenizer, prompts, completions, max_length)


def cold_start(model_name: str, adapter: AdapterConfig, tokenizer, rows: list[dict],
               lr: float, epochs: float, output_dir: str, seed: int = 42):
    """A few supervised examples so that the policy writes records at all (a "cold start", as
    DeepSeek-R1 did before RL), merged into the weights: the start and reference of GRPO.
    Returns ``(plain model, cost row)``; with no rows, the base model itself."""
    if not rows:
        env.seed_everything(seed)
        return models.load_model(model_name).eval(), {"train_seconds": 0.0, "train_loss": None}
    model, row = sft_policy(model_name, adapter, tokenizer, rows, lr, epochs, output_dir, seed,
                            title=f"cold start ({len(rows)} examples)")
    plain = model.merge_and_unload() if hasattr(model, "merge_and_unload") else model
    plain.config.use_cache = True
    return plain.eval(), row


def sft_policy(model_name: str, adapter: AdapterConfig, tokenizer, rows: list[dict],
               lr: float, epochs: float, output_dir: str, seed: int = 42,
               title: str = "SFT", batch_size: int = 4):
    """LoRA SFT on the right records of ``rows`` (the cold start, and the SFT baseline);
    returns ``(model, cost row)``."""
    train = TrainConfig(lr=lr, num_epochs=epochs, max_steps=0,
                        batch_size=min(batch_size, len(rows)), warmup_ratio=0.0,
                        lr_scheduler="constant", bf16=False, report_to="none")
    return finetune.train_method(model_name, adapter, train, sft_examples(tokenizer, rows),
                                 None, output_dir, seed, title=title)


# ---------------------------------------------------------------- evaluation
def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from ``n`` samples of which ``c`` pass (Chen et al., 2021):
    1 - C(n-c, k) / C(n, k)."""
    if k > n:
        raise ConfigError(f"pass@{k} needs at least {k} samples per prompt, got {n}")
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def sample_answers(model, tokenizer, rows: list[dict], n: int, max_new_tokens: int,
                   temperature: float = 1.0, batch_prompts: int = 8, greedy_first: bool = True,
                   progress=None) -> list[list[str]]:
    """``n`` answers per row's prompt: the first greedy (what a deployment returns) when
    ``greedy_first``, the rest sampled at ``temperature``; each prompt computed once for all
    its answers (``models.generation.sample_groups``), the adapter merged while sampling."""
    texts = [tokenizer.apply_chat_template(prompt_of(r), tokenize=False,
                                           add_generation_prompt=True) for r in rows]
    out: list[list[str]] = []
    starts = range(0, len(texts), batch_prompts)
    with merged_adapter(model):
        for i in (progress(starts, desc="sample") if progress else starts):
            out += sample_groups(model, tokenizer, texts[i:i + batch_prompts], n,
                                 max_new_tokens, temperature, greedy_first)
    return out


def score_answers(answers: list[list[str]], rows: list[dict], ks: list[int]) -> dict:
    """pass@1 (greedy answer), pass@k (unbiased, all answers), valid-JSON share and per-field
    accuracy of the greedy answers, mean answer length in characters."""
    greedy = [a[0] for a in answers]
    counts = [(len(a), sum(passes(t, r) for t in a)) for a, r in zip(answers, rows)]
    hits = [field_hits(parse_record(t), r) for t, r in zip(greedy, rows)]
    row = {"pass@1": statistics.mean(passes(t, r) for t, r in zip(greedy, rows)),
           **{f"pass@{k}": statistics.mean(pass_at_k(n, c, k) for n, c in counts) for k in ks},
           "sampled_pass": statistics.mean(c / n for n, c in counts),
           "valid_json": statistics.mean(v == 1.0 for v in valid_json(greedy)),
           **{f"{k}_acc": statistics.mean(h[k] for h in hits) for k in FIELDS},
           "chars": statistics.mean(len(t) for t in greedy)}
    return row


def evaluate_policy(model, tokenizer, rows: list[dict], n: int, ks: list[int],
                    max_new_tokens: int, temperature: float = 1.0, progress=None,
                    kl: bool = True) -> tuple[dict, list[list[str]]]:
    """Score a policy on held-out rows; with ``kl``, also its KL to the base (adapter off)
    along its own greedy answers, summed over each answer's tokens (nats)."""
    answers = sample_answers(model, tokenizer, rows, n, max_new_tokens, temperature,
                             progress=progress)
    row = score_answers(answers, rows, ks)
    if kl and hasattr(model, "disable_adapter"):
        greedy = [a[0] for a in answers]
        row["kl_to_base"] = statistics.mean(token_kl(model, tokenizer,
                                                     [prompt_of(r) for r in rows], greedy))
    else:
        row["kl_to_base"] = 0.0
    return row, answers


def hacking_report(answers: list[list[str]], rows: list[dict]) -> dict:
    """What a policy trained on :func:`loose_fields` writes: the loophole's reward, the strict
    check, and how often an answer holds more numbers than its right record (every number of
    the message, say) or is not one record alone."""
    flat = [(t, r) for a, r in zip(answers, rows) for t in a]
    texts = [t for t, _ in flat]
    cols = {k: [r[k] for _, r in flat] for k in FIELDS}
    extra = [len(re.findall(r"\d+", t)) > sum(r[k] is not None for k in FIELDS) for t, r in flat]
    return {"loose_reward": statistics.mean(loose_fields(texts, **cols)),
            "exact_fields": statistics.mean(exact_fields(texts, **cols)),
            "passes": statistics.mean(passes(t, r) for t, r in flat),
            "extra_numbers": statistics.mean(extra),
            "not_one_record": 1 - statistics.mean(stops_after_record(texts))}


# ---------------------------------------------------------------- figures
def runs_figure(runs: dict[str, GRPORun]):
    """The logged curves of several runs on shared axes, one panel per quantity."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(GRPO_CURVES), figsize=(4 * len(GRPO_CURVES), 3.2))
    for label, run in runs.items():
        frame = run.curves()
        for ax, (key, title) in zip(axes, GRPO_CURVES.items()):
            if key in frame:
                ax.plot(frame.index, frame[key], "o-", ms=3, label=label)
            ax.set(xlabel="step", title=title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def scores_figure(table):
    """pass@1, pass@k, valid JSON and per-field accuracy per policy (rows of ``table``)."""

    cols = [c for c in table.columns if c.startswith("pass@")] + ["valid_json"] + [
        f"{k}_acc" for k in FIELDS]
    ax = table[cols].plot.bar(figsize=(9, 3.4), rot=0)
    ax.set(ylim=(0, 1.05), title="held-out answers: what passes the ticket system's check")
    ax.legend(fontsize=8, ncol=len(cols))
    ax.figure.tight_layout()
    return ax.figure
