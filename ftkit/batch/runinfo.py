"""Describe the machine and software a batch run used, for run.json and the report."""
from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

from ftkit.core.versions import installed

PACKAGES = (
    "torch", "transformers", "peft", "trl", "datasets", "accelerate",
    "papermill", "ipywidgets", "numpy",
)


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (absent ones left out), plus Python's own."""
    found = {name: installed(name) for name in names}
    return {"python": platform.python_version(), **{n: v for n, v in found.items() if v}}


def git_revision(path: str | os.PathLike) -> dict:
    """``{"revision": sha or "unknown", "dirty": bool or None}`` for the checkout at ``path``."""
    revision = _git(path, "rev-parse", "HEAD")
    if revision is None:
        return {"revision": "unknown", "dirty": None}
    status = _git(path, "status", "--porcelain")
    return {"revision": revision, "dirty": None if status is None else bool(status)}


def cpu_counts() -> dict[str, int | None]:
    """Logical CPUs of the machine and those this process may use (cgroups, taskset)."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    return {"cpu_count": os.cpu_count(), "cpus_usable": usable}


def environment(repo_root: str | os.PathLike) -> dict:
    """Everything run.json records about where a run happened."""
    return {
        "python_executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        **cpu_counts(),
        "packages": package_versions(),
        "git": git_revision(repo_root),
    }


def _git(path: str | os.PathLike, *args: str) -> str | None:
    """Output of a read-only git command in ``path``; None when git or the repo is missing."""
    try:
        done = subprocess.run(
            ["git", "-C", str(Path(path)), *args],
            capture_output=True, text=True, timeout=30, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
