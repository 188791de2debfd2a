"""Typed, frozen configs per pipeline stage, validated on creation, flat for papermill.

Each stage has a frozen dataclass whose fields carry their help text and allowed range in the
field metadata (declared with :func:`param`). ``__post_init__`` checks every field against that
metadata, so a bad value fails at once with a message naming the field, the value and what is
allowed. :class:`Config` groups the sections a notebook uses and converts to and from the flat
``name -> value`` dict that papermill injects (field names are unique across sections).

Used in every notebook: ``cfg = ft.config_from_params(globals())``.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal

from ftkit.core import results, versions


class ConfigError(ValueError):
    """A config value is not allowed; the message names the field, the value and the rule."""


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          min_exclusive: bool = False, log: bool = False, step: float | None = None):
    """Declare a config field with its help text and numeric bounds (used by widgets too).

    Args:
        default: default value (papermill profiles override it).
        help: one sentence shown in the widget panel and in error messages.
        min, max: inclusive bounds; ``min_exclusive`` makes the lower bound strict (``lr > 0``).
        log: the value spans decades (learning rates): widgets use a log scale.
        step: widget step for numbers.
    """
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive, "log": log,
            "step": step}
    return field(default=default, metadata=meta)


def _describe_rule(meta: dict, kind: type) -> str:
    lo, hi = meta.get("min"), meta.get("max")
    parts = [f"a{'n' if kind is int else ''} {kind.__name__}"]
    if lo is not None:
        parts.append(f"{'>' if meta.get('min_exclusive') else '>='} {lo}")
    if hi is not None:
        parts.append(f"<= {hi}")
    return " ".join(parts)


def _coerce(section: str, f: dataclasses.Field, hint: Any, value: Any) -> Any:
    """Return ``value`` converted to the field's type, or raise ConfigError."""
    where = f"{section}.{f.name} = {value!r}"
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where} is not allowed; choose one of {list(allowed)}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be True or False")
        return value
    if hint in (int, float):
        return _coerce_number(where, f.metadata, hint, value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _coerce_number(where: str, meta: dict, kind: type, value: Any) -> float | int:
    if isinstance(value, str) and kind is float:  # YAML reads "1e-4" as a string
        try:
            value = float(value)
        except ValueError:
            pass
    ok_type = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int and ok_type and float(value).is_integer():
        value = int(value)
    if not ok_type or (kind is int and not isinstance(value, int)):
        raise ConfigError(f"{where} must be {_describe_rule(meta, kind)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, {_describe_rule(meta, kind)}")
    lo, hi = meta.get("min"), meta.get("max")
    too_low = lo is not None and (value <= lo if meta.get("min_exclusive") else value < lo)
    if too_low or (hi is not None and value > hi):
        raise ConfigError(f"{where} is out of range: must be {_describe_rule(meta, kind)}")
    return kind(value)


class Section:
    """Base of every stage config: validation from the field metadata in ``__post_init__``.

    A new stage declares ``@dataclass(frozen=True) class XConfig(Section)`` with fields made by
    :func:`param`, optionally a ``check()`` for cross-field rules, and registers it with
    :func:`register_section` so flat parameters and panels know it.
    """

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):
            value = _coerce(type(self).__name__, f, hints[f.name], getattr(self, f.name))
            object.__setattr__(self, f.name, value)
        self.check()

    def check(self) -> None:
        """Cross-field rules; override in a section that has some."""
    def fail(self, name: str, rule: str) -> None:
        raise ConfigError(f"{type(self).__name__}.{name} = {getattr(self, name)!r}: {rule}")


@dataclass(frozen=True)
class RunConfig(Section):
    """Which profile results, with which seed, writing where."""
    profile: Literal["smoke", "workshop", "gpu"] = param(
        "workshop", "Parameter profile: smoke (CI), workshop (2-core laptop) or gpu.")
    seed: int = param(42, "Seed for Python, NumPy and torch.", min=0, max=2**32 - 1)
    output_dir: str = param("outputs", "Folder for this notebook's metrics, figures, checkpoints.")

    def check(self) -> None:
        if not self.output_dir.strip():
            self.fail("output_dir", "must be a non-empty path")


@dataclass(frozen=True)
class ModelConfig(Section):
    """Which model to load and how (paper §4, §5.2)."""
    model_name: str = param(
        "smollm2-135m", "A registry name (see ftkit.models.known_models()), a hub id or a folder.")
    dtype: Literal["float32", "bfloat16", "float16"] = param(
        "float32", "Weight dtype at load time; training uses bf16 autocast separately.")
    quantization: Literal["none", "int8-weight", "int8-dynamic", "4bit", "8bit"] = param(
        "none", "Quantisation: int8-weight / int8-dynamic work on CPU; 4bit/8bit need a CUDA GPU.")
    max_length: int = param(512, "Longest sequence in tokens (prompt + answer).", min=8, max=32768)
    max_new_tokens: int = param(48, "Tokens generated per answer.", min=1, max=4096)

    def check(self) -> None:
        if not self.model_name.strip():
            self.fail("model_name", "must name a model; see ftkit.models.known_models()")


@dataclass(frozen=True)
class DataConfig(Section):
    """How much data, which columns, which split (paper §3)."""
    text_column: str = param("text", "Column holding the input text.")
    label_column: str = param("label", "Column holding the label or target.")
    max_samples: int = param(1000, "Cap on examples used (0 = all).", min=0)
    eval_fraction: float = param(0.2, "Share of examples held out for evaluation.",
                                 min=0.0, min_exclusive=True, max=0.9, step=0.05)


@dataclass(frozen=True)
class TrainConfig(Section):
    """Optimiser and schedule (paper §5.3-5.4)."""
    lr: float = param(2e-4, "Peak learning rate.", min=0.0, min_exclusive=True, max=1.0, log=True)
    num_epochs: float = param(1.0, "Passes over the training data (ignored when max_steps > 0).",
                              min=0.0, min_exclusive=True, max=1000.0, step=0.5)
    max_steps: int = param(0, "Optimiser steps (0 = use num_epochs).", min=0)
    batch_size: int = param(8, "Examples per device step.", min=1, max=4096)
    grad_accum: int = param(1, "Steps accumulated per optimiser update.", min=1, max=1024)
    warmup_ratio: float = param(0.05, "Share of steps spent warming up the LR.", min=0.0, max=0.5,
                                step=0.01)
    weight_decay: float = param(0.0, "AdamW weight decay.", min=0.0, max=1.0, step=0.01)
    lr_scheduler: Literal["linear", "cosine", "constant"] = param(
        "cosine", "Learning-rate schedule after warm-up.")
    max_grad_norm: float = param(1.0, "Gradient clipping norm.", min=0.0, min_exclusive=True,
                                 max=100.0)
    eval_steps: int = param(25, "Evaluate every this many optimiser steps.", min=1)
    bf16: bool = param(True, "bf16 autocast (about 2x faster on CPUs with AVX-512 BF16).")


@dataclass(frozen=True)
class AdapterConfig(Section):
    """Parameter-efficient fine-tuning method and its hyper-parameters (paper §6.3)."""
    peft_method: Literal["full", "half", "lora", "dora", "ia3"] = param(
        "lora", "Which weights train: all (full), half of each block (half, §6.4), LoRA, "
        "DoRA or IA3 (paper §6.3).")
    lora_r: int = param(8, "LoRA rank r.", min=1, max=1024)
    lora_alpha: float = param(16.0, "LoRA scaling alpha (update scaled by alpha / r).",
                              min=0.0, min_exclusive=True, max=4096.0)
    lora_dropout: float = param(0.05, "Dropout on the LoRA input.", min=0.0, max=0.9, step=0.05)
    target_modules: str = param("all-linear", "Comma-separated module names, or all-linear.")
    half_round_steps: int = param(
        0, "Half fine-tuning: optimiser steps per round, each training another half "
        "(0 = one round).", min=0)

    def check(self) -> None:
        if not self.target_modules.strip():
            self.fail("target_modules", "must name modules (e.g. 'q_proj,v_proj') or 'all-linear'")


@dataclass(frozen=True)
class SetupConfig(Section):
    """Environment checks of notebook 00 (paper §5.2)."""
    matmul_size: int = param(1024, "Square matrix size for the GFLOP/s measurement.", min=64,
                             max=8192, step=64)
    matmul_seconds: float = param(2.0, "Seconds spent timing each dtype.", min=0.1, max=60.0,
                                  step=0.5)
    check_packs: bool = param(True, "Build (first time) and verify every offline model pack.")


SECTIONS: dict[str, type] = {"run": RunConfig, "model": ModelConfig, "data": DataConfig,
                             "train": TrainConfig, "adapter": AdapterConfig,
                             "setup": SetupConfig}


def register_section(name: str, cls: type) -> type:
    """Add a stage config (e.g. ``DPOConfig``) so flat params and panels know it."""
    clash = set(field_names(cls)) & {n for c in SECTIONS.values() for n in field_names(c)}
    if clash and SECTIONS.get(name) is not cls:
        raise ValueError(f"{cls.__name__} reuses field names {sorted(clash)}; flat names must "
                         "be unique across sections")
    SECTIONS[name] = cls
    return cls


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


class Config:
    """The sections one notebook uses, e.g. ``cfg.run.seed``, ``cfg.train.lr``; immutable.

    ``Config.from_params`` builds it from a flat dict (papermill parameters); ``to_params`` gives
    the flat dict back, so ``Config.from_params(cfg.to_params()) == cfg``.
    """

    __slots__ = ("_sections",)

    def __init__(self, **sections: Any) -> None:
        for name, value in sections.items():
            if name not in SECTIONS or not isinstance(value, SECTIONS[name]):
                raise ConfigError(f"section {name}={value!r}: expected one of {list(SECTIONS)}")
        sections.setdefault("run", RunConfig())
        ordered = {n: sections[n] for n in SECTIONS if n in sections}
        object.__setattr__(self, "_sections", ordered)

    def __getattr__(self, name: str) -> Any:
        try:
            return object.__getattribute__(self, "_sections")[name]
        except KeyError:
            raise AttributeError(f"this config has no section {name!r}; it has "
                                 f"{list(self._sections)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        raise dataclasses.FrozenInstanceError("Config is immutable; use cfg.replace(...)")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and self._sections == other._sections

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={s!r}" for n, s in self._sections.items())
        return f"Config({inner})"

    @property
    def sections(self) -> dict[str, Any]:
        return dict(self._sections)

    def to_params(self) -> dict[str, Any]:
        """Flat ``field -> value`` dict, as papermill parameters."""
        return {k: v for s in self._sections.values() for k, v in dataclasses.asdict(s).items()}

    def replace(self, **flat: Any) -> "Config":
        """A new validated Config with some flat fields changed."""
        return Config.from_params({**self.to_params(), **flat}, sections=list(self._sections),
                                  strict=True)

    @classmethod
    def from_params(cls, params: dict[str, Any], sections: list[str] | None = None,
                    strict: bool = False) -> "Config":
        """Build from flat params.

        Args:
            params: flat names to values; names of no section are ignored unless ``strict``.
            sections: which sections to build; default: ``run`` plus every section that has a
                field named in ``params``.
            strict: raise on a name that belongs to no chosen section (catches typos in
                parameter files).
        """
        chosen = sections or [n for n, c in SECTIONS.items()
                              if n == "run" or set(field_names(c)) & set(params)]
        unknown = set(params) - {f for n in chosen for f in field_names(SECTIONS[n])}
        if strict and unknown:
            raise ConfigError(f"unknown parameter(s) {sorted(unknown)}; known: "
                              f"{sorted(f for n in chosen for f in field_names(SECTIONS[n]))}")
        built = {n: SECTIONS[n](**{f: params[f] for f in field_names(SECTIONS[n]) if f in params})
                 for n in chosen}
        return cls(**built)


def config_from_params(params: dict[str, Any], sections: list[str] | None = None) -> Config:
    """Config from a notebook's parameters (``globals()``); points ft.record at its output_dir."""
    plain = {k: v for k, v in params.items()
             if not k.startswith("_") and isinstance(v, (bool, int, float, str))}
    known = {f for c in SECTIONS.values() for f in field_names(c)}
    shadowed = sorted(k for k in set(params) & known if k not in plain)
    if shadowed:  # e.g. `from ftkit import quantization` replaced the parameter of that name
        raise ConfigError(f"parameter(s) {shadowed} were overwritten by non-literal values "
                          f"({', '.join(type(params[k]).__name__ for k in shadowed)}); rename "
                          "the variable or import that replaced them")
    cfg = Config.from_params(plain, sections=sections)

    versions.check()

    results.set_output_dir(cfg.run.output_dir)
    results.record_params(cfg.to_params())
    return cfg


__all__ = ["Section", "AdapterConfig", "Config", "ConfigError", "DataConfig", "ModelConfig", "RunConfig",
           "SECTIONS", "SetupConfig", "TrainConfig", "config_from_params", "param", "register_section"]
