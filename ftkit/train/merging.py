"""Mix several LoRA adapters into one new adapter with peft's add_weighted_adapter (paper §6.3.5).

The survey's §6.3.5 (fine-tuning with multiple adapters) trains one adapter per task and then
mixes them. ``merge(peft_model, ["a", "b"], [0.7, 0.3], "cat")`` checks the request, builds the
mixed adapter, makes it active and returns what happened (name, rank, seconds).
:func:`check_mergeable` refuses, before any compute, the requests peft would reject with a
terse error *and* those it would carry out silently wrong:

* DoRA adapters: ``add_weighted_adapter`` combines only ``lora_A``/``lora_B``; the DoRA
  magnitude vectors of the sources are never read. A merged adapter whose config comes from a
  DoRA adapter gets a fresh magnitude (the base weight's row norms, computed while its
  ``lora_B`` is still zero); one that comes from a plain adapter drops DoRA altogether.
* rsLoRA adapters: the merged adapter copies the first adapter's config with
  ``lora_alpha = r``; the source scalings are folded into its A/B weights on the assumption
  that its own scaling is ``alpha / r = 1``. With ``use_rslora`` inherited its scaling is
  ``alpha / sqrt(r) = sqrt(r)``, so the merged update is ``sqrt(r)`` times too large, for
  every combination (also ``linear``, which keeps the rank). Only the first adapter's flag
  matters, but ftkit refuses rsLoRA anywhere so that the list order never decides.
* other LoRA variants (aLoRA, …), ``lora_bias=True`` and non-LoRA adapters (IA³, …), for the
  same reason as DoRA: only the ``lora_A``/``lora_B`` weights are combined.

peft's ``linear`` is not a weighted sum of the updates ``ΔW_i = s_i B_i A_i``: it weights
``A_i`` and ``B_i`` by ``sqrt(|w_i s_i|)`` each (the sign goes on ``A_i``), so for positive
weights the result ``(Σ √(w_i s_i) B_i)(Σ √(w_j s_j) A_j)`` has cross terms ``B_i A_j``.
``cat``, and ``svd`` with ``svd_rank`` ≥ the sum of the ranks, give the exact ``Σ w_i ΔW_i``.

Used in notebooks/07_adapter_merging.ipynb.
"""
from __future__ import annotations

import gc
import math
import numbers
import time
from dataclasses import replace
from typing import Any, Sequence

from torch import nn

from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data import instruct
from ftkit.train import finetune
from ftkit.train.params import COMBINATIONS

EQUAL_RANK = frozenset({"linear", "ties", "dare_linear", "dare_ties", "magnitude_prune"})
"""Combinations that mix the A and B matrices entry by entry, so all ranks must be equal."""

NEEDS_DENSITY = frozenset({"ties", "dare_linear", "dare_ties", "magnitude_prune", "ties_svd",
                           "dare_linear_svd", "dare_ties_svd", "magnitude_prune_svd"})
"""Combinations that prune: they need ``density`` in (0, 1], the share of entries kept."""

SVD = frozenset(c for c in COMBINATIONS if c.endswith("svd"))
"""Combinations that end in an SVD: the only ones that take ``svd_rank``."""

DEFAULT_DENSITY = 0.5


def _fail(msg: str) -> None:
    raise ConfigError(msg)


def adapter_rank(peft_model: Any, adapter: str) -> int:
    """The rank peft allocates for ``adapter``: its ``r``, or the largest ``rank_pattern`` one."""
    cfg = peft_model.peft_config[adapter]
    return max(cfg.r, *cfg.rank_pattern.values()) if cfg.rank_pattern else cfg.r


def _check_model(peft_model: Any) -> None:
    if not isinstance(getattr(peft_model, "peft_config", None), dict):
        _fail(f"merge needs a peft model (peft.get_peft_model(...)), got "
              f"{type(peft_model).__name__}")


def _check_names(peft_model: Any, adapters: Sequence[str], combination: str) -> None:
    loaded = list(peft_model.peft_config)
    unknown = [a for a in adapters if a not in loaded]
    if unknown:
        _fail(f"adapters {unknown} are not loaded; the model has {loaded}")
    if len(set(adapters)) != len(adapters):
        _fail(f"adapters = {list(adapters)} names an adapter twice; name each once")
    if len(adapters) < 2 and not (len(adapters) == 1 and combination == "linear"):
        _fail(f"combination {combination!r} needs at least 2 adapters, got {list(adapters)} "
              "(one adapter can only be rescaled with 'linear'; peft would silently switch to it)")


def _check_weights(adapters: Sequence[str], weights: Sequence[float]) -> None:
    if len(weights) != len(adapters):
        _fail(f"weights = {list(weights)} has {len(weights)} values for {len(adapters)} "
              f"adapters {list(adapters)}; give one weight per adapter")
    bad = [w for w in weights if not isinstance(w, numbers.Real) or not math.isfinite(w)]
    if bad:
        _fail(f"weights = {list(weights)}: {bad} are not finite numbers")


def _lora_layers(peft_model: Any) -> list[nn.Module]:
    return [m for m in peft_model.modules()
            if isinstance(getattr(m, "lora_A", None), nn.ModuleDict)]


def _check_config(adapter: str, cfg: Any) -> None:
    kind = str(getattr(cfg.peft_type, "value", cfg.peft_type))
    if kind != "LORA":
        _fail(f"adapter {adapter!r} is {kind}, not LoRA: merge combines LoRA adapters only "
              "(add_weighted_adapter mixes lora_A/lora_B matrices)")
    if cfg.use_dora:
        _fail(f"adapter {adapter!r} is DoRA (use_dora=True): peft's add_weighted_adapter combines "
              "only lora_A/lora_B and never reads the DoRA magnitude vectors, so the merged "
              "adapter would get a fresh magnitude from the base weight (or none at all) and be "
              "silently wrong; merge plain LoRA adapters")
    if cfg.use_rslora:
        _fail(f"adapter {adapter!r} is rsLoRA (use_rslora=True): the merged adapter copies the "
              "first adapter's config with lora_alpha = r and expects scaling alpha/r = 1, but "
              "with use_rslora its scaling is alpha/sqrt(r) = sqrt(r), so the merged update "
              "would be sqrt(r) times too large; merge adapters trained without rsLoRA")
    if cfg.lora_bias:
        _fail(f"adapter {adapter!r} has lora_bias=True: add_weighted_adapter combines only the "
              "lora_A/lora_B weights and drops the lora_B biases")
    if getattr(cfg, "target_parameters", None):
        _fail(f"adapter {adapter!r} targets parameters {cfg.target_parameters}: "
              "add_weighted_adapter merges adapters on modules only")


def _check_variants(peft_model: Any, adapters: Sequence[str]) -> None:
    """Refuse LoRA variants (aLoRA, BD-LoRA, …): their extra state would not be merged."""
    for layer in _lora_layers(peft_model):
        for a in adapters:
            variant = getattr(layer, "lora_variant", {}).get(a)
            if variant is not None:
                _fail(f"adapter {a!r} uses the LoRA variant {type(variant).__name__}: "
                      "add_weighted_adapter combines only lora_A/lora_B, not the variant's state")


def _check_density(combination: str, density: float | None) -> None:
    if combination in NEEDS_DENSITY:
        if not isinstance(density, numbers.Real) or not 0 < density <= 1:
            _fail(f"density = {density!r}: {combination!r} prunes and needs a density in (0, 1], "
                  "the share of entries kept (e.g. 0.5)")
    elif density is not None:
        _fail(f"density = {density!r} has no effect on {combination!r}; only "
              f"{sorted(NEEDS_DENSITY)} use it (pass density=None)")


def _check_svd_rank(peft_model: Any, adapters: Sequence[str], combination: str,
                    svd_rank: int | None) -> None:
    if svd_rank is None:
        return
    if combination not in SVD:
        _fail(f"svd_rank = {svd_rank!r} has no effect on {combination!r}; only {sorted(SVD)} "
              "use it (pass svd_rank=None)")
    dims = [min(m.in_features, m.out_features) for m in _lora_layers(peft_model)
            if any(a in m.lora_A for a in adapters) and hasattr(m, "in_features")]
    limit = min(dims, default=svd_rank)
    if not isinstance(svd_rank, int) or not 1 <= svd_rank <= limit:
        _fail(f"svd_rank = {svd_rank!r}: must be an integer in [1, {limit}] (the smallest "
              "dimension of the adapted layers)")


def _check_ranks(peft_model: Any, adapters: Sequence[str], combination: str) -> None:
    ranks = {a: adapter_rank(peft_model, a) for a in adapters}
    if combination in EQUAL_RANK and len(set(ranks.values())) > 1:
        _fail(f"combination {combination!r} needs equal ranks, got {ranks}; use 'cat' or 'svd' "
              f"for different ranks (equal ranks needed by {sorted(EQUAL_RANK)})")


def _check_targets(peft_model: Any, adapters: Sequence[str]) -> None:
    kinds = {a: type(peft_model.peft_config[a].target_modules).__name__ for a in adapters}
    if len(set(kinds.values())) > 1:
        _fail(f"target_modules types differ {kinds}: peft cannot combine a regex string with a "
              "list of names; build the adapters with the same kind of target_modules")


def _check_modules_to_save(peft_model: Any, adapters: Sequence[str]) -> None:
    from peft.utils import ModulesToSaveWrapper

    for name, module in peft_model.named_modules():
        if isinstance(module, ModulesToSaveWrapper):
            owners = [a for a in adapters if a in module.modules_to_save]
            if len(owners) > 1:
                _fail(f"adapters {owners} each train a full copy of {name!r} (modules_to_save); "
                      "such copies cannot be merged")


def check_mergeable(peft_model: Any, adapters: list[str], weights: list[float],
                    combination: str, density: float | None, *, svd_rank: int | None = None,
                    name: str | None = None) -> None:
    """Raise :class:`ConfigError` if peft would refuse, or silently botch, this merge.

    Args:
        adapters: names of loaded LoRA adapters; at least 2 (1 only with ``"linear"``, which
            then just rescales it).
        weights: one finite weight per adapter (negative subtracts).
        combination: a key of :data:`COMBINATIONS`.
        density: share of entries kept, in (0, 1], for :data:`NEEDS_DENSITY`; else ``None``.
        svd_rank: rank of the result for :data:`SVD` combinations (default: largest rank).
        name: the new adapter's name; must not be loaded yet (peft would silently do nothing).
    """
    _check_model(peft_model)
    if combination not in COMBINATIONS:
        _fail(f"combination = {combination!r}: choose one of {list(COMBINATIONS)}")
    _check_names(peft_model, adapters, combination)
    _check_weights(adapters, weights)
    for a in adapters:
        _check_config(a, peft_model.peft_config[a])
    _check_variants(peft_model, adapters)
    _check_density(combination, density)
    _check_svd_rank(peft_model, adapters, combination, svd_rank)
    _check_ranks(peft_model, adapters, combination)
    _check_targets(peft_model, adapters)
    _check_modules_to_save(peft_model, adapters)
    if name is not None and name in peft_model.peft_config:
        _fail(f"name = {name!r} is already a loaded adapter ({list(peft_model.peft_config)}); "
              "peft would keep the old one and merge nothing — pick a new name")


def merge(peft_model: Any, adapters: list[str], weights: list[float], combination: str = "linear",
          name: str | None = None, density: float | None = None,
          svd_rank: int | None = None) -> dict:
    """Add the weighted mix of ``adapters`` as a new adapter, make it active, report it.

    Returns ``{"name", "combination", "weights", "seconds", "rank"}``; ``name`` defaults to
    ``"<combination>_<adapter>_<adapter>…"``.
    """
    name = name or "_".join([combination, *adapters])
    check_mergeable(peft_model, adapters, weights, combination, density, svd_rank=svd_rank,
                    name=name)
    start = time.perf_counter()
    peft_model.add_weighted_adapter(adapters=list(adapters), weights=list(weights),
                                    adapter_name=name, combination_type=combination,
                                    svd_rank=svd_rank, density=density)
    seconds = time.perf_counter() - start
    peft_model.set_adapter(name)
    return {"name": name, "combination": combination, "weights": list(weights),
            "seconds": seconds, "rank": peft_model.peft_config[name].r}


def mix_grid(adapters: list[str], combinations: list[str],
             weight_sets: list[list[float]], density: float = DEFAULT_DENSITY) -> list[dict]:
    """Every (combination, weights) pair to sweep, as ``merge`` keyword arguments.

    Each row is ``{"combination", "weights", "density"}`` with ``density`` set only for the
    pruning combinations, so ``merge(peft_model, adapters, **row)`` runs it.
    """
    unknown = [c for c in combinations if c not in COMBINATIONS]
    if unknown:
        _fail(f"combinations {unknown} are unknown; choose from {list(COMBINATIONS)}")
    for weights in weight_sets:
        _check_weights(adapters, weights)
    if not isinstance(density, numbers.Real) or not 0 < density <= 1:
        _fail(f"density = {density!r}: must be in (0, 1], the share of entries kept")
    return [{"combination": c, "weights": list(w),
             "density": density if c in NEEDS_DENSITY else None}
            for c in combinations for w in weight_sets]


def train_task_adapters(model_name: str, adapter: AdapterConfig, train: TrainConfig,
                        tasks: list[str], rows: list[dict], test_rows: list[dict], tokenizer,
                        n_train: int, max_length: int, output_dir: str,
                        seed: int = 42) -> dict[str, str]:
    """One LoRA adapter per task, each trained alone and saved in peft's format; returns the
    folder of each task's adapter (paper §6.3.5). Used in notebook 07."""
    folders = {}
    for task in tasks:
        train_ds = instruct.sft_dataset(tokenizer, instruct.select(rows, task, "train", n_train,
                                                                   seed), max_length)
        eval_ds = instruct.sft_dataset(tokenizer, [r for r in test_rows if r["task"] == task][:8],
                                       max_length)
        model, _ = finetune.train_method(model_name, replace(adapter, peft_method="lora"), train,
                                         train_ds, eval_ds, f"{output_dir}/{task}", seed,
                                         title=f"adapter [{task}]")
        folders[task] = f"{output_dir}/adapters/{task}"
        model.save_pretrained(folders[task])
        del model
        gc.collect()
    return folders
