"""Record a notebook's results: metrics, checked paper claims, figures and parameters.

Notebooks call these functions instead of only printing numbers, so that the batch runner
(:mod:`ftkit.batch.runner`) can collect every result into one report. Everything goes to a single
JSON file, rewritten atomically after each call::

    {"metrics": {name: value},
     "tables": {name: {"columns": [...], "rows": [[...], ...]}},
     "claims": [{"text": ..., "ok": true, "detail": ...}],
     "figures": ["figures/loss.png"],
     "params": {...}}

The file is ``$FTKIT_METRICS_FILE`` when set (the runner sets it per notebook), else
``<output dir>/metrics.json``. Calls are idempotent per name, so re-running a cell by hand
replaces its earlier entries instead of piling up duplicates.
"""
from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

METRICS_ENV = "FTKIT_METRICS_FILE"
DEFAULT_OUTPUT_DIR = Path("outputs")
MAX_METRIC_CHARS = 100_000  # larger values belong in a file of their own, not in the report
_MAX_DEPTH = 20

_output_dir: Path | None = None


def set_output_dir(path: str | os.PathLike | None) -> Path:
    """Set the folder for figures (and for metrics.json when no env var names one).

    Relative paths are resolved against the current directory now, so a later ``chdir``
    does not move the outputs. ``None`` restores the default.
    """
    global _output_dir
    _output_dir = None if path is None else Path(path).expanduser().resolve()
    return output_dir()


def output_dir() -> Path:
    """The folder that figures are written under.

    Explicitly set folder first; under the runner, the metrics file's folder, so that figures
    land inside the run directory even when a notebook never calls :func:`set_output_dir`.
    """
    if _output_dir is not None:
        return _output_dir
    env = os.environ.get(METRICS_ENV)
    if env:
        return Path(env).expanduser().resolve().parent
    return DEFAULT_OUTPUT_DIR


def metrics_path() -> Path:
    """The metrics file that the functions of this module write to."""
    env = os.environ.get(METRICS_ENV)
    if env:
        return Path(env).expanduser()
    return output_dir() / "metrics.json"


def empty_metrics() -> dict:
    """A metrics document with nothing recorded yet."""
    return {"metrics": {}, "tables": {}, "claims": [], "figures": [], "params": {},
            "readings": {}}


def load_metrics(path: str | os.PathLike) -> dict:
    """Read a metrics file; a missing file reads as an empty document.

    Raises:
        ValueError: the file exists but is not a JSON object.
    """
    path = Path(path)
    if not path.exists():
        return empty_metrics()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    doc = empty_metrics()
    doc.update(data)
    return doc


def record(name: str, value: Any) -> Any:
    """Store one metric under ``name`` and print ``metric name = value``; returns ``value``.

    numpy and torch scalars (and small arrays/tensors) are converted to plain Python values.
    Non-finite floats are stored as they are: hiding a NaN would hide a broken run.
    """
    _check_name(name)
    stored = to_jsonable(value)
    if len(json.dumps(stored)) > MAX_METRIC_CHARS:
        raise ValueError(f"metric {name!r} is too large for the report; save it to a file")
    doc = _read()
    doc["metrics"][name] = stored
    _write(doc)
    shown = stored if isinstance(stored, str) else repr(stored)
    print(f"metric {name} = {shown}")
    return value


def record_table(name: str, table: Any, digits: int = 4) -> Any:
    """Store a results table (a pandas DataFrame; its index becomes the first column) so the
    run report shows it whole; floats are rounded to ``digits`` and NaN cells (not applicable,
    e.g. the step time of an untrained baseline) stored as null. Returns ``table``."""
    import pandas as pd

    _check_name(name)
    plain_index = isinstance(table.index, pd.RangeIndex) and table.index.name is None
    frame = table if plain_index else table.reset_index()
    rows = [[None if isinstance(v, float) and math.isnan(v) else  # "not applicable" cells
             round(v, digits) if isinstance(v, float) else v for v in row]
            for row in to_jsonable(frame.values.tolist())]
    stored = {"columns": [str(c) for c in frame.columns], "rows": rows}
    if len(json.dumps(stored)) > MAX_METRIC_CHARS:
        raise ValueError(f"table {name!r} is too large for the report; save it to a file")
    doc = _read()
    doc["tables"][name] = stored
    _write(doc)
    print(f"table {name}: {len(rows)} rows x {len(stored['columns'])} columns")
    return table


def claim(text: str, ok: bool, detail: str = "") -> bool:
    """Record whether a paper's claim holds on this notebook's own results; returns ``ok``."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("a claim needs a non-empty text")
    ok = bool(ok)
    entry = {"text": text, "ok": ok, "detail": str(detail)}
    doc = _read()
    doc["claims"] = [c for c in doc["claims"] if c.get("text") != text] + [entry]
    _write(doc)
    verdict = "CLAIM HOLDS" if ok else "CLAIM DOES NOT HOLD"
    print(f"{verdict}: {text}" + (f" ({detail})" if detail else ""))
    return ok


def record_reading(name: str, text: str) -> str:
    """Store a "reading the results" passage (Markdown written from this run's numbers)."""
    _check_name(name)
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"reading {name!r} needs a non-empty text")
    doc = _read()
    doc["readings"][name] = text.strip()
    _write(doc)
    return text


def save_figure(fig: Any, name: str) -> Path:
    """Save a matplotlib figure as ``<output dir>/figures/<name>.png`` and list it.

    The listed path is relative to the metrics file's folder, so a run directory can be moved
    or archived without breaking the report's image links.
    """
    stem = _safe_file_stem(name)
    path = output_dir() / "figures" / f"{stem}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    base = metrics_path().resolve().parent
    rel = Path(os.path.relpath(path.resolve(), base)).as_posix()
    doc = _read()
    doc["figures"] = [f for f in doc["figures"] if f != rel] + [rel]
    _write(doc)
    return path


def record_params(params: Mapping[str, Any]) -> dict:
    """Store the notebook's parameters (replacing any stored before); returns them converted."""
    if not isinstance(params, Mapping):
        raise TypeError("record_params expects a mapping of parameter names to values")
    stored = to_jsonable(dict(params))
    doc = _read()
    doc["params"] = stored
    _write(doc)
    return stored


def to_jsonable(value: Any, _depth: int = 0) -> Any:
    """Convert a value to plain JSON types; numpy/torch objects via ``tolist``/``item``.

    Raises:
        TypeError: the value has no JSON form.
    """
    if _depth > _MAX_DEPTH:
        raise ValueError("value is nested too deeply (or refers to itself)")
    if value is None or isinstance(value, str):
        return value
    # bool before int: bool is an int subclass; the casts turn numpy's float64 into float
    for kind in (bool, int, float):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, _depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, _depth + 1) for v in value]
    for method in ("tolist", "item"):
        if callable(getattr(value, method, None)):
            return to_jsonable(getattr(value, method)(), _depth + 1)
    raise TypeError(f"cannot record a value of type {type(value).__name__}")


def is_finite_number(value: Any) -> bool:
    """True for ints and finite floats; False for NaN/inf and for non-numbers."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value)


def _check_name(name: str) -> None:
    """Refuse names that would make the report ambiguous."""
    if not isinstance(name, str) or not name.strip():
        raise ValueError("a metric needs a non-empty string name")


def _safe_file_stem(name: str) -> str:
    """A file name stem made of safe characters, so image links need no escaping."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("._")
    if not stem:
        raise ValueError(f"figure name {name!r} has no usable characters")
    return stem


def _read() -> dict:
    """The current document of the active metrics file."""
    return load_metrics(metrics_path())


def _write(doc: dict) -> None:
    """Replace the metrics file atomically, so a killed kernel never leaves half a file."""
    path = metrics_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".metrics-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=2, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
