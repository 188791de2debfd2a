"""Which weights train: full fine-tuning or a peft method, chosen by name (paper §6.2-6.3).

``apply_method(model, adapter_cfg)`` returns the model ready to train with the method named by
``AdapterConfig.peft_method``; methods are entries of :data:`METHODS`, not branches.
Unknown target modules are refused before any compute, with the Linear names the model has.
Half fine-tuning needs a callback too (:func:`callbacks`).
Used by ftkit.train.sft and the fine-tuning notebooks (05, 06, 07).
"""
from __future__ import annotations

from functools import partial

from torch import nn

from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.train.dora import use_fast_dora
from ftkit.train.half import HalfFineTuning, prepare


def linear_names(model: nn.Module) -> list[str]:
    """Distinct short names of the Linear layers (``q_proj``, ``down_proj``, …), head excluded."""
    names = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)}
    return sorted(names - {"lm_head", "score", "classifier"})


def target_modules(model: nn.Module, spec: str) -> str | list[str]:
    """``"all-linear"`` or the validated list of names from a comma-separated ``spec``."""
    if spec.strip() == "all-linear":
        return "all-linear"
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    known = linear_names(model)
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ConfigError(f"AdapterConfig.target_modules = {spec!r}: {unknown} are not Linear "
                          f"layers of this model; it has {known} (or use 'all-linear')")
    return wanted


def _full(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _half(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """Half fine-tuning (§6.4): block weights trainable; ``callbacks`` freezes half per round."""
    return prepare(model)


def _lora(model: nn.Module, cfg: AdapterConfig, use_dora: bool = False,
          fast_dora: bool = True) -> nn.Module:
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                        target_modules=target_modules(model, cfg.target_modules),
                        use_dora=use_dora, task_type="CAUSAL_LM")
    model = get_peft_model(model, config)
    if use_dora and fast_dora:

        use_fast_dora(model)  # peft's DoRA output with fewer passes (see ftkit.train.dora)
    return model


def _ia3(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """IA³: learned per-channel scales on keys, values and the MLP input (peft's defaults)."""
    from peft import IA3Config, get_peft_model

    targets = None if cfg.target_modules.strip() == "all-linear" else target_modules(
        model, cfg.target_modules)
    return get_peft_model(model, IA3Config(target_modules=targets, task_type="CAUSAL_LM"))


METHODS = {"full": _full, "half": _half, "lora": _lora, "dora": partial(_lora, use_dora=True), "ia3": _ia3}


def apply_method(model: nn.Module, cfg: AdapterConfig) -> nn.Module:
    """The model with exactly the weights of ``cfg.peft_method`` trainable."""
    if cfg.peft_method not in METHODS:
        raise ConfigError(f"AdapterConfig.peft_method = {cfg.peft_method!r}: choose one of "
                          f"{list(METHODS)}")
    return METHODS[cfg.peft_method](model, cfg)


def callbacks(model: nn.Module, cfg: AdapterConfig, seed: int = 0) -> list:
    """Trainer callbacks a method needs (half fine-tuning's round-by-round freezing)."""
    if cfg.peft_method == "half":

        return [HalfFineTuning(model, cfg.half_round_steps, seed)]
    return []


def require_peft(model: nn.Module, who: str) -> None:
    """Refuse a model without a peft adapter where the reference is the adapter switched off."""
    if not hasattr(model, "disable_adapter"):
        raise ConfigError(f"{who} expects a peft (LoRA) model: its reference is the same "
                          "network with the adapter disabled")


def trainable_summary(model: nn.Module) -> dict:
    """Trainable and total parameter counts and the trainable share."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"trainable": trainable, "total": total, "share": trainable / total}
