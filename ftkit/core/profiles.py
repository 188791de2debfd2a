"""Parameter profiles for batch runs: YAML files under ``papermill_runs/profiles/``.

A profile says how large a run is (smoke test, workshop laptop, one GPU): the wall-clock
limits, the parameters injected into every notebook, and per-notebook overrides::

    description: one paragraph, shown in notebook 00 and the report
    timeout_s: 900          # wall-clock limit per notebook
    cell_timeout_s: 600     # papermill per-cell execution timeout
    params:                 # injected into every notebook that declares the name
      profile: smoke
    notebooks:              # per-notebook overrides, key = notebook stem
      03_model_initialisation: {max_new_tokens: 12}

Only parameters that a notebook declares in its ``parameters`` cell are injected, so one
profile can serve notebooks with different parameter sets.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ftkit.core.config import ConfigError

PROFILES_ENV = "FTKIT_PROFILES_DIR"
_KEYS = {"description", "timeout_s", "cell_timeout_s", "params", "notebooks"}


@dataclass(frozen=True)
class Profile:
    """One parameter profile.

    Attributes:
        name: the file stem, e.g. ``"smoke"``.
        description: a paragraph for notebook 00 and the report.
        timeout_s: wall-clock limit for a whole notebook.
        cell_timeout_s: papermill's limit for a single cell.
        params: parameters for every notebook.
        notebooks: notebook stem -> parameter overrides for that notebook.
    """

    name: str
    description: str = ""
    timeout_s: float = 900
    cell_timeout_s: float = 600
    params: dict[str, Any] = field(default_factory=dict)
    notebooks: dict[str, dict[str, Any]] = field(default_factory=dict)


def profiles_dir() -> Path:
    """The folder holding the profile YAML files.

    ``$FTKIT_PROFILES_DIR`` wins; then the repository's folder next to the package; then
    ``papermill_runs/profiles`` under the current directory (for non-editable installs).
    """
    env = os.environ.get(PROFILES_ENV)
    if env:
        return Path(env).expanduser()
    beside_package = Path(__file__).resolve().parents[2] / "papermill_runs" / "profiles"
    if beside_package.is_dir():
        return beside_package
    return Path.cwd() / "papermill_runs" / "profiles"


def list_profiles(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the available profiles, sorted."""
    folder = Path(directory) if directory is not None else profiles_dir()
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_profile(name: str, directory: str | os.PathLike | None = None) -> Profile:
    """Read and check one profile.

    Raises:
        ConfigError (a ValueError): unknown profile (the message lists the known ones) or a
            malformed file.
    """
    folder = Path(directory) if directory is not None else profiles_dir()
    known = list_profiles(folder)
    if name not in known:
        listed = ", ".join(known) or f"none found in {folder}"
        raise ConfigError(f"unknown profile {name!r}; known profiles: {listed}")
    path = folder / f"{name}.yaml"
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return _profile_from_mapping(name, data, path)


def params_for(profile: Profile, notebook_stem: str, declared: set[str]) -> dict[str, Any]:
    """Parameters to inject into one notebook.

    The profile's name comes first (as ``profile``), then the profile's ``params``, then the
    notebook's overrides; the result keeps only names the notebook declares, because
    papermill would otherwise inject variables that the notebook never reads.
    """
    merged: dict[str, Any] = {"profile": profile.name}
    merged.update(profile.params)
    merged.update(profile.notebooks.get(notebook_stem, {}))
    return {k: v for k, v in merged.items() if k in declared}


def _profile_from_mapping(name: str, data: Any, path: Path) -> Profile:
    """Build a Profile from parsed YAML, with errors that name the file and the key."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    unknown = set(data) - _KEYS
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    params = data.get("params") or {}
    notebooks = data.get("notebooks") or {}
    _require_mapping(params, "params", path)
    _require_mapping(notebooks, "notebooks", path)
    for stem, overrides in notebooks.items():
        _require_mapping(overrides or {}, f"notebooks.{stem}", path)
    return Profile(
        name=name,
        description=" ".join(str(data.get("description", "")).split()),
        timeout_s=_positive(data.get("timeout_s", 900), "timeout_s", path),
        cell_timeout_s=_positive(data.get("cell_timeout_s", 600), "cell_timeout_s", path),
        params=dict(params),
        notebooks={str(k): dict(v or {}) for k, v in notebooks.items()},
    )


def _require_mapping(value: Any, key: str, path: Path) -> None:
    """Raise a ConfigError naming ``key`` unless ``value`` is a mapping."""
    if not isinstance(value, dict):
        raise ConfigError(f"{path}: {key} must be a mapping, got {type(value).__name__}")


def _positive(value: Any, key: str, path: Path) -> float:
    """A positive number of seconds, or a ConfigError naming ``key``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ConfigError(f"{path}: {key} must be a positive number of seconds, got {value!r}")
    return value


BUILT_IN = ("smoke", "workshop", "gpu")


def save_notebook_params(name: str, notebook: str | None, params: dict[str, Any],
                         directory: str | os.PathLike | None = None) -> Path:
    """Write (or update) profile ``name`` so a batch run reproduces an interactive session.

    The new profile starts from the workshop profile's limits; ``params`` go under
    ``notebooks: {<notebook>: ...}`` (or the shared ``params`` when the notebook is unknown).
    The built-in profiles are never overwritten.
    """
    if name in BUILT_IN or not re.fullmatch(r"[A-Za-z0-9_-]+", name or ""):
        raise ConfigError(f"profile name {name!r}: use letters, digits, - or _, and not one of "
                         f"the built-in profiles {list(BUILT_IN)}")
    folder = Path(directory) if directory is not None else profiles_dir()
    path = folder / f"{name}.yaml"
    base = load_profile(name, folder) if path.exists() else load_profile("workshop", folder)
    data = {"description": f"Saved from the widget panel{f' of {notebook}' if notebook else ''}.",
            "timeout_s": base.timeout_s, "cell_timeout_s": base.cell_timeout_s,
            "params": dict(base.params), "notebooks": dict(base.notebooks)}
    if notebook:
        data["params"]["profile"] = params.get("profile", data["params"].get("profile"))
        data["notebooks"][notebook] = params
    else:
        data["params"].update(params)
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    load_profile(name, folder)  # what was written must read back as a valid profile
    return path
