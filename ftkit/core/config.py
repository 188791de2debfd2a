"""Typed, frozen parameter sections per pipeline stage, validated on creation.

Each stage has a frozen dataclass whose fields carry their help text and allowed range in the
field metadata (declared with :func:`param`). ``__post_init__`` checks every field against that
metadata, so a bad value fails at once with a message naming the field, the value and what is
allowed. Lists are lists (``list[int]``, ``list[Literal[...]]``, ``dict[str, float]``), checked
item by item. :class:`Config` holds the sections one notebook uses; each notebook's schema
(``ftkit.core.schema``) says which fields of which sections it declares.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A config value is not allowed; the message names the field, the value and the rule."""


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          min_exclusive: bool = False, log: bool = False, step: float | None = None,
          empty_ok: bool = False):
    """Declare a config field with its help text and numeric bounds (used by widgets too).

    Args:
        default: default value (papermill profiles override it).
        help: one sentence shown in the widget panel and in error messages.
        min, max: inclusive bounds; ``min_exclusive`` makes the lower bound strict (``lr > 0``).
        log: the value spans decades (learning rates): widgets use a log scale.
        step: widget step for numbers.
        empty_ok: a list field may be empty.
    """
    meta = {"help": help, "min": min, "max": max, "min_exclusive": min_exclusive, "log": log,
            "step": step, "empty_ok": empty_ok}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: copy.deepcopy(default), metadata=meta)
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
    return coerce_value(f"{section}.{f.name} = {value!r}", f.metadata, hint, value)


def coerce_value(where: str, meta: dict, hint: Any, value: Any) -> Any:
    """``value`` checked against ``hint`` (scalars, Literal, list[...], dict[str, ...])."""
    origin = typing.get_origin(hint)
    if origin is Literal:
        allowed = typing.get_args(hint)
        if value not in allowed:
            raise ConfigError(f"{where} is not allowed; choose one of {list(allowed)}")
        return value
    if origin is list:
        return _coerce_list(where, meta, typing.get_args(hint)[0], value)
    if origin is dict:
        return _coerce_dict(where, meta, typing.get_args(hint)[1], value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be True or False")
        return value
    if hint in (int, float):
        return _coerce_number(where, meta, hint, value)
    if hint is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string")
    return value


def _coerce_list(where: str, meta: dict, item: Any, value: Any) -> list:
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list, e.g. {_example(item)}; lists are lists, "
                          "not comma-separated strings")
    if not value and not meta.get("empty_ok"):
        raise ConfigError(f"{where} must not be empty")
    return [coerce_value(f"{where} (item {i}: {v!r})", meta, item, v) for i, v in enumerate(value)]


def _coerce_dict(where: str, meta: dict, item: Any, value: Any) -> dict:
    if not isinstance(value, dict):
        raise ConfigError(f"{where} must be a mapping, e.g. {{'lora': 1e-3}}")
    return {str(k): coerce_value(f"{where} (key {k!r})", meta, item, v) for k, v in value.items()}


def _example(item: Any) -> str:
    if typing.get_origin(item) is Literal:
        return repr(list(typing.get_args(item))[:2])
    return {int: "[2, 4, 8]", float: "[0.1, 0.5]", str: "['a', 'b']"}.get(item, "[...]")


def closest(name: str, known) -> str:
    """'; did you mean X?' for the nearest known name, or '' when none is close."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f"; did you mean {match[0]}?" if match else ""


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
    :func:`param`, and optionally a ``check()`` for cross-field rules.
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
    report_to: Literal["tensorboard", "mlflow", "trackio", "none"] = param(
        "tensorboard", "Where the trainer also writes its logged curves: TensorBoard event files "
        "under output_dir/runs, an MLflow or trackio run (each needs its package), or nowhere.")


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


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


class Config:
    """The sections one notebook uses, e.g. ``cfg.run.seed``, ``cfg.train.lr``; immutable."""

    __slots__ = ("_sections",)

    def __init__(self, **sections: Any) -> None:
        for name, value in sections.items():
            if not isinstance(value, Section):
                raise ConfigError(f"section {name}={value!r} is not a parameter section")
        sections.setdefault("run", RunConfig())
        object.__setattr__(self, "_sections", dict(sections))

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
        """Flat ``field -> value`` dict of every field of every section."""
        return {k: v for s in self._sections.values() for k, v in dataclasses.asdict(s).items()}

    def replace(self, **flat: Any) -> "Config":
        """A new validated Config with some flat fields changed."""
        sections = {n: type(s) for n, s in self._sections.items()}
        return Config.from_params({**self.to_params(), **flat}, sections)

    @classmethod
    def from_params(cls, params: dict[str, Any], sections: dict[str, type]) -> "Config":
        """Build the ``sections`` (name -> Section class) from flat params.

        A name of no section is an error that names it and the closest known name, so a
        misspelt key never vanishes.
        """
        owner = {f: n for n, c in sections.items() for f in field_names(c)}
        unknown = [k for k in params if k not in owner]
        if unknown:
            raise ConfigError("; ".join(f"{k}: unknown parameter{closest(k, owner)}"
                                        for k in unknown))
        return cls(**{n: c(**{f: params[f] for f in field_names(c) if f in params})
                      for n, c in sections.items()})


__all__ = ["Section", "AdapterConfig", "Config", "ConfigError", "DataConfig", "ModelConfig",
           "RunConfig", "SetupConfig", "TrainConfig", "closest", "coerce_value", "param"]
