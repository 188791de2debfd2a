"""Pruning a decoder's MLP weights, unstructured and structured (paper §6.10).

- :func:`magnitude_prune` zeroes the smallest-magnitude weights of every MLP projection
  (``torch.nn.utils.prune.l1_unstructured``, made permanent): the matrices keep their shape,
  so the model is as large and as slow as before unless a sparse kernel uses the zeros.
- :func:`prune_mlp_channels` removes whole intermediate channels of every MLP (a row of
  ``gate_proj`` and ``up_proj`` and the matching column of ``down_proj``), ranked by
  :func:`channel_importance`, a score measured on calibration text: the mean magnitude of the
  channel's activation times the norm of its ``down_proj`` column, i.e. how much the channel
  writes into the residual stream. The matrices shrink, so the model gets smaller and faster.
  The same fraction of channels goes in every layer, so the result is a plain checkpoint with
  a smaller ``intermediate_size``.

At the same fraction both remove the same number of MLP parameters, which is what
:func:`sparsity_sweep` compares: perplexity, size, non-zero weights and forward time.
:func:`prune_attention_groups` removes whole attention heads the same way: a key/value head and
the query heads that share it (one group of grouped-query attention), ranked by
:func:`group_importance`; :func:`measure` compares any set of variants side by side.
Used in notebooks/12_pruning_and_quantisation.ipynb.
"""
from __future__ import annotations

import copy

import pandas as pd
import torch
from torch import nn
from torch.nn.utils import prune

from ftkit.core.config import ConfigError
from ftkit.evaluate.perplexity import perplexity
from ftkit.models.footprint import count_parameters, serialized_mb
from ftkit.models.generation import forward_ms, timing_batch

PROJECTIONS = ("gate_proj", "up_proj", "down_proj")


def check_sparsity(sparsity: float) -> float:
    """``sparsity`` if it lies in [0, 1); a clear error otherwise."""
    if not isinstance(sparsity, (int, float)) or not 0.0 <= float(sparsity) < 1.0:
        raise ConfigError(f"sparsity={sparsity!r}: give a fraction in [0, 1) (0.3 prunes 30% "
                          "of the MLP weights; 1.0 would remove them all)")
    return float(sparsity)


def mlps(model) -> list[nn.Module]:
    """The gated MLP block of every decoder layer (Llama, Mistral, Qwen, SmolLM ...)."""
    found = [m for m in model.modules() if all(hasattr(m, p) for p in PROJECTIONS)]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no gated MLP blocks "
                          f"({'/'.join(PROJECTIONS)}) to prune")
    return found


def mlp_parameters(model) -> int:
    """Number of weights in the MLP projections."""
    return sum(getattr(m, p).weight.numel() for m in mlps(model) for p in PROJECTIONS)


def nonzero_parameters(model) -> int:
    """Number of parameters that are not exactly zero."""
    return int(sum(int(torch.count_nonzero(p)) for p in model.parameters()))


def magnitude_prune(model, sparsity: float):
    """A copy of ``model`` with the smallest ``sparsity`` share of each MLP weight set to zero."""
    sparsity = check_sparsity(sparsity)
    pruned = copy.deepcopy(model)
    if sparsity == 0.0:
        return pruned
    for mlp in mlps(pruned):
        for name in PROJECTIONS:
            prune.l1_unstructured(getattr(mlp, name), "weight", amount=sparsity)
            prune.remove(getattr(mlp, name), "weight")  # bake the mask into the weight
    return pruned


@torch.inference_mode()
def _mean_abs_inputs(model, tokenizer, texts: list[str], linears: list[nn.Linear],
                     max_length: int) -> list[torch.Tensor]:
    """Mean |input feature| of each of ``linears`` over the tokens of ``texts``."""
    sums = [torch.zeros(lin.in_features) for lin in linears]
    tokens = [0]

    def hook(i):
        def record(_module, args):
            act = args[0].detach().float().reshape(-1, args[0].shape[-1])
            sums[i] += act.abs().sum(dim=0).cpu()
            if i == 0:
                tokens[0] += act.shape[0]
        return record

    handles = [lin.register_forward_pre_hook(hook(i)) for i, lin in enumerate(linears)]
    try:
        for text in texts:
            ids = tokenizer(text, return_tensors="pt", truncation=True,
                            max_length=max_length)["input_ids"].to(model.device)
            model(input_ids=ids)
    finally:
        for h in handles:
            h.remove()
    if tokens[0] == 0:
        raise ValueError("no calibration tokens")
    return [s / tokens[0] for s in sums]


def _written(linear: nn.Linear, mean_abs: torch.Tensor) -> torch.Tensor:
    """Per input feature: mean |activation| times the norm of the column it multiplies."""
    return mean_abs * linear.weight.detach().float().norm(dim=0).cpu()


def channel_importance(model, tokenizer, texts: list[str], max_length: int = 256) -> list[torch.Tensor]:
    """Per MLP, one score per intermediate channel: mean |activation| over the tokens of
    ``texts`` times the L2 norm of the channel's ``down_proj`` column."""
    downs = [b.down_proj for b in mlps(model)]
    return [_written(d, a) for d, a in
            zip(downs, _mean_abs_inputs(model, tokenizer, texts, downs, max_length))]


def attentions(model) -> list[nn.Module]:
    """The self-attention block of every decoder layer (q/k/v/o projections)."""
    found = [m for m in model.modules()
             if all(hasattr(m, p) for p in ("q_proj", "k_proj", "v_proj", "o_proj"))]
    if not found:
        raise ConfigError(f"{type(model).__name__} has no q/k/v/o attention blocks to prune")
    return found


def group_importance(model, tokenizer, texts: list[str], max_length: int = 256) -> list[torch.Tensor]:
    """Per attention block, one score per key/value group (a key/value head and the query
    heads that share it): what its heads write through ``o_proj`` on ``texts``, summed."""
    cfg = model.config
    blocks = attentions(model)
    heads, groups = cfg.num_attention_heads, cfg.num_key_value_heads
    outs = [b.o_proj for b in blocks]
    scores = [_written(o, a) for o, a in
              zip(outs, _mean_abs_inputs(model, tokenizer, texts, outs, max_length))]
    return [s.reshape(groups, heads // groups, -1).sum(dim=(1, 2)) for s in scores]


def prune_attention_groups(model, n_pruned: int, importance: list[torch.Tensor]):
    """A copy of ``model`` without the ``n_pruned`` least important key/value groups of every
    attention block (their key/value head, query heads and ``o_proj`` columns)."""
    cfg = model.config
    groups, heads = cfg.num_key_value_heads, cfg.num_attention_heads
    if not isinstance(n_pruned, int) or not 0 <= n_pruned < groups:
        raise ConfigError(f"n_pruned={n_pruned!r}: prune from 0 to {groups - 1} of the "
                          f"{groups} key/value groups per layer")
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // heads
    per_group = heads // groups
    pruned = copy.deepcopy(model)
    blocks = attentions(pruned)
    for block, score in zip(blocks, importance):
        keep = torch.sort(torch.topk(score, groups - n_pruned).indices).values
        kv_rows = torch.cat([torch.arange(g * head_dim, (g + 1) * head_dim) for g in keep])
        q_rows = torch.cat([torch.arange(g * per_group * head_dim, (g + 1) * per_group * head_dim)
                            for g in keep])
        block.q_proj = _keep_rows(block.q_proj, q_rows, 0)
        block.k_proj = _keep_rows(block.k_proj, kv_rows, 0)
        block.v_proj = _keep_rows(block.v_proj, kv_rows, 0)
        block.o_proj = _keep_rows(block.o_proj, q_rows, 1)
    pruned.config.head_dim = head_dim
    pruned.config.num_key_value_heads = groups - n_pruned
    pruned.config.num_attention_heads = per_group * (groups - n_pruned)
    return pruned


def _keep_rows(linear: nn.Linear, index: torch.Tensor, dim: int) -> nn.Linear:
    weight = linear.weight.detach().index_select(dim, index.to(linear.weight.device))
    out_f, in_f = weight.shape
    new = nn.Linear(in_f, out_f, bias=linear.bias is not None, device=weight.device,
                    dtype=weight.dtype)
    new.weight.data.copy_(weight)
    if linear.bias is not None:
        bias = linear.bias.detach() if dim == 1 else linear.bias.detach()[index]
        new.bias.data.copy_(bias)
    return new


def prune_mlp_channels(model, fraction: float, importance: list[torch.Tensor]):
    """A copy of ``model`` without the least important ``fraction`` of each MLP's channels."""
    fraction = check_sparsity(fraction)
    pruned = copy.deepcopy(model)
    blocks = mlps(pruned)
    if len(importance) != len(blocks):
        raise ValueError(f"{len(importance)} importance vectors for {len(blocks)} MLP blocks")
    width = blocks[0].down_proj.in_features
    keep_n = width - int(round(fraction * width))
    if fraction and keep_n == width:
        return pruned
    for block, score in zip(blocks, importance):
        keep = torch.sort(torch.topk(score, keep_n).indices).values
        block.gate_proj = _keep_rows(block.gate_proj, keep, 0)
        block.up_proj = _keep_rows(block.up_proj, keep, 0)
        block.down_proj = _keep_rows(block.down_proj, keep, 1)
        if hasattr(block, "intermediate_size"):
            block.intermediate_size = keep_n
    pruned.config.intermediate_size = keep_n
    return pruned


def measure(variants: dict, tokenizer, texts: list[str], rounds: int = 5, score=None,
            progress=None) -> pd.DataFrame:
    """Models measured side by side against the first one (the reference): parameters,
    weights removed (non-zero weights fewer than the reference's), non-zero weights, size on
    disk (MB), median forward time of a 4 x 128-token batch (ms), speed-up over the
    reference, perplexity on ``texts`` and, with ``score`` (a function of the model),
    ``task_score``. One row per model, by name."""
    ms = forward_ms(variants, timing_batch(tokenizer, texts), rounds)
    first = next(iter(variants))
    reference_nonzero = nonzero_parameters(variants[first])
    rows = {}
    for name in (progress(list(variants), desc="measure") if progress else list(variants)):
        variant = variants[name]
        nonzero = nonzero_parameters(variant)
        rows[name] = {"parameters": count_parameters(variant),
                      "removed": reference_nonzero - nonzero, "nonzero": nonzero,
                      "size_mb": serialized_mb(variant), "forward_ms": ms[name],
                      "speedup": ms[first] / ms[name],
                      "perplexity": perplexity(variant, tokenizer, texts),
                      **({"task_score": score(variant)} if score else {})}
    return pd.DataFrame(rows).T


def sparsity_sweep(model, tokenizer, texts: list[str], sparsities: list[float],
                   importance: list[torch.Tensor], rounds: int = 5, score=None,
                   progress=None) -> tuple:
    """Unstructured and structured pruning of ``model`` at each sparsity, measured side by
    side (:func:`measure`, with ``method`` and ``sparsity`` columns).

    Returns ``(table, variants)``: the table and the models by name (``"dense"``,
    ``"unstructured 30%"``, ``"structured 30%"`` ...).
    """
    for s in sparsities:
        check_sparsity(s)
    model = model.eval()
    # the reference is a copy too: weights mapped from a safetensors file can run slower than
    # the same weights copied into memory, which would pass for a speed-up of the variants
    variants = {"dense": copy.deepcopy(model)}
    plan = [(m, s) for s in sparsities for m in ("unstructured", "structured")]
    loop = progress(plan, desc="prune") if progress else plan
    for method, s in loop:
        variants[f"{method} {s:.0%}"] = (magnitude_prune(model, s) if method == "unstructured"
                                         else prune_mlp_channels(model, s, importance)).eval()
    table = measure(variants, tokenizer, texts, rounds, score, progress)
    table.insert(0, "method", [n.partition(" ")[0] for n in table.index])
    table.insert(1, "sparsity", [float(n.partition(" ")[2].rstrip("%") or 0) / 100
                                 for n in table.index])
    return table, variants


__all__ = ["attentions", "channel_importance", "check_sparsity", "group_importance",
           "magnitude_prune", "measure", "mlp_parameters", "mlps", "nonzero_parameters",
           "prune_attention_groups", "prune_mlp_channels", "sparsity_sweep"]
