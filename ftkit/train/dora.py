"""DoRA read plainly: a reference forward and the weight-decomposition analysis (paper §6.3.4).

DoRA splits a weight into a magnitude vector and a direction, W' = m · V / ||V|| with
V = W0 + s·B·A, and trains m with a LoRA on the direction. :func:`dora_forward` writes that for
one ``nn.Linear`` in a few commented lines and :func:`reference_output` feeds it a peft layer, so
a test can show it matches peft exactly. :func:`magnitude_direction`, :func:`decomposition_table`,
:func:`plot_decomposition` and :func:`correlation` redo the DoRA paper's analysis: how far each
method moves the magnitude (ΔM) and the direction (ΔD) of each weight row.
Norms are per output row of the ``[out, in]`` weight, as in peft. :func:`use_fast_dora` gives
a peft DoRA model a training forward with the same result and fewer passes (measured in
benchmarks/train_throughput.py); ftkit.train.adapters switches it on for ``peft_method="dora"``.
Used in notebooks/06_lora_vs_dora.ipynb.
"""
from __future__ import annotations

import math
import re
from typing import Any, Sequence

import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ftkit.core.config import ConfigError

COLUMNS = ["method", "layer", "module", "delta_m", "delta_d"]
_PREFIXES = ("base_model.model.",)


def dora_forward(x: Tensor, weight: Tensor, bias: Tensor | None, lora_A: Tensor, lora_B: Tensor,
                 magnitude: Tensor, scaling: float) -> Tensor:
    """DoRA output of one Linear (eval mode, dropout off): ``x W'^T + b``.

    Args:
        x: input ``[..., in]``.
        weight: frozen base weight W0, ``[out, in]``.
        bias: base bias ``[out]`` or None; DoRA leaves it alone.
        lora_A, lora_B: LoRA factors, ``[r, in]`` and ``[out, r]``.
        magnitude: trained magnitude m, ``[out]``.
        scaling: LoRA scale s (``lora_alpha / r``).
    """
    # V = W0 + s·B·A: the LoRA-updated weight, whose direction DoRA trains.
    adapted = weight + scaling * (lora_B @ lora_A)
    # ||V|| per output row (norm over the input dimension), as peft does for Linear.
    # peft detaches it (DoRA paper §4.3): it follows V's updates, but no gradient flows
    # through it, so the row norm is a constant in backprop.
    row_norm = torch.linalg.norm(adapted, dim=1).detach()
    # W' = m · V / ||V||: the unit-norm direction of each row, scaled by its magnitude.
    new_weight = (magnitude / row_norm).unsqueeze(1) * adapted
    # An ordinary Linear with the new weight; the bias is not rescaled.
    return F.linear(x, new_weight, bias)


def _active_dora(layer: nn.Module) -> str:
    """The single active adapter of a peft lora layer, checked to be a usable DoRA one."""
    active = list(getattr(layer, "active_adapters", []))
    if len(active) != 1:
        raise ConfigError(f"reference_output needs exactly one active adapter; the layer has "
                          f"{active}")
    name = active[0]
    if name not in getattr(layer, "lora_magnitude_vector", {}):
        raise ConfigError(f"adapter {name!r} is not a DoRA adapter (use_dora=False); "
                          f"reference_output needs a lora.Linear made with use_dora=True")
    if layer.merged or layer.disable_adapters:
        raise ConfigError("reference_output needs an unmerged layer with adapters enabled; "
                          f"this one has merged={layer.merged}, "
                          f"disable_adapters={layer.disable_adapters}")
    return name


def _out_in(weight: Tensor, fan_in_fan_out: bool) -> Tensor:
    """``weight`` as ``[out, in]`` (peft stores Conv1D-style weights transposed)."""
    return weight.T if fan_in_fan_out else weight


def reference_output(peft_layer: nn.Module, x: Tensor) -> Tensor:
    """:func:`dora_forward` on the parts of a peft ``lora.Linear`` made with ``use_dora=True``."""
    name = _active_dora(peft_layer)
    base = peft_layer.get_base_layer()
    return dora_forward(
        x,
        weight=_out_in(base.weight, getattr(peft_layer, "fan_in_fan_out", False)),
        bias=base.bias,
        lora_A=peft_layer.lora_A[name].weight,
        lora_B=peft_layer.lora_B[name].weight,
        magnitude=peft_layer.lora_magnitude_vector[name].weight,
        scaling=peft_layer.scaling[name],
    )


def _is_lora_layer(module: nn.Module) -> bool:
    from peft.tuners.lora import LoraLayer

    return isinstance(module, LoraLayer)


def effective_weight(layer: nn.Module) -> Tensor:
    """The ``[out, in]`` fp32 weight a peft lora layer applies, computed without changing it.

    Per active adapter, the same sum as peft's forward: LoRA adds ``s·B·A``; DoRA adds
    ``f·(W0 + s·B·A) - W0`` with ``f = m / ||W0 + s·B·A||`` per row. For one adapter this is
    exactly what ``merge_and_unload`` writes into the base weight.
    """
    fan_in_fan_out = getattr(layer, "fan_in_fan_out", False)
    w0 = _out_in(layer.get_base_layer().weight, fan_in_fan_out).detach().float()
    if layer.merged or layer.disable_adapters:
        return w0.clone()
    weight = w0.clone()
    for name in layer.active_adapters:
        if name not in layer.lora_A:
            continue
        if name in layer.lora_variant and name not in layer.lora_magnitude_vector:
            raise ConfigError(f"adapter {name!r} is a LoRA variant other than DoRA; "
                              "linear_weights handles plain LoRA and DoRA only")
        delta = layer.scaling[name] * (layer.lora_B[name].weight.detach().float()
                                       @ layer.lora_A[name].weight.detach().float())
        if name in layer.lora_magnitude_vector:
            m = layer.lora_magnitude_vector[name].weight.detach().float()
            factor = (m / torch.linalg.norm(w0 + delta, dim=1)).unsqueeze(1)
            weight += factor * (w0 + delta) - w0
        else:
            weight += delta
    return weight


def clean_name(name: str) -> str:
    """A module name without peft's wrappers: ``model.layers.3.self_attn.q_proj``."""
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix):]
    return name.replace(".base_layer", "")


def linear_weights(model: nn.Module, modules: Sequence[str] = ("q_proj", "v_proj")
                   ) -> dict[str, Tensor]:
    """CPU fp32 copies of the effective weights of the Linear layers named ``modules``.

    Works on a base model and on its peft model alike; keys are the names without peft's
    prefixes, so the two dicts line up for :func:`decomposition_table`.
    """
    found: dict[str, Tensor] = {}
    for name, module in model.named_modules():
        if name.rsplit(".", 1)[-1] not in modules:
            continue
        if _is_lora_layer(module):
            found[clean_name(name)] = effective_weight(module).cpu()
        elif isinstance(module, nn.Linear):
            found[clean_name(name)] = module.weight.detach().float().cpu().clone()
    if not found:
        raise ConfigError(f"linear_weights: modules = {list(modules)} match no Linear layer; "
                          f"the model has {_linear_names(model)}")
    return found


def _linear_names(model: nn.Module) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                   if isinstance(m, nn.Linear)})


def magnitude_direction(w0: Tensor, w: Tensor, *, name: str = "weight") -> tuple[float, float]:
    """``(ΔM, ΔD)`` from ``w0`` to ``w`` (both ``[out, in]``), as in the DoRA paper.

    ΔM is the mean over rows of ``|‖w_row‖ - ‖w0_row‖|``; ΔD the mean over rows of
    ``1 - cos(w_row, w0_row)``. ``name`` only labels errors.
    """
    if w0.ndim != 2 or w0.shape != w.shape:
        raise ConfigError(f"{name}: base shape {tuple(w0.shape)} and tuned shape "
                          f"{tuple(w.shape)} must be the same 2-D [out, in] shape")
    w0, w = w0.detach().float(), w.detach().float()
    delta_m = (torch.linalg.norm(w, dim=1) - torch.linalg.norm(w0, dim=1)).abs().mean()
    delta_d = (1 - F.cosine_similarity(w, w0, dim=1)).mean()
    return float(delta_m), float(delta_d)


def _layer_index(name: str) -> int:
    """The first integer in a dotted module name (``model.layers.3.self_attn.q_proj`` → 3)."""
    match = re.search(r"(?:^|\.)(\d+)(?:\.|$)", name)
    if match is None:
        raise ConfigError(f"weight key {name!r} has no layer index (expected a name like "
                          "'model.layers.3.self_attn.q_proj')")
    return int(match.group(1))


def decomposition_table(base_weights: dict[str, Tensor], tuned_weights: dict[str, Tensor],
                        method: str) -> pd.DataFrame:
    """One row per (layer, module): ``method, layer, module, delta_m, delta_d``.

    Both dicts come from :func:`linear_weights` and must have the same keys and shapes.
    Concatenate the tables of several methods (``pd.concat``) to plot them together.
    """
    if not isinstance(method, str) or not method.strip():
        raise ConfigError(f"method = {method!r}: give a non-empty name such as 'lora'")
    missing = sorted(set(base_weights) ^ set(tuned_weights))
    if missing:
        key = missing[0]
        where = "tuned_weights" if key in base_weights else "base_weights"
        raise ConfigError(f"weight key {key!r} is missing from {where}; both dicts need the "
                          f"same keys ({len(missing)} differ: {missing[:5]})")
    if not base_weights:
        raise ConfigError("base_weights is empty: pass linear_weights(model) of the base model")
    rows = []
    for key in base_weights:
        delta_m, delta_d = magnitude_direction(base_weights[key], tuned_weights[key], name=key)
        rows.append({"method": method, "layer": _layer_index(key),
                     "module": key.rsplit(".", 1)[-1], "delta_m": delta_m, "delta_d": delta_d})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table.sort_values(["layer", "module"], ignore_index=True)


def _check_table(table: pd.DataFrame) -> None:
    absent = [c for c in COLUMNS if c not in getattr(table, "columns", [])]
    if absent or len(table) == 0:
        raise ConfigError(f"table lacks columns {absent} or has no rows; pass the output of "
                          f"decomposition_table (columns {COLUMNS})")


def _pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson r, NaN when there are fewer than two points or one side is constant."""
    xs, ys = torch.tensor(list(x), dtype=torch.float64), torch.tensor(list(y), dtype=torch.float64)
    if len(xs) < 2:
        return math.nan
    xs, ys = xs - xs.mean(), ys - ys.mean()
    denom = float(xs.norm() * ys.norm())
    return float((xs * ys).sum()) / denom if denom > 0 else math.nan


def correlation(table: pd.DataFrame) -> dict[str, float]:
    """Pearson correlation of ΔD and ΔM per method (DoRA paper: LoRA > 0, FT and DoRA < 0)."""
    _check_table(table)
    return {method: _pearson(group["delta_d"], group["delta_m"])
            for method, group in table.groupby("method", sort=False)}


def plot_decomposition(table: pd.DataFrame) -> Any:
    """One scatter per method: ΔD (x) against ΔM (y), coloured by layer, r in the title.

    ``fig.axes`` holds exactly one axes per method (the layer colour bar is an inset).
    """
    import matplotlib.pyplot as plt

    _check_table(table)
    methods = list(dict.fromkeys(table["method"]))
    corr = correlation(table)
    fig, axes = plt.subplots(1, len(methods), figsize=(4.4 * len(methods), 3.6), squeeze=False,
                             layout="constrained")
    lo, hi = int(table["layer"].min()), int(table["layer"].max())
    for ax, method in zip(axes[0], methods):
        group = table[table["method"] == method]
        points = ax.scatter(group["delta_d"], group["delta_m"], c=group["layer"],
                            cmap="viridis", vmin=lo, vmax=max(hi, lo + 1), s=28)
        ax.set_title(f"{method}: r = {corr[method]:+.2f}")
        ax.set_xlabel("ΔD (direction change)")
        ax.set_ylabel("ΔM (magnitude change)")
        ax.ticklabel_format(style="sci", scilimits=(-2, 3))
    fig.colorbar(points, cax=axes[0][-1].inset_axes([1.04, 0.0, 0.04, 1.0]), label="layer")
    return fig


# -- a faster DoRA forward for training ---------------------------------------------------
#
# peft adds DoRA to a LoRA layer's output as  (m/‖V‖ − 1)·base + (m/‖V‖)·s·lora  with
# V = W0 + s·B·A, materialising the [out, in] product B·A for the norm on every call; under
# bf16 autocast on a CPU those activation-sized fp32 products and the weight-sized norm are
# most of DoRA's extra cost (benchmarks/train_throughput.py measures it against peft's forward).
# The same output, with fewer passes:
#   * (m/‖V‖)·(base + s·lora): one scale of the sum instead of two scaled terms;
#   * ‖V_i‖² = ‖W0_i‖² + 2s·B_i·(A W0_iᵀ) + s²·B_i (A Aᵀ) B_iᵀ: ‖W0_i‖² is cached (W0 is frozen),
#     A W0ᵀ is one [r, out] product and A Aᵀ is [r, r]; B·A is never formed.
# With LoRA dropout active in training the DoRA terms see the dropped-out input, as in peft, so
# only the norm is shortened there.

def fast_row_norm(weight: Tensor, lora_A: Tensor, lora_B: Tensor, scaling: float,
                  weight_sq: Tensor | None = None) -> Tensor:
    """``‖weight + scaling · lora_B @ lora_A‖`` per output row, without forming ``B @ A``.

    fp32, no gradient (DoRA treats the norm as a constant, paper §4.3); ``weight_sq`` is the
    cached ``‖weight_i‖²``.
    """
    with torch.no_grad(), torch.autocast(weight.device.type, enabled=False):
        w, a, b = weight.float(), lora_A.float(), lora_B.float()
        if weight_sq is None:
            weight_sq = w.pow(2).sum(1)
        cross = (b * (a @ w.T).T).sum(1)  # B_i · (A W0_iᵀ)
        update_sq = ((b @ (a @ a.T)) * b).sum(1)  # ‖(B A)_i‖²
        return (weight_sq + 2 * scaling * cross + scaling ** 2 * update_sq).clamp_min(0).sqrt()


def _weight_sq(module: nn.Module, weight: Tensor) -> Tensor:
    """‖W0_i‖², cached on the layer until the weight is replaced or changed in place."""
    key = (weight.data_ptr(), weight._version, weight.dtype)
    if getattr(module, "_ftkit_weight_sq_key", None) != key:
        with torch.no_grad():
            module._ftkit_weight_sq = weight.float().pow(2).sum(1)
        module._ftkit_weight_sq_key = key
    return module._ftkit_weight_sq


def fast_dora_forward(module, active_adapter: str, x: Tensor, result: Tensor,
                      **kwargs) -> Tensor:
    """peft's ``DoraLinearVariant.forward`` (same arguments, same result), with fewer passes."""
    dropout = module.lora_dropout[active_adapter]
    lora_A, lora_B = module.lora_A[active_adapter], module.lora_B[active_adapter]
    scaling = module.scaling[active_adapter]
    base = module.get_base_layer()
    norm = fast_row_norm(base.weight, lora_A.weight, lora_B.weight, scaling,
                         _weight_sq(module, base.weight))
    magnitude = module.lora_magnitude_vector[active_adapter].weight
    scale = magnitude / norm.to(magnitude.dtype)
    if module.training and not isinstance(dropout, nn.Identity):
        # peft's form: the DoRA terms see the dropped-out input, the base output does not
        x = dropout(x)
        base_x = F.linear(x, base.weight.to(x.dtype))
        return result + (scale - 1) * base_x + scale * lora_B(lora_A(x)) * scaling
    out = result if base.bias is None else result - base.bias
    out = (out + lora_B(lora_A(x)) * scaling) * scale
    return out if base.bias is None else out + base.bias


def use_fast_dora(model: nn.Module) -> int:
    """Give every DoRA layer of a peft ``model`` on a plain ``nn.Linear`` the faster forward.

    Returns how many adapters were switched. Merging, saving and loading stay peft's own.
    """
    from peft.tuners.lora.variants import DoraLinearVariant

    switched = 0
    for module in model.modules():
        variants = getattr(module, "lora_variant", None)
        base = module.get_base_layer() if hasattr(module, "get_base_layer") else None
        if not variants or type(base) is not nn.Linear or getattr(module, "fan_in_fan_out",
                                                                    False):
            continue
        for variant in variants.values():
            if type(variant) is DoraLinearVariant:
                variant.forward = fast_dora_forward
                switched += 1
    return switched
