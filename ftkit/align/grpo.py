"""Reinforcement learning with verifiable rewards: GRPO through TRL (2024-25 practice).

The paper stops at PPO with a learned reward model (§6.8) and DPO (§6.9). Group Relative
Policy Optimisation (Shao et al., 2024, DeepSeekMath) drops PPO's value network: for each
prompt it samples a *group* of completions, scores each with a reward, and uses the reward's
distance from the group mean as every token's advantage (the original also divides by the
group's spread; :func:`grpo_arguments` says why ftkit does not).
With rewards that a program can check (valid JSON, the right field values, a length limit)
there is no reward model to train or to fool, only the rules, and those can have loopholes.

The task, its checks and the rewards (plain functions users can replace) are in
:mod:`ftkit.align.verifiable`; their names are re-exported here. Training runs through TRL's
``GRPOTrainer`` with LoRA; :func:`rollout_trainer_class` adds the kit's speed layer for it on
CPUs. Used in notebooks/18_grpo_verifiable_rewards.ipynb.
"""
from __future__ import annotations

import contextlib
import copy
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

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
from ftkit.train.speed.layer import Levers

from ftkit.align.dpo import LiveCurves, token_kl
from ftkit.align.params import GRPOSettings
from ftkit.align.verifiable import (  # noqa: F401  (re-exported for notebook 18)
    FIELDS,
    REWARDS,
    SYSTEM,
    Reward,
    RewardError,
    checked,
    exact_fields,
    field_hits,
    hacking_report,
    load_records,
    loose_fields,
    parse_record,
    passes,
    prompt_of,
    reward_table,
    rewards_by_name,
    stops_after_record,
    target_of,
    text_of,
    valid_json,
)

GRPO_CURVES = {"reward": "mean reward", "reward_std": "reward spread (std within groups)",
               "kl": "KL to the reference (per token)", "completions/mean_length":
               "completion length (tokens)"}


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
    from trl import GRPOTrainer

    class RolloutGRPOTrainer(GRPOTrainer):
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
            merge = merged_rollouts and not self.use_vllm
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


def grpo_arguments(settings: GRPOSettings, output_dir: str, seed: int = 42,
                   beta: float | None = None, **overrides: Any):
    """TRL ``GRPOConfig`` from the notebook's settings; ``overrides`` win.

    One optimiser step per generation batch: ``prompts_per_step`` prompts, ``group_size``
    completions each. Advantages are rewards minus their group's mean, not divided by the
    group's spread (``scale_rewards="none"``, as Dr. GRPO argues, Liu et al. 2025): with
    groups of four nearly equal rewards, dividing by a tiny spread turns a difference of one
    length-limit point into a full-size update. CPU-friendly defaults as for DPO (``use_cpu``,
    bf16 autocast only where the hardware runs bf16 natively and fp32 elsewhere, no gradient
    checkpointing, no checkpoints), a constant learning rate.
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
        use_cpu=not torch.cuda.is_available(), bf16=env.use_bf16(True),
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
    trainer_cls = rollout_trainer_class(completion_logits, merged_rollouts, shared_prompts)
    curves = LiveCurves(GRPO_CURVES, label, every=max(1, steps // 6))
    # no held bf16 copies: merging the adapter for rollouts rewrites the fp32 weights in place
    # (peft writes through .data, which a held copy's version check cannot see)
    levers = Levers(hold_frozen_bf16=False, completion_logits=completion_logits,
                    merged_rollouts=merged_rollouts, shared_prompts=shared_prompts)
    trainer = factory.build(trainer_cls, model, args, path="grpo", plot=curves, levers=levers,
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
    """Score a policy on held-out rows; with ``kl``, also ``kl_to_ref``: its KL to its
    reference (the same model with the adapter off: the cold start GRPO began from) along its
    own greedy answers, summed over each answer's tokens (nats). ``kl_to_ref`` is 0.0 for a
    model without an adapter (its own reference) and when ``kl`` is off (not measured: leave
    it out of tables)."""
    answers = sample_answers(model, tokenizer, rows, n, max_new_tokens, temperature,
                             progress=progress)
    row = score_answers(answers, rows, ks)
    if kl and hasattr(model, "disable_adapter"):
        greedy = [a[0] for a in answers]
        row["kl_to_ref"] = statistics.mean(token_kl(model, tokenizer,
                                                     [prompt_of(r) for r in rows], greedy))
    else:
        row["kl_to_ref"] = 0.0
    return row, answers


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
