"""Direct Preference Optimisation: the loss written out, TRL's DPOTrainer, and the measurements
around it (§6.9).

DPO turns preference pairs into a classification loss on the policy's log-probability ratios
to a frozen reference (paper §6.9; Rafailov et al.):

    loss = -log σ(β · [(log π(y_w|x) - log π_ref(y_w|x))
                       - (log π(y_l|x) - log π_ref(y_l|x))])

:func:`dpo_loss` writes that equation out for reading (a test pins it to a hand-computed
value); training itself runs through TRL's ``DPOTrainer`` (:func:`make_dpo_trainer`), with LoRA
so that the reference is the same network with its adapter switched off. β sets how strongly
the policy is held to the reference (§6.9.2 recommends sweeping it). :class:`LiveCurves`
plots the loss and the implicit-reward margin while training runs; :func:`token_kl` measures
how far a trained policy moved from its reference on held-out prompts.

The training functions of DPO and of the methods since (IPO, SimPO, ORPO, KTO) live in
:mod:`ftkit.align.family`. Used in notebooks/08_dpo_alignment.ipynb and
notebooks/09_rlhf_reward_and_ppo.ipynb.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F
from transformers import TrainerCallback

from ftkit.core.config import ConfigError, TrainConfig
from ftkit.core.env import headless, use_bf16
from ftkit.evaluate.judge import judge_rows, summary, win_rate
from ftkit.models.generation import chat_batch
from ftkit.train import factory
from ftkit.train.adapters import require_peft
from ftkit.train.callbacks import show_in_place
from ftkit.train.sft import report_targets
from ftkit.train.speed import completion_head
from ftkit.train.speed.packing import use_packed_attention
from ftkit.train.speed.layer import Levers


def choose_threads(requested: int = 0) -> int:
    """Set torch's CPU threads and return the number used.

    ``0`` picks one thread when the 1-minute load average is at least the number of cores,
    otherwise keeps torch's default. Measured on a shared 2-core machine under load ~8: a
    LoRA step of SmolLM2 took 5 s with one thread and 47-75 s with two, because the second
    thread's work waits for a core that other processes hold.
    """

    if requested == 0:
        busy = os.getloadavg()[0] >= (os.cpu_count() or 1)
        requested = 1 if busy else torch.get_num_threads()
    torch.set_num_threads(requested)
    return requested


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float):
    """The DPO (sigmoid) loss and the implicit rewards, from summed sequence log-probs ``(B,)``.

    Returns ``(loss, chosen_rewards, rejected_rewards)``; an implicit reward is
    ``β · (log π(y|x) - log π_ref(y|x))`` and their difference is the logged margin.
    """
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen_rewards - rejected_rewards).mean()
    return loss, chosen_rewards, rejected_rewards


class LiveCurves(TrainerCallback):
    """Live plot of named logged values, one panel each (e.g. loss and reward margin).

    Works as a Trainer callback (collects ``keys`` from each log) and in a hand-written loop
    (call :meth:`add`, then :meth:`finish`). Headless runs draw once, at the end.
    """

    def __init__(self, keys: dict[str, str], title: str = "training", every: int = 5):
        self.keys, self.title, self.every = keys, title, every
        self.points: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
        self.handle, self._n, self.started = None, 0, time.perf_counter()

    def add(self, step: int, values: dict[str, float], total: int | str = "?") -> None:
        """Record the ``keys`` found in ``values``; every ``every`` calls print one line and
        (interactively) redraw."""
        for k in self.keys:
            if k in values:
                self.points[k].append((step, float(values[k])))
        self._n += 1
        if self._n % self.every == 0:
            shown = " | ".join(f"{k} {values[k]:.3f}" for k in self.keys if k in values)
            print(f"step {step}/{total} | {shown} | {time.perf_counter() - self.started:.0f} s",
                  flush=True)
            if not headless():
                self.draw()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and any(k in logs for k in self.keys):
            self.add(state.global_step, logs, state.max_steps)

    def on_train_end(self, args, state, control, **kwargs):
        self.finish()

    def finish(self) -> None:
        self.draw()

    def figure(self):
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, len(self.keys), figsize=(4 * len(self.keys), 3),
                                 squeeze=False)
        for ax, (key, label) in zip(axes[0], self.keys.items()):
            if self.points[key]:
                ax.plot(*zip(*self.points[key]), "o-", ms=3)
            ax.set(xlabel="step", title=label)
        fig.suptitle(self.title)
        fig.tight_layout()
        return fig

    def draw(self) -> None:
        self.handle = show_in_place(self.figure(), self.handle)


DPO_CURVES = {"loss": "DPO loss", "rewards/margins": "implicit-reward margin (chosen - rejected)",
              "rewards/accuracies": "pairs ranked right"}


def trl_arguments(config_cls: type, train: TrainConfig, output_dir: str, seed: int = 42,
                  max_length: int = 256, **specific: Any):
    """A TRL preference config (``DPOConfig``, ``CPOConfig``, ``ORPOConfig``, ``KTOConfig``)
    from ftkit's TrainConfig; the method's own fields (``beta``, ``loss_type`` ...) in
    ``specific`` win.

    TRL defaults that do not suit a CPU are replaced: bf16 only where it runs (and
    ``use_cpu`` without a GPU, else TRL refuses), no gradient checkpointing (LoRA on a 135M
    model fits easily; recomputation would cost ~30 % more time), no checkpoints.
    """
    args = dict(
        output_dir=output_dir, seed=seed, learning_rate=train.lr,
        max_steps=train.max_steps or -1, num_train_epochs=train.num_epochs,
        per_device_train_batch_size=train.batch_size, per_device_eval_batch_size=train.batch_size,
        gradient_accumulation_steps=train.grad_accum, warmup_steps=train.warmup_ratio,
        lr_scheduler_type=train.lr_scheduler, max_grad_norm=train.max_grad_norm,
        weight_decay=train.weight_decay, bf16=use_bf16(train.bf16),
        use_cpu=not torch.cuda.is_available(), gradient_checkpointing=False,
        logging_steps=1, save_strategy="no", eval_strategy="no",
        report_to=report_targets(train),
        max_length=max_length, disable_tqdm=headless(), dataloader_num_workers=0)
    return config_cls(**{**args, **specific})


def dpo_arguments(train: TrainConfig, beta: float, output_dir: str, seed: int = 42,
                  max_length: int = 256, **overrides: Any):
    """TRL ``DPOConfig`` from ftkit's TrainConfig (:func:`trl_arguments`); ``overrides`` win."""
    from trl import DPOConfig

    return trl_arguments(DPOConfig, train, output_dir, seed, max_length,
                         **{"beta": beta, **overrides})


def reference_once(args, rows: int, wanted: bool = True) -> bool:
    """Whether a DPO run computes its reference log-probabilities once, before training
    (TRL's ``precompute_ref_log_probs``; a speed lever of ``ftkit.train.speed.layer``).

    The reference (the adapter switched off) is frozen, so its log-probabilities of each pair
    never change; computed on the fly they cost one more forward pass per pair and step.
    Computed once they cost one forward pass per pair of the data set, whether the run reads
    it or not, so the lever is on only when ``wanted`` and the run reads every pair at least
    once (``max_steps`` × batch × accumulation ≥ ``rows``, or one epoch or more).
    """
    if not wanted:
        return False
    per_step = args.per_device_train_batch_size * args.gradient_accumulation_steps
    seen = args.max_steps * per_step if args.max_steps > 0 else args.num_train_epochs * rows
    return seen >= rows


def require_rows(rows, train: TrainConfig):
    """``rows`` when one training batch fits in them, else a ConfigError saying so."""
    if len(rows) < train.batch_size:
        raise ConfigError(f"TrainConfig.batch_size = {train.batch_size} is larger than the "
                          f"preference set ({len(rows)} pairs)")
    return rows


def make_dpo_trainer(model, tokenizer, train_ds, train: TrainConfig, beta: float,
                     output_dir: str, seed: int = 42, title: str = "DPO",
                     max_length: int = 256, levers: Levers | None = None, **overrides: Any):
    """A TRL DPOTrainer over a peft ``model`` (its reference: the adapter switched off).

    ``levers``: the speed layer's (default all on), with DPO's own three: ``reference_once``
    computes the reference log-probabilities once where that pays (:func:`reference_once`),
    ``completion_logits`` sends only completion positions through the vocabulary head
    (``ftkit.train.speed.completion_head``), ``packing`` runs the pairs padding-free.
    """
    from trl import DPOTrainer

    require_peft(model, "make_dpo_trainer")
    require_rows(train_ds, train)
    args = dpo_arguments(train, beta, output_dir, seed, max_length, **overrides)
    levers = dpo_levers(args, len(train_ds), model, levers)
    curves = LiveCurves(DPO_CURVES, title, every=1)  # prints one compact line per step
    return with_completion_head(factory.build(
        DPOTrainer, model, args, path="dpo", plot=curves, levers=levers,
        train_dataset=train_ds, processing_class=tokenizer))


def dpo_levers(args, rows: int, model, levers: Levers | None = None) -> Levers:
    """``levers`` (default all on) with DPO's own decided for this run: ``reference_once``
    (``args.precompute_ref_log_probs`` set to match), ``completion_logits`` (where the
    model's head is one the compact path reproduces) and ``packing`` (padding-free pairs,
    inside the compact path, where the model takes ``ftkit.train.speed.packing``'s attention;
    that attention defers to SDPA outside training batches, so generation is unchanged)."""
    levers = Levers() if levers is None else levers
    once = reference_once(args, rows, levers.reference_once is not False)
    args.precompute_ref_log_probs = once
    compact = levers.completion_logits is not False and completion_head.supported(
        _causal_lm(model))
    packed = compact and levers.packing is not False and use_packed_attention(_causal_lm(model))
    return levers.replace(reference_once=once, completion_logits=compact, packing=packed)


def _causal_lm(model):
    """The causal LM itself: inside a peft wrapper, its base model."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def with_completion_head(trainer):
    """``trainer`` with its model's fused head switched to completion positions when its
    levers ask (after TRL has installed the fused forward in the trainer's constructor)."""
    if trainer.ftkit_levers.completion_logits:
        outputs = ("entropy", "mean_logits", "is_top1") + (
            ("log_sum_sq_probs",) if getattr(trainer, "use_weighting", False) else ())
        completion_head.use_completion_head(_causal_lm(trainer.model), outputs,
                                            packed=bool(trainer.ftkit_levers.packing))
    return trainer


def reply_batch(tokenizer, prompts: list, replies: list[str]) -> tuple[dict, torch.Tensor]:
    """Chat-formatted prompt + reply token ids, right-padded, and the reply-token mask ``(B, T)``.

    A prompt is a user turn (a string) or a whole conversation (a list of messages).
    The reply ends with the end-of-turn token, as a generated reply does.
    """
    ids, masks = [], []
    for p, r in zip(prompts, replies):
        messages = p if isinstance(p, list) else [{"role": "user", "content": p}]
        prompt = tokenizer.apply_chat_template(messages, tokenize=False,
                                               add_generation_prompt=True)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        r_ids = tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        ids.append(p_ids + r_ids)
        masks.append([0] * len(p_ids) + [1] * len(r_ids))
    width = max(map(len, ids))
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    reply_mask = torch.tensor([m + [0] * (width - len(m)) for m in masks])
    return {"input_ids": input_ids, "attention_mask": attention}, reply_mask


@torch.inference_mode()
def token_kl(model, tokenizer, prompts: list[str], replies: list[str],
             batch_size: int = 16) -> list[float]:
    """KL(π ‖ π_ref) summed over the tokens of each reply, per prompt (nats).

    At every reply position the full next-token distributions of the policy and of the
    reference (the same peft model with its adapter disabled) are compared exactly; evaluated
    on the policy's own (greedy) replies, this is the divergence along the path it takes.
    """
    out: list[float] = []
    for i in range(0, len(prompts), batch_size):
        batch, mask = reply_batch(tokenizer, prompts[i:i + batch_size], replies[i:i + batch_size])
        batch, mask = {k: v.to(model.device) for k, v in batch.items()}, mask.to(model.device)
        logp = F.log_softmax(model(**batch).logits[:, :-1].float(), -1)  # (B, T-1, V)
        with model.disable_adapter():
            logq = F.log_softmax(model(**batch).logits[:, :-1].float(), -1)
        kl = (logp.exp() * (logp - logq)).sum(-1)  # (B, T-1): KL at each next-token choice
        out += (kl * mask[:, 1:]).sum(-1).tolist()
    return out


def judge_policy(model, tokenizer, rows: list[dict], max_new_tokens: int = 16,
                 batch_size: int = 16, progress=None) -> tuple[list[str], list[dict]]:
    """Greedy replies of ``model`` to the rows' prompts and the judge's verdict on each."""
    model.eval()
    replies = chat_batch(model, tokenizer, [r["prompt"] for r in rows], max_new_tokens,
                         batch_size, progress)
    return replies, judge_rows(replies, rows)


def policy_row(judged: list[dict], ref_judged: list[dict] | None, kl: list[float]) -> dict:
    """Win rate against the reference, judge summary and mean KL, for a results table.

    ``ref_judged=None`` means the row *is* the reference: its win rate is not a measurement
    (NaN, not the 0.5 of a policy tied with itself).
    """

    rate = float("nan") if ref_judged is None else win_rate(
        [j["score"] for j in judged], [j["score"] for j in ref_judged])
    return {"win_rate": rate, **summary(judged), "kl_to_ref": statistics.mean(kl) if kl else 0.0}


def plot_sweep(table, reference_words: float):
    """Win rate, KL to the reference and reply length against β, and the trade-off itself:
    win rate against KL, one point per β (four panels)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 3.4))
    panels = {"win_rate": "win rate vs reference", "kl_to_ref": "KL to reference (nats/reply)",
              "mean_words": "words per reply"}
    for ax, (col, title) in zip(axes, panels.items()):
        ax.plot(table.index, table[col], "o-")
        ax.set(xscale="log", xlabel="β", title=title)
    axes[0].axhline(0.5, color="gray", ls="--", label="no better than reference")
    axes[2].axhline(reference_words, color="gray", ls="--", label="reference")
    trade = axes[3]
    trade.plot(table.kl_to_ref, table.win_rate, "o-", color="C1")
    for beta, row in table.iterrows():
        trade.annotate(f"β={beta:g}", (row.kl_to_ref, row.win_rate), fontsize=8,
                       textcoords="offset points", xytext=(4, 4))
    trade.axhline(0.5, color="gray", ls="--")
    trade.set(xlabel="KL to reference (nats/reply)", ylabel="win rate",
              title="what each β buys: win rate against KL")
    for ax in (axes[0], axes[2]):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
