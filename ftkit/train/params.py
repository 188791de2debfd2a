"""Parameter sections of the training stage (paper §5-6): the instruction-task experiment,
the rank sweep, adapter merging and the balancing comparison.

Light on purpose (no torch): notebook schemas, panels and the ``ftkit`` command read them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args, get_type_hints

from ftkit.core.config import AdapterConfig, Section, param

Method = get_type_hints(AdapterConfig)["peft_method"]
METHOD_NAMES = list(get_args(Method))


@dataclass(frozen=True)
class ExperimentConfig(Section):
    """The instruction-task experiment shared by notebooks 05-07 (paper §6.1-6.4)."""
    tasks_path: str = param("../data/instruct_tasks/tasks.jsonl",
                            "JSONL of task/instruction/response/split rows.")
    tasks: list[str] = param(["extract"], "Tasks to train and score on.")
    n_train: int = param(160, "Training examples per task.", min=1, max=100_000)
    n_test: int = param(48, "Test examples per task (scored by exact match).", min=1,
                        max=10_000)
    methods: list[Method] = param(["full", "half", "lora", "ia3"], "Methods to compare.")
    method_lrs: dict[str, float] = param(
        {"full": 2e-4, "half": 2e-4, "lora": 1e-3, "dora": 1e-3, "ia3": 5e-3},
        "Learning rate of each method.", min=0.0, min_exclusive=True, max=1.0)
    eval_batch_size: int = param(16, "Prompts generated at once when scoring.", min=1, max=512)

    def check(self) -> None:
        missing = [m for m in self.methods if m not in self.method_lrs]
        if missing:
            self.fail("method_lrs", f"gives no learning rate for {missing}")


@dataclass(frozen=True)
class SweepConfig(Section):
    """The LoRA/DoRA rank sweep of notebook 06 (paper §6.3.4)."""
    ranks: list[int] = param([2, 4, 8, 16], "Ranks r to sweep for LoRA and DoRA.", min=1,
                             max=1024)
    analysis_rank: int = param(8, "Rank whose weights enter the ΔM/ΔD analysis (one of ranks).",
                               min=1, max=1024)
    seeds: int = param(3, "Seeds at the lowest rank: LoRA and DoRA trained once per seed, so a "
                       "difference between them can be told from one run's noise.", min=1,
                       max=10)
    latency_rounds: int = param(50, "Forward passes per model when timing base, unmerged and "
                                "merged models in turns (median and quartiles shown).", min=5,
                                max=1000)

    def check(self) -> None:
        if len(set(self.ranks)) != len(self.ranks):
            self.fail("ranks", "name each rank once")
        if self.analysis_rank not in self.ranks:
            self.fail("analysis_rank", f"must be one of the swept ranks {self.ranks!r}")


COMBINATIONS: dict[str, str] = {
    "cat": "concatenate the A and B matrices: exact weighted sum of the updates, rank = sum",
    "linear": "weighted sum of the A and of the B matrices (√weight each): has cross terms",
    "svd": "weighted sum of the full updates, truncated back to svd_rank by SVD",
    "ties": "TIES on A and B: keep the top-density entries, elect signs, add the agreeing ones",
    "dare_linear": "DARE on A and B: drop entries at random (keep density), rescale, weighted sum",
    "dare_ties": "DARE on A and B: random drop and rescale, then TIES sign election",
    "magnitude_prune": "keep the top-density entries of each A and B by magnitude, weighted sum",
    "ties_svd": "TIES on the full updates, truncated to svd_rank by SVD",
    "dare_linear_svd": "DARE (linear) on the full updates, truncated to svd_rank by SVD",
    "dare_ties_svd": "DARE (TIES) on the full updates, truncated to svd_rank by SVD",
    "magnitude_prune_svd": "magnitude pruning on the full updates, truncated to svd_rank by SVD",
}
"""The combination types ftkit exposes (all that peft 0.21's ``add_weighted_adapter`` knows)."""
Combination = Literal[tuple(COMBINATIONS)]


@dataclass(frozen=True)
class MergeConfig(Section):
    """Which adapter mixes notebook 07 builds (paper §6.3.5)."""
    combinations: list[Combination] = param(["cat", "linear", "svd", "ties", "dare_ties"],
                                            "Combination types to build.")
    weight_sets: list[list[float]] = param([[1.0, 1.0], [0.5, 0.5]],
                                           "Weights per adapter, one list per mix.")
    density: float = param(0.5, "Share of entries kept by ties/dare/magnitude_prune.",
                           min=0.0, min_exclusive=True, max=1.0, step=0.05)

    def check(self) -> None:
        if len({len(w) for w in self.weight_sets}) != 1:
            self.fail("weight_sets", "every set needs one weight per adapter (same length)")


@dataclass(frozen=True)
class Recipe:
    """One balancing method: re-sampling, loss, batch sampler, and whether to bag an ensemble."""
    resample: str = "none"
    loss: str = "ce"
    sampler: str = "shuffle"
    ensemble: bool = False
    threshold: bool = False  # train as baseline, then move the decision threshold (validation)


RECIPES: dict[str, Recipe] = {
    "baseline": Recipe(), "oversample": Recipe(resample="oversample"),
    "undersample": Recipe(resample="undersample"), "smote": Recipe(resample="smote"),
    "class_weight": Recipe(loss="weighted"), "focal": Recipe(loss="focal"),
    "balanced_batches": Recipe(sampler="balanced"), "ensemble": Recipe(ensemble=True),
    "threshold": Recipe(threshold=True),
}
TEXT_RECIPES = ("baseline", "oversample", "undersample", "class_weight", "focal",
                "balanced_batches", "threshold")  # SMOTE needs vectors; an LLM ensemble is too slow
HeadRecipe = Literal[tuple(RECIPES)]
TextRecipe = Literal[TEXT_RECIPES]


@dataclass(frozen=True)
class BalanceConfig(Section):
    """Data and methods of the balancing comparison (paper §3.1.3, §3.5.3)."""
    csv_path: str = param("../data/tickets/tickets.csv", "CSV with a text and a label column.")
    encoder_name: str = param("minilm-l6", "Frozen sentence encoder for the embedding heads.")
    head_methods: list[HeadRecipe] = param(list(RECIPES), "Methods for the embedding heads.")
    head_epochs: int = param(30, "Epochs per embedding head.", min=1, max=1000)
    head_lr: float = param(3e-3, "AdamW learning rate of the embedding heads.", min=0.0,
                           min_exclusive=True, max=1.0, log=True)
    head_seeds: int = param(3, "Seeds averaged per embedding-head method.", min=1, max=20)
    focal_gamma: float = param(2.0, "Focal loss focusing strength γ (0 = cross-entropy).",
                               min=0.0, max=10.0, step=0.5)
    ensemble_size: int = param(5, "Members of the balanced-bagging ensemble.", min=1, max=50)
    minority_share: float = param(0.06, "A class below this share of rows is a minority.",
                                  min=0.0, min_exclusive=True, max=0.5, step=0.01)
    llm_methods: list[TextRecipe] = param(["baseline", "balanced_batches", "threshold"],
                                          "Methods for LoRA fine-tuning of model_name ([] skips "
                                          "it).", empty_ok=True)
    llm_steps: int = param(30, "Optimiser steps per LoRA fine-tuning run.", min=1, max=100000)

    def check(self) -> None:
        if "baseline" not in self.head_methods:
            self.fail("head_methods", "must include 'baseline', the reference for the others")


OPTIMISER_NAMES = ("gd", "sgd", "minibatch_sgd", "adagrad", "rmsprop", "adadelta", "adam",
                   "adamw")  # ftkit.train.optimisers.OPTIMISERS, without importing torch here
Optimiser = Literal[OPTIMISER_NAMES]
Schedule = Literal["constant", "linear", "cosine"]


@dataclass(frozen=True)
class TrainingSetupConfig(Section):
    """The training-setup runs of notebook 04 (paper §5.3-5.6): LoRA on the assistant's top
    layers over cached lower-layer states, optimisers, schedules, clipping, accumulation and
    precision."""
    top_layers: int = param(2, "Top decoder layers that carry the LoRA adapter; the layers "
                            "below run once per row and their states are cached.", min=1,
                            max=64)
    n_train_rows: int = param(24, "Support records trained on (those that fit max_length).",
                              min=1, max=10_000)
    n_eval_rows: int = param(12, "Held-out support records the eval loss is measured on.",
                             min=1, max=1_000)
    steps: int = param(12, "Optimiser steps of each comparison run.", min=1, max=10_000)
    batch_size: int = param(4, "Rows per optimiser step (gd takes all, sgd one).", min=1,
                            max=512)
    optimisers: list[Optimiser] = param(list(OPTIMISER_NAMES), "Optimisers to compare (§5.4).")
    optimiser_lrs: dict[str, list[float]] = param(
        {"gd": [0.1, 0.3], "sgd": [0.03, 0.1], "minibatch_sgd": [0.1, 0.3],
         "adagrad": [0.01, 0.03], "rmsprop": [3e-4, 1e-3, 3e-3], "adadelta": [1.0, 10.0],
         "adam": [1e-3, 3e-3, 1e-2], "adamw": [1e-3, 3e-3, 1e-2]},
        "Candidate learning rates of each optimiser; a short run at each picks its rate.",
        min=0.0, min_exclusive=True, max=100.0)
    sweep_steps: int = param(4, "Steps of each learning-rate sweep run.", min=1, max=1_000)
    schedules: list[Schedule] = param(["constant", "linear", "cosine"],
                                      "Learning-rate schedules to compare (§5.5).")
    warmups: list[float] = param([0.0, 0.25], "Warm-up shares tried with each schedule.",
                                 min=0.0, max=0.9)
    clip_optimiser: Optimiser = param("minibatch_sgd", "Optimiser of the clipping runs (plain "
                                      "SGD feels the gradient's size; Adam rescales it).")
    clip_lr: float = param(1.0, "Learning rate of the clipping runs: high, so that "
                           "gradients spike.", min=0.0, min_exclusive=True, max=100.0, log=True)
    clip_norm: float = param(0.3, "max_grad_norm of the clipped run.", min=0.0,
                             min_exclusive=True, max=100.0)
    accum_steps: int = param(4, "Micro-batches accumulated to make one batch of batch_size "
                             "rows (batch_size must divide by it).", min=2, max=64)
    precision_steps: int = param(1, "Steps of the fp32 and bf16 runs (bf16 is slow on CPUs "
                                 "without bf16 instructions).", min=1, max=1_000)

    def check(self) -> None:
        missing = [o for o in self.optimisers if not self.optimiser_lrs.get(o)]
        if missing:
            self.fail("optimiser_lrs", f"gives no candidate learning rates for {missing}")
        if self.batch_size % self.accum_steps:
            self.fail("accum_steps", f"must divide batch_size ({self.batch_size})")


Sampler = Literal["grid", "random", "tpe"]
Pruner = Literal["none", "median", "hyperband"]


@dataclass(frozen=True)
class SearchConfig(Section):
    """Hyperparameter search with Optuna (paper §5.3.1): samplers, budget, space, pruner,
    storage and workers."""
    samplers: list[Sampler] = param(["grid", "random", "tpe"], "Search strategies compared at "
                                    "an equal trial budget.")
    search_seeds: int = param(3, "Times each search is repeated with another seed.", min=1,
                              max=20)
    n_trials: int = param(8, "Trials per search (the budget).", min=1, max=10_000)
    trial_steps: int = param(6, "Optimiser steps of one trial.", min=1, max=10_000)
    eval_every: int = param(3, "Steps between a trial's evaluations (what a pruner sees).",
                            min=1, max=10_000)
    pruner: Pruner = param("median", "Pruner compared with no pruning (on random search).")
    search_space: dict[str, list[float]] = param(
        {"lr": [1e-4, 1e-2], "lora_r": [2, 16], "lora_alpha": [4.0, 64.0],
         "lora_dropout": [0.0, 0.3], "warmup_ratio": [0.0, 0.3]},
        "Searched parameters and their [low, high] ranges (lr, alpha and r log-scaled).")
    storage_url: str = param("", "Where studies live: empty = a journal file under "
                             "output_dir; a path ending .journal; or an RDB URL such as "
                             "sqlite:///studies.db or postgresql://host/db shared by a "
                             "cluster.", empty_ok=True)
    n_workers: int = param(1, "Worker processes per search, each running its share of the "
                           "trials against the same storage.", min=1, max=64)
    final_steps: int = param(24, "Steps of the full-length runs of the best trial's "
                             "parameters and of the defaults.", min=1, max=100_000)

    def check(self) -> None:
        for name, bounds in self.search_space.items():
            if len(bounds) != 2:
                self.fail("search_space", f"{name}: give [low, high], not {bounds}")
        if self.n_workers > self.n_trials:
            self.fail("n_workers", f"is larger than the trial budget n_trials = "
                      f"{self.n_trials}; a worker would have nothing to do")


@dataclass(frozen=True)
class MoEConfig(Section):
    """Sparse upcycling into a mixture of experts, and the Mixture of Agents built on it
    (notebook 10, paper §6.6-6.7)."""
    n_experts: int = param(4, "Experts per layer of the upcycled model.", min=2, max=64)
    top_k: int = param(2, "Experts each token is sent to.", min=1, max=64)
    aux_coef: float = param(0.02, "Weight of the router's load-balancing loss (Mixtral's "
                            "default 0.02) in the balanced run; the other run uses 0.",
                            min=0.0, max=10.0, step=0.01)
    router_std: float = param(0.02, "Standard deviation of the new routers' random weights.",
                              min=0.0, max=10.0, step=0.01)
    moe_steps: int = param(16, "Optimiser steps of each run (MoE with and without the "
                           "balancing loss, dense).", min=1, max=100_000)
    moe_lr: float = param(5e-4, "Learning rate of the MLP weights (experts, routers; the "
                          "dense model's MLPs).", min=0.0, min_exclusive=True, max=1.0,
                          log=True)
    moa_layers: int = param(1, "Mixture of Agents layers (2: the proposers answer again "
                            "after reading the first layer's answers).", min=1, max=4)
    n_boot: int = param(2000, "Bootstrap resamples for the MoA interval.", min=100,
                        max=100_000)

    def check(self) -> None:
        if self.top_k > self.n_experts:
            self.fail("top_k", f"each token can go to at most n_experts = {self.n_experts} "
                      "experts")


@dataclass(frozen=True)
class ScaleConfig(Section):
    """Data-parallel training measured on this machine, and the memory arithmetic of sharding
    (notebook 19, paper §5.2, §5.6)."""
    global_batch: int = param(8, "Examples per optimiser step, summed over processes (each "
                              "of N processes takes global_batch / N).", min=1, max=4096)
    scale_steps: int = param(8, "Optimiser steps of each launch.", min=2, max=10_000)
    scale_rows: int = param(64, "Training records of the assistant used (0: all).", min=0,
                            max=100_000)
    scale_lr: float = param(1e-3, "LoRA learning rate of every launch.", min=0.0,
                            min_exclusive=True, max=1.0, log=True)
    processes: int = param(2, "Processes of the data-parallel launch (compared with one).",
                           min=2, max=1024)
    launcher: Literal["torchrun", "accelerate"] = param(
        "torchrun", "How the processes start: torchrun (CPU and GPU) or accelerate launch "
        "(GPUs; on CPUs it needs mpirun).")
    allow_oversubscribe: bool = param(False, "Allow more processes than CPU cores (each then "
                                      "gets less than a core; for measuring that only).")
    loss_tol: float = param(1e-3, "Per-step loss gap always accepted between launches that "
                            "should train the same (more when a thread-count change alone "
                            "drifts further: three times that drift).", min=0.0,
                            min_exclusive=True, max=1.0, log=True)
    adapter_tol: float = param(0.05, "Relative difference of the trained adapters' weight "
                               "updates always accepted as the same training (more when a "
                               "thread-count change alone drifts further).", min=0.0,
                               min_exclusive=True, max=1.0, log=True)
    devices: int = param(8, "GPUs per node in the memory arithmetic.", min=1, max=1024)
    device_gb: float = param(80.0, "Memory of one GPU in the memory arithmetic (GB).",
                             min=1.0, max=1024.0)

    def check(self) -> None:
        if self.global_batch % self.processes:
            self.fail("global_batch", f"must split evenly over processes = {self.processes} "
                      "(per-process batch = global_batch / processes; the accumulation run "
                      "takes as many micro-batches of that size)")
