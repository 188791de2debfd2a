"""Exports of a fine-tuned model, the files a server or another team loads (paper §8.1).

- :func:`export_adapter`: the LoRA adapter alone, in peft's format (``adapter_config.json``,
  ``adapter_model.safetensors``), with the tokenizer; loads with plain
  ``peft.PeftModel.from_pretrained`` on the base model.
- :func:`export_merged`: the adapter folded into the base weights (``merge_and_unload``), a
  plain transformers checkpoint in safetensors with tokenizer, chat template and generation
  config; loads with plain ``AutoModelForCausalLM.from_pretrained`` and serves with
  ``transformers serve`` or ``ftkit serve``.

:func:`verify_exports` loads them back in a fresh process with plain peft/transformers and
compares logits with the model in memory.

Every export is written to a temporary folder beside the target and renamed when complete, so
a target is either whole or absent; a target that exists and is not empty is refused.
:func:`assistant_exports` builds the running example's exports (base, adapter, merged) once per
assistant and caches them beside it.
"""
from __future__ import annotations

import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from ftkit import models
from ftkit.core.config import ConfigError
from ftkit.core.files import exclusive
from ftkit.train import assistant


def publish(build_into: Callable[[Path], None], target: str | Path) -> Path:
    """``build_into(tmp)`` on a temporary sibling of ``target``, renamed to ``target`` when it
    returns (ftkit.train.assistant.publish); an existing non-empty ``target`` is refused."""
    target = Path(target)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise ConfigError(f"export target {str(target)!r} exists and is not empty; choose a "
                          "new folder or remove it")
    if target.exists():
        target.rmdir()  # empty, checked above
    return assistant.publish(build_into, target)


def export_adapter(peft_model, tokenizer, target: str | Path) -> Path:
    """The adapter in peft's format (safetensors) with the tokenizer."""
    if not hasattr(peft_model, "peft_config"):
        raise ConfigError("export_adapter needs a peft model (base + adapter)")

    def build(tmp: Path) -> None:
        peft_model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return publish(build, target)


def export_merged(model, tokenizer, target: str | Path) -> Path:
    """A plain checkpoint: a peft model's adapter merged into a copy of its base (the model
    itself is left as it is), or a plain model as it is; safetensors, tokenizer, chat template
    and generation config."""
    def build(tmp: Path) -> None:
        plain = copy.deepcopy(model).merge_and_unload() if hasattr(model, "peft_config") \
            else model
        plain.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return publish(build, target)


def folder_mb(folder: str | Path) -> float:
    """Size of the files in ``folder``, in MB."""
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file()) / 1e6


def assistant_exports(profile: str = "workshop", seed: int = 42) -> dict[str, Path]:
    """The running example's exports for ``profile``: ``base`` (the untuned model as a plain
    checkpoint), ``adapter`` and ``merged``; built once, beside the cached assistant."""
    shop = assistant.fine_tuned(profile, seed)
    root = Path(shop.info["folder"]).with_name(f"{shop.info['key']}-exports")
    folders = {name: root / name for name in ("base", "adapter", "merged")}
    with exclusive(root):  # notebooks running side by side build them once
        if not folders["adapter"].is_dir():
            export_adapter(shop.model, shop.tokenizer, folders["adapter"])
        if not folders["merged"].is_dir():
            export_merged(shop.model, shop.tokenizer, folders["merged"])
        if not folders["base"].is_dir():
            base, tokenizer = models.load(shop.info["recipe"]["model_name"])
            export_merged(base, tokenizer, folders["base"])
    return folders


# Run in a fresh interpreter: only torch, numpy, transformers and peft, as another team would.
PLAIN_LOAD = """
import sys, numpy, torch
from transformers import AutoModelForCausalLM
folder, base, ids_file, out_file = sys.argv[1:5]
if base:
    from peft import PeftModel
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), folder)
else:
    model = AutoModelForCausalLM.from_pretrained(folder)
with torch.no_grad():
    logits = model.eval()(input_ids=torch.from_numpy(numpy.load(ids_file))).logits
numpy.save(out_file, logits.float().numpy())
"""


def logits_in_fresh_process(folder: str | Path, input_ids: torch.Tensor,
                            base: str | Path | None = None, timeout: float = 600.0) -> np.ndarray:
    """Logits of the export in ``folder`` for ``input_ids``, computed by a new Python process
    that loads it with plain transformers (an adapter: plain ``peft.PeftModel`` on ``base``)."""
    with tempfile.TemporaryDirectory() as tmp:
        ids_file, out_file = Path(tmp) / "ids.npy", Path(tmp) / "logits.npy"
        np.save(ids_file, input_ids.cpu().numpy())
        done = subprocess.run([sys.executable, "-c", PLAIN_LOAD, str(folder), str(base or ""),
                               str(ids_file), str(out_file)], capture_output=True, text=True,
                              timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"})
        if done.returncode != 0:
            raise RuntimeError(f"loading {folder} in a fresh process failed:\n"
                               f"{done.stderr[-2000:]}")
        return np.load(out_file, allow_pickle=False)


@torch.inference_mode()
def verify_exports(exports: dict[str, Path], reference, input_ids: torch.Tensor) -> pd.DataFrame:
    """Load the ``adapter`` (on ``base``) and ``merged`` exports in fresh processes with plain
    peft/transformers and compare their logits with ``reference`` (the model in memory)."""
    want = reference(input_ids=input_ids).logits.float().numpy()
    rows = {}
    for kind, base, how in (("adapter", exports["base"], "peft.PeftModel.from_pretrained"),
                            ("merged", None, "AutoModelForCausalLM.from_pretrained")):
        got = logits_in_fresh_process(exports[kind], input_ids, base)
        rows[kind] = {"loads_with": how, "size_mb": folder_mb(exports[kind]),
                      "max_logit_diff": float(np.abs(got - want).max())}
    return pd.DataFrame(rows).T.astype({"size_mb": float, "max_logit_diff": float})


__all__ = ["assistant_exports", "export_adapter", "export_merged", "folder_mb",
           "logits_in_fresh_process", "publish", "verify_exports"]
