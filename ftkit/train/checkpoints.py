"""Checkpoints that survive a crash: an integrity marker per save, and the newest valid one.

What: transformers' Trainer, given ``save_strategy="steps", save_steps=N``, writes a
``checkpoint-<step>`` folder every N optimiser steps holding everything a run needs to go on:
the weights (``model.safetensors``, or ``adapter_model.safetensors`` + ``adapter_config.json``
for a peft model), ``optimizer.pt``, ``scheduler.pt``, ``rng_state.pth`` (Python, NumPy and
torch generators) and ``trainer_state.json`` (global step and epoch, from which the Trainer
finds the data position on resume, plus the log history); ftkit keeps that mechanism.
It adds :class:`IntegrityCallback`, which after the Trainer has finished writing a checkpoint
flushes its files to disk and records each file's size and sha256 in ``ftkit-complete.json``,
and :func:`latest_valid_checkpoint`, which picks the newest checkpoint whose marker matches
its files and whose files load (safetensors headers, ``torch.load(weights_only=True)``),
naming every newer one it skips and why.

Data order: the Trainer skips the batches already trained in the current epoch. From a
checkpoint at an epoch end the order is replayed exactly (the tests kill and resume at such a
point). With transformers' length-grouped sampler, an option ftkit does not use by default, a
mid-epoch resume follows a different order for the rest of that epoch, because the Trainer
restores the generator only after drawing that order (about 0.1 % on the final loss in the
tests' tiny run).

Why: a run killed while saving (power cut, out-of-memory killer, a closed laptop) leaves a
folder that looks like a checkpoint but holds a truncated or missing file; resuming from it
crashes or silently restarts from a broken state. Long CPU runs need to restart from the last
good save instead of from zero (paper §5.3, training setup; §6.1, the fine-tuning loop).

Used by ftkit.train.sft (``make_trainer(save_steps=...)`` and ``train(trainer, resume=True)``).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from ftkit.core.config import ConfigError

MARKER = "ftkit-complete.json"
PREFIX = "checkpoint-"  # transformers.trainer_utils.PREFIX_CHECKPOINT_DIR + "-"
STATE = "trainer_state.json"
TORCH_FILES = ("optimizer.pt", "scheduler.pt")  # loaded by the Trainer with weights_only=True
_CHUNK = 1 << 20


def save_overrides(save_steps: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """TrainingArguments overrides for a checkpoint every ``save_steps`` steps (0 = none)."""
    if isinstance(save_steps, bool) or not isinstance(save_steps, int) or save_steps < 0:
        raise ConfigError(f"save_steps = {save_steps!r}: must be 0 (no checkpoints) or a "
                          "positive whole number of optimiser steps between checkpoints")
    if not save_steps:
        return dict(overrides)
    clash = sorted({"save_strategy", "save_steps"} & set(overrides))
    if clash:
        raise ConfigError(f"save_steps = {save_steps} together with overrides {clash}: give "
                          "the checkpoint interval once, as save_steps")
    return {**overrides, "save_strategy": "steps", "save_steps": save_steps}


def _sha256(path: Path, sync: bool = False) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(block)
        if sync:  # the marker promises the bytes are on disk, not only in the page cache
            os.fsync(fh.fileno())
    return digest.hexdigest()


def write_marker(folder: str | os.PathLike) -> Path:
    """Flush ``folder``'s files and record their sizes and sha256 in ``ftkit-complete.json``.

    The marker is written to a temporary name and renamed, so it exists only whole.
    """
    folder = Path(folder)
    tmp = folder / f".{MARKER}.tmp"  # left behind if a previous marker write was cut off
    files = {p.name: {"bytes": p.stat().st_size, "sha256": _sha256(p, sync=True)}
             for p in sorted(folder.iterdir()) if p.is_file() and p.name not in (MARKER, tmp.name)}
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump({"files": files}, fh, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, folder / MARKER)
    try:  # make the rename itself durable (POSIX; not possible on Windows)
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return folder / MARKER


class IntegrityCallback(TrainerCallback):
    """Writes ``ftkit-complete.json`` into each checkpoint once the Trainer has saved it.

    ``on_save`` runs after ``Trainer._save_checkpoint`` has written the weights, optimiser,
    scheduler, RNG states and trainer state, so a folder without the marker was interrupted.
    """

    def on_save(self, args, state, control, **kwargs):
        folder = Path(args.output_dir) / f"{PREFIX}{state.global_step}"
        if state.is_world_process_zero and folder.is_dir():
            write_marker(folder)


def checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``output_dir``, highest step first."""
    root = Path(output_dir)
    if not root.exists():
        return []
    if not root.is_dir():
        raise ConfigError(f"output_dir = {str(root)!r} is a file: must be a folder (or not "
                          "exist yet)")
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if p.is_dir() and (m := re.fullmatch(re.escape(PREFIX) + r"(\d+)", p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def _marker_problem(folder: Path) -> str | None:
    try:
        listed = json.loads((folder / MARKER).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"{MARKER} is unreadable ({type(err).__name__}: {err})"
    for name, meta in listed.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing (listed in {MARKER})"
        if path.stat().st_size != meta["bytes"]:
            return (f"{name} has {path.stat().st_size} bytes, {MARKER} recorded "
                    f"{meta['bytes']} (truncated or rewritten)")
        if _sha256(path) != meta["sha256"]:
            return f"{name} does not match its sha256 in {MARKER} (changed after saving)"
    return None


def _load_problem(folder: Path) -> str | None:
    """Whether the files the Trainer reads on resume exist, are non-empty and load."""
    import torch
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals

    weights = sorted(folder.glob("*.safetensors"))
    rng = sorted(folder.glob("rng_state*.pth"))  # rng_state_<rank>.pth in distributed runs
    required = [folder / STATE, *(folder / n for n in TORCH_FILES)]
    missing = [p.name for p in required if not p.is_file()]
    missing += [] if weights else ["model weights (*.safetensors)"]
    missing += [] if rng else ["rng_state.pth"]
    if missing:
        return f"missing {', '.join(missing)}"
    empty = [p.name for p in [*required, *weights, *rng] if p.stat().st_size == 0]
    if empty:
        return f"empty (0 bytes): {', '.join(empty)}"
    try:
        step = json.loads((folder / STATE).read_text(encoding="utf-8"))["global_step"]
        if not isinstance(step, int):
            raise TypeError(f"global_step is {step!r}")
    except (ValueError, KeyError, TypeError) as err:
        return f"{STATE} does not parse ({type(err).__name__}: {err})"
    name = ""
    try:
        for path in weights:
            name = path.name
            with safe_open(str(path), framework="pt") as fh:
                list(fh.keys())
        for name in TORCH_FILES:
            torch.load(folder / name, map_location="cpu", weights_only=True, mmap=True)
        for path in rng:  # NumPy's RNG state needs numpy types allow-listed, as the Trainer does
            name = path.name
            with safe_globals():
                torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to load means "not resumable"
        return f"{name} does not load ({type(err).__name__}: {str(err)[:160]})"
    return None


def checkpoint_problem(folder: str | os.PathLike, require_marker: bool = True) -> str | None:
    """What is wrong with checkpoint ``folder``, or None when it can be resumed from.

    ``require_marker``: a folder without ``ftkit-complete.json`` counts as interrupted (set
    False for checkpoints written without :class:`IntegrityCallback`; the load checks remain).
    """
    folder = Path(folder)
    if (folder / MARKER).is_file():
        problem = _marker_problem(folder)
        if problem:
            return problem
    elif require_marker:
        return (f"no {MARKER}: the save did not finish (or the checkpoint was not written "
                "with ftkit's IntegrityCallback)")
    return _load_problem(folder)


def latest_valid_checkpoint(output_dir: str | os.PathLike, require_marker: bool = True,
                            log: Callable[[str], None] = print) -> Path | None:
    """The newest checkpoint in ``output_dir`` that passes :func:`checkpoint_problem`, or None.

    Each newer checkpoint that fails is skipped with a ``log`` line naming it and the problem.
    """
    for folder in checkpoints(output_dir):
        problem = checkpoint_problem(folder, require_marker)
        if problem is None:
            return folder
        log(f"skipping checkpoint {folder}: {problem}")
    return None

