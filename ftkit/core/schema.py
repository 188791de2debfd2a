"""One parameter schema per notebook: which fields it declares, their defaults, and where a run's
values come from.

A schema is a frozen dataclass built by :func:`notebook_schema` from the stage sections
(``TrainConfig``, ``AdapterConfig``, ``DPOSettings`` …): each of its flat fields keeps the type,
help text and range of the section field it takes, plus the notebook's own default and its group
(the section's name). The ``parameters`` cell, the panel, the profiles and ``ftkit run`` all read
this one declaration:

- an unknown or misspelt name stops the run before any work, naming the notebook and the
  closest valid name (``betaa: unknown parameter of 08_dpo_alignment; did you mean beta?``);
- ``profile`` loads that profile's values for the notebook; values given explicitly (those that
  differ from the schema's defaults) still win.

An instance validates every section (their cross-field checks too) and exposes them as
attributes, so notebooks read ``params.train.lr`` or ``params.experiment.tasks``.
"""
from __future__ import annotations

import ast
import copy
import dataclasses
import typing
from typing import Any, ClassVar

from ftkit.core.config import (
    Config,
    ConfigError,
    RunConfig,
    closest,
    coerce_value,
)
from ftkit.core.profiles import load_profile

# Names IPython itself keeps in a notebook's namespace.
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython"}
PLAIN = (bool, int, float, str, list, dict, type(None))


class NotebookParams:
    """Base of every notebook schema: flat, validated fields plus their sections as attributes."""

    NOTEBOOK: ClassVar[str] = ""
    GROUPS: ClassVar[dict[str, tuple[type, tuple[str, ...]]]] = {}

    def __post_init__(self) -> None:
        built = {}
        for group, (cls, names) in self.GROUPS.items():
            values = {n: getattr(self, n) for n in names}
            try:
                built[group] = cls(**values)
            except ConfigError as err:
                raise ConfigError(f"{self.NOTEBOOK}: {err}") from None
            for n in names:  # keep the coerced values (e.g. 1 -> 1.0 for a float field)
                object.__setattr__(self, n, getattr(built[group], n))
        built.setdefault("run", RunConfig())
        object.__setattr__(self, "_config", Config(**built))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(object.__getattribute__(self, "_config"), name)

    def to_params(self) -> dict[str, Any]:
        """The declared fields as a flat dict (what papermill and profiles hold)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> "NotebookParams":
        """A new validated instance with some fields changed; unknown names are errors."""
        check_names(type(self), changes, "replace()")
        return type(self)(**{**self.to_params(), **changes})

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(cls)}

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]


def notebook_schema(notebook: str, class_name: str, **groups: tuple[type, dict[str, Any]]) -> type:
    """Build the schema dataclass of ``notebook``.

    Args:
        notebook: the notebook's stem, e.g. ``"06_lora_vs_dora"``.
        class_name: the dataclass's name, e.g. ``"LoraVsDoraParams"``.
        groups: ``group=(SectionClass, {field: default, ...})`` in panel order; each field
            must exist in that section; the default is the notebook's own.
    """
    fields, seen, declared = [], set(), {}
    for group, (cls, defaults) in groups.items():
        hints = typing.get_type_hints(cls)
        by_name = {f.name: f for f in dataclasses.fields(cls)}
        for name, default in defaults.items():
            if name not in by_name:
                raise TypeError(f"{notebook}: {cls.__name__} has no field {name!r}"
                                f"{closest(name, by_name)}")
            if name in seen:
                raise TypeError(f"{notebook}: parameter {name!r} declared twice")
            seen.add(name)
            meta = {**by_name[name].metadata, "group": group}
            value = coerce_value(f"{notebook}.{name} = {default!r}", meta, hints[name], default)
            spec = (dataclasses.field(default_factory=_copier(value), metadata=meta)
                    if isinstance(value, (list, dict)) else
                    dataclasses.field(default=value, metadata=meta))
            fields.append((name, hints[name], spec))
        declared[group] = (cls, tuple(defaults))
    schema = dataclasses.make_dataclass(class_name, fields, bases=(NotebookParams,), frozen=True,
                                        namespace={"NOTEBOOK": notebook, "GROUPS": declared})
    schema.__doc__ = f"The parameters of notebooks/{notebook}.ipynb."
    return schema


def _copier(value: Any):
    return lambda: copy.deepcopy(value)


def check_names(schema: type, values: dict[str, Any], source: str) -> None:
    """Raise one ConfigError naming every key of ``values`` the schema does not declare."""
    known = schema.names()
    unknown = [k for k in values if k not in known]
    if unknown:
        lines = [f"{k}: unknown parameter of {schema.NOTEBOOK}{closest(k, known)}"
                 for k in unknown]
        raise ConfigError(f"{source}: " + "; ".join(lines))


def profile_values(schema: type, profile: str) -> dict[str, Any]:
    """The values profile ``profile`` sets for this notebook (shared params, then its own)."""
    loaded = load_profile(profile)
    shared = {k: v for k, v in loaded.params.items() if k in schema.names()}
    own = loaded.notebooks.get(schema.NOTEBOOK, {})
    check_names(schema, own, f"profile {profile!r}")
    return {**shared, **own}


def resolve(schema: type, given: dict[str, Any], source: str = "parameters") -> NotebookParams:
    """Schema defaults, then the chosen profile's values, then the values given explicitly.

    A given value counts as explicit when it differs from the schema's default; so the
    parameters cell (which mirrors the defaults) changes nothing, and ``-p profile smoke``
    alone runs the smoke sizes.
    """
    check_names(schema, given, source)
    defaults = schema.defaults()
    explicit = {k: v for k, v in given.items() if v != defaults[k]}
    profile = given.get("profile", defaults.get("profile", "workshop"))
    RunConfig(profile=profile)  # an unknown profile name fails here, listing the known ones
    return schema(**{**defaults, **profile_values(schema, profile), **explicit})


def cell_parameters(namespace: dict[str, Any]) -> dict[str, Any]:
    """The values the ``parameters`` cell (and papermill's injected cell) set in ``namespace``.

    In IPython these are the names assigned by the cells run just before this one that hold
    nothing but ``name = literal`` lines; that excludes variables a previous run of the same
    kernel left behind. Elsewhere, every plain value whose name does not start with ``_``.
    """
    history = namespace.get("In")
    names = _literal_cells(history[:-1]) if isinstance(history, list) and len(history) > 1 else None
    if names is None:
        names = {k for k, v in namespace.items()
                 if not k.startswith("_") and k not in _IPYTHON_NAMES and isinstance(v, PLAIN)}
    return {k: namespace[k] for k in sorted(names) if k in namespace}


def _literal_cells(sources: list[str]) -> set[str] | None:
    names: set[str] = set()
    for source in reversed(sources):
        try:
            body = ast.parse(source).body
        except SyntaxError:
            break
        if not body or not all(_literal_assignment(s) for s in body):
            break
        names |= {s.targets[0].id for s in body}
    return names or None


def _literal_assignment(node: ast.stmt) -> bool:
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)):
        return False
    try:
        ast.literal_eval(node.value)
    except (ValueError, SyntaxError, TypeError):
        return False
    return True


__all__ = ["NotebookParams", "cell_parameters", "check_names", "notebook_schema",
           "profile_values", "resolve"]
