"""The library versions ftkit is tested with, and a clear warning when others are found.

New releases of transformers/peft/trl rename arguments and remove trainers; the most common
breakage of notebook collections. The pins below agree with requirements/constraints.txt
(a test checks it); ``check()`` names each difference once per process.
"""
from __future__ import annotations

import functools
import warnings
from importlib import metadata

TESTED = {"torch": "2.13.0", "transformers": "5.23.0", "peft": "0.21.2", "trl": "1.16.0",
          "datasets": "5.2.0", "accelerate": "1.15.0", "papermill": "2.7.0",
          "ipywidgets": "8.1.9"}


def installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def untested() -> dict[str, tuple[str | None, str]]:
    """``{package: (installed, tested)}`` for every pinned package whose version differs."""
    found = {name: installed(name) for name in TESTED}
    return {n: (v, TESTED[n]) for n, v in found.items()
            if v is None or v.split("+")[0] != TESTED[n]}


@functools.lru_cache(maxsize=1)
def check() -> dict[str, tuple[str | None, str]]:
    """Warn once about untested versions; returns the differences."""
    diff = untested()
    if diff:
        listed = ", ".join(f"{n} {v or 'missing'} (tested {t})" for n, (v, t) in diff.items())
        warnings.warn(f"ftkit was tested with other versions: {listed}. If a notebook breaks, "
                      "install the pinned set: bash scripts/setup.sh", stacklevel=2)
    return diff


def table() -> list[dict]:
    """Rows of package, installed version, tested version and whether they agree."""
    rows = []
    for name, tested in TESTED.items():
        have = installed(name)
        ok = have is not None and have.split("+")[0] == tested
        rows.append({"package": name, "installed": have or "missing", "tested": tested,
                     "status": "ok" if ok else "untested"})
    return rows
