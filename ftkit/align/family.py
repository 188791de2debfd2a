"""The preference-method family beside DPO, on the same pairs and budget (notebook 08).

DPO (paper §6.9) holds the policy to a frozen reference. The methods people use since differ
in the loss, in whether a reference is needed and in what data they take:

- ``dpo``: TRL ``DPOTrainer``, sigmoid loss on reference-relative log-probability margins,
  optionally with an NLL term on the chosen reply (``nll_weight``; TRL's ``"sft"`` loss beside
  ``"sigmoid"``), which keeps the chosen reply likely while the margin grows;
- ``ipo``: the same trainer with ``loss_type="ipo"``: a squared loss that pulls the margin to
  ``1/(2β)`` instead of pushing it ever higher (Azar et al.), so it cannot over-fit a pair;
- ``simpo``: TRL's CPO trainer with ``loss_type="simpo"`` and no SFT term: the margin of
  *length-averaged* log-probabilities above a target ``γ``, with **no reference model**
  (Meng et al.);
- ``orpo``: TRL's ORPO trainer: an SFT loss on the chosen reply plus a log-odds-ratio penalty,
  again **without a reference** (Hong et al.). Not the paper's §6.10, which is about pruning
  under a similar name;
- ``kto``: TRL ``KTOTrainer`` on *unpaired* replies labelled good or bad (each pair becomes
  two rows), a prospect-theory loss against a reference (Ethayarajh et al.).

Every method is one function with the same signature (β is DPO's, IPO's and KTO's tie to the
reference; SimPO's and ORPO's coefficients come in :class:`~ftkit.align.params.FamilySettings`)
and the same result,
:class:`PreferenceRun` (the trained policy, its cost and its log), so a notebook can run the
family in a loop and put them in one table (:func:`compare`). Reference-free methods train a
plain LoRA model; the KL to the base (the adapter switched off) is measured for all of them
afterwards the same way (``ftkit.align.dpo.token_kl``).
"""
from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ftkit import models
from ftkit.align.dpo import (
    LiveCurves,
    dpo_levers,
    with_completion_head,
    judge_policy,
    policy_row,
    require_rows,
    token_kl,
    trl_arguments,
)
from ftkit.core import env
from ftkit.align.params import FamilySettings
from ftkit.core.config import AdapterConfig, TrainConfig
from ftkit.data.preferences import dpo_dataset, kto_dataset
from ftkit.train import factory
from ftkit.train.adapters import apply_method
from ftkit.train.finetune import StepTimer
from ftkit.train.sft import unwrap

# What each method needs at training time (for the table; the tests check it).
NEEDS_REFERENCE = {"dpo": True, "ipo": True, "simpo": False, "orpo": False, "kto": True}
DATA_KIND = {"dpo": "pairs", "ipo": "pairs", "simpo": "pairs", "orpo": "pairs",
             "kto": "unpaired good/bad"}
# The factory path of each method's trainer (IPO is DPO's trainer with another loss).
PATH = {"dpo": "dpo", "ipo": "dpo", "simpo": "cpo", "orpo": "orpo", "kto": "kto"}
CURVES = {"dpo": {"loss": "DPO loss", "rewards/margins": "implicit-reward margin"},
          "ipo": {"loss": "IPO loss", "rewards/margins": "implicit-reward margin"},
          "simpo": {"loss": "SimPO loss", "rewards/margins": "reward margin (avg log-prob)"},
          "orpo": {"loss": "ORPO loss", "log_odds_ratio": "log odds ratio (chosen vs rejected)"},
          "kto": {"loss": "KTO loss", "rewards/margins": "implicit-reward margin"}}


DEFAULTS = FamilySettings()
# Logged steps at the end of a run that its chosen_reward averages (one step's batch is noisy).
REWARD_TAIL = 4


@dataclass
class PreferenceRun:
    """One trained policy of the family: its method, the model, what it cost, its log."""
    method: str
    model: object
    cost: dict
    logs: list[dict] = field(default_factory=list)


def _train(method: str, trainer_cls, config_cls, data, model_name: str, adapter: AdapterConfig,
           train: TrainConfig, output_dir: str, seed: int, max_length: int,
           batch_size: int | None = None, **specific) -> PreferenceRun:
    """Fresh model + LoRA → ``trainer_cls`` through the factory → train, timed and measured."""
    env.seed_everything(seed)
    model, tokenizer = models.load(model_name)
    model = apply_method(model, adapter)
    args = trl_arguments(config_cls, train, output_dir, seed, max_length, **specific)
    if batch_size:
        args.per_device_train_batch_size = batch_size
    levers = dpo_levers(args, len(data), model) if PATH[method] == "dpo" else None
    curves, timer = LiveCurves(CURVES[method], method.upper(), every=1), StepTimer()
    trainer = factory.build(trainer_cls, model, args, path=PATH[method], plot=curves,
                            callbacks=[timer], levers=levers, train_dataset=data,
                            processing_class=tokenizer)
    if levers is not None:
        with_completion_head(trainer)
    with env.MemoryTracker() as mem:
        result = trainer.train()
    logs = [h for h in trainer.state.log_history if "loss" in h]
    tail = [h["rewards/chosen"] for h in logs[-REWARD_TAIL:] if "rewards/chosen" in h]
    cost = {"seconds_per_step": timer.median,
            "train_seconds": result.metrics["train_runtime"], "peak_memory_mb": mem.delta_mb,
            "final_loss": logs[-1]["loss"] if logs else float("nan"),
            # DPO, IPO, KTO: β·log(π/π_ref) of the chosen replies over the last logged steps,
            # < 0 when training made them less likely than the reference does (SimPO and ORPO
            # log a reward of their own, without a reference)
            "chosen_reward": sum(tail) / len(tail) if tail else float("nan"),
            "needs_reference": NEEDS_REFERENCE[method]}
    model = unwrap(trainer).eval()
    model.config.use_cache = True
    return PreferenceRun(method, model, cost, logs)


def train_dpo(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
              output_dir: str, beta: float = 0.1, settings: FamilySettings = DEFAULTS,
              seed: int = 42, max_length: int = 256, nll_weight: float = 0.0) -> PreferenceRun:
    """DPO (sigmoid loss) with ``beta``; the reference is the adapter switched off.
    ``nll_weight`` > 0 adds that times the chosen replies' mean token NLL to the loss."""
    from trl import DPOConfig, DPOTrainer

    loss = (dict(loss_type=["sigmoid", "sft"], loss_weights=[1.0, nll_weight])
            if nll_weight > 0 else {})
    return _train("dpo", DPOTrainer, DPOConfig, dpo_dataset(require_rows(rows, train)),
                  model_name, adapter, train, output_dir, seed, max_length, beta=beta, **loss)


def train_ipo(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
              output_dir: str, beta: float = 0.1, settings: FamilySettings = DEFAULTS,
              seed: int = 42, max_length: int = 256) -> PreferenceRun:
    """IPO: DPO's trainer with ``loss_type="ipo"`` (β is its regulariser τ)."""
    from trl import DPOConfig, DPOTrainer

    return _train("ipo", DPOTrainer, DPOConfig, dpo_dataset(require_rows(rows, train)),
                  model_name, adapter, train, output_dir, seed, max_length,
                  beta=beta, loss_type=["ipo"])


def train_simpo(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
                output_dir: str, beta: float = 0.1, settings: FamilySettings = DEFAULTS,
                seed: int = 42, max_length: int = 256) -> PreferenceRun:
    """SimPO: TRL's CPO trainer, ``loss_type="simpo"``, ``cpo_alpha=0`` (no SFT term); no
    reference model."""
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    return _train("simpo", CPOTrainer, CPOConfig, dpo_dataset(require_rows(rows, train)),
                  model_name, adapter, train, output_dir, seed, max_length,
                  beta=settings.simpo_beta, simpo_gamma=settings.simpo_gamma,
                  loss_type="simpo", cpo_alpha=0.0, remove_unused_columns=False)


def train_orpo(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
               output_dir: str, beta: float = 0.1, settings: FamilySettings = DEFAULTS,
               seed: int = 42, max_length: int = 256) -> PreferenceRun:
    """ORPO: SFT on the chosen reply plus λ times the odds-ratio term; no reference model."""
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return _train("orpo", ORPOTrainer, ORPOConfig, dpo_dataset(require_rows(rows, train)),
                  model_name, adapter, train, output_dir, seed, max_length,
                  beta=settings.orpo_lambda, remove_unused_columns=False)


def train_kto(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
              output_dir: str, beta: float = 0.1, settings: FamilySettings = DEFAULTS,
              seed: int = 42, max_length: int = 256) -> PreferenceRun:
    """KTO on the pairs split into unpaired good and bad replies, shuffled once with ``seed``
    (TRL reads them in order to build its KL batches). A step takes twice as many rows as a
    pair method's step takes pairs: the same number of replies per step."""
    from trl import KTOConfig, KTOTrainer

    data = kto_dataset(require_rows(rows, train), random.Random(seed))
    return _train("kto", KTOTrainer, KTOConfig, data, model_name, adapter, train, output_dir,
                  seed, max_length, batch_size=2 * train.batch_size, beta=beta)


METHODS: dict[str, Callable[..., PreferenceRun]] = {
    "dpo": train_dpo, "ipo": train_ipo, "simpo": train_simpo, "orpo": train_orpo,
    "kto": train_kto}


def measure(run: PreferenceRun, tokenizer, test_rows: list[dict], ref_judged: list[dict],
            max_new_tokens: int, gen_batch_size: int, progress=None) -> tuple[dict, list[str]]:
    """A trained policy's greedy replies to the held-out prompts, judged against the reference,
    with its KL to the base and its training cost: ``(table row, replies)``."""
    answers, judged = judge_policy(run.model, tokenizer, test_rows, max_new_tokens,
                                   gen_batch_size, progress)
    kl = token_kl(run.model, tokenizer, [r["prompt"] for r in test_rows], answers,
                  gen_batch_size)
    return {**policy_row(judged, ref_judged, kl), **run.cost}, answers


def compare(methods: list[str], rows, model_name: str, adapter: AdapterConfig,
            train: TrainConfig, beta: float, settings: FamilySettings, tokenizer,
            test_rows: list[dict], ref_judged: list[dict], max_new_tokens: int,
            gen_batch_size: int, output_dir: str,
            seed: int = 42, max_length: int = 256, progress=None, done: dict | None = None
            ) -> tuple[list[dict], dict[str, list[str]]]:
    """Train each method on the same pairs and budget; judge each on the held-out prompts
    against the reference, with its KL to the base. Returns ``(rows, replies by method)``.

    ``done`` maps a method to a row already measured (e.g. DPO from the β sweep at the same
    β), which is then reused rather than trained again.
    """
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise ValueError(f"unknown preference method(s) {unknown}; choose from {list(METHODS)}")
    table, replies = [], {}
    for method in methods:
        if done and method in done:
            row, answers = done[method]
            table.append({"method": method, **row})
            replies[method] = answers
            continue
        run = METHODS[method](rows, model_name, adapter, train, f"{output_dir}/{method}", beta,
                              settings, seed, max_length)
        row, replies[method] = measure(run, tokenizer, test_rows, ref_judged, max_new_tokens,
                                       gen_batch_size, progress)
        table.append({"method": method, **row, "data": DATA_KIND[method]})
        del run
    return table, replies


def beta_sweep(rows, model_name: str, adapter: AdapterConfig, train: TrainConfig,
               betas: list[float], tokenizer, test_rows: list[dict], ref_judged: list[dict],
               max_new_tokens: int, gen_batch_size: int, output_dir: str, seed: int = 42,
               max_length: int = 256, progress=None, nll_weight: float = 0.0
               ) -> tuple[list[dict], dict[float, list[str]]]:
    """DPO at each β on the same pairs (with ``nll_weight``, :func:`train_dpo`); each policy
    judged on the held-out prompts with its KL to the reference (paper §6.9.2). Returns
    ``(rows, replies by β)``."""
    out, replies = [], {}
    for b in sorted(betas):
        run = train_dpo(rows, model_name, adapter, train, f"{output_dir}/beta_{b:g}", b,
                        seed=seed, max_length=max_length, nll_weight=nll_weight)
        row, replies[b] = measure(run, tokenizer, test_rows, ref_judged, max_new_tokens,
                                  gen_batch_size, progress)
        out.append({"beta": b, **row})
        del run
    return out, replies


def plot_family(table):
    """Win rate against time per step (a point per method, filled when it needs a reference),
    and correctness and compliance per method."""
    import matplotlib.pyplot as plt

    fig, (ax, bars) = plt.subplots(1, 2, figsize=(11, 3.6))
    for method, row in table.iterrows():
        ax.scatter(row.seconds_per_step, row.win_rate, s=60,
                   facecolors="C0" if row.needs_reference else "none", edgecolors="C0")
        ax.annotate(method, (row.seconds_per_step, row.win_rate), fontsize=9,
                    textcoords="offset points", xytext=(5, 4))
    ax.axhline(0.5, color="gray", ls="--")
    ax.set(xlabel="seconds per training step", ylabel="held-out win rate vs reference",
           title="what each method buys, and what a step costs\n(filled: needs a reference)")
    x = range(len(table))
    bars.bar([i - 0.2 for i in x], table.correct, width=0.4, label="correct")
    bars.bar([i + 0.2 for i in x], table.compliant, width=0.4, label="compliant")
    bars.set_xticks(list(x), list(table.index))
    bars.set(ylim=(0, 1), title="what moved: correctness and length")
    bars.legend(fontsize=8)
    fig.tight_layout()
    return fig
