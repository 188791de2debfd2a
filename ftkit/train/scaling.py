"""What data-parallel launches measure, and what fits where (paper §5.2, §5.6).

- :func:`scaling_runs` — notebook 19's four launches of ftkit.train.distributed's training
  function at one global batch: one process on all cores, one on one thread, N processes
  (DDP), one process accumulating N micro-batches; :func:`scaling_table`, :func:`summary`;
- :func:`compare_losses`, :func:`adapter_difference` — did two launches train the same model?
- :func:`memory_per_device`, :func:`memory_table`, :func:`fits` — the model-state memory of
  mixed-precision AdamW training under DDP, ZeRO-1/2/3 (FSDP), LoRA and QLoRA;
- figures of the losses, the speed and memory of the launches, and the memory table.

Used in notebooks/19_scaling_out.ipynb and tests/train/test_distributed.py.
"""
from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Callable

import pandas as pd
from safetensors.torch import load_file

from ftkit.core.config import ConfigError
from ftkit.train.distributed import Job, check_plan, launch


def summary(results: list[dict], skip: int = 1) -> dict:
    """One launch in numbers: examples/s and tokens/s over the steps after ``skip`` warm-up
    steps, mean step seconds, peak RSS per process, and the all-reduce share of a step."""
    steps = [r["step_seconds"][skip:] or r["step_seconds"] for r in results]
    step = max(sum(s) / len(s) for s in steps)  # the slowest rank sets the pace
    first = results[0]
    per_step = first["examples"] / max(1, len(first["step_seconds"]))
    comm = max(r["allreduce_seconds"] for r in results)
    tokens = first["tokens"]  # the Trainer gathers the count over processes: every rank's
    return {"processes": first["world"], "threads_each": first["threads"],
            "step_s": step, "examples_per_s": per_step / step,
            "tokens_per_s": tokens / len(first["step_seconds"]) / step,
            "peak_rss_mb_per_process": max(r["peak_rss_mb"] for r in results),
            "allreduce_s": comm, "comm_share": comm / step,
            "allreduce_full_s": max(r.get("allreduce_full_seconds", 0.0) for r in results),
            "train_s": max(r["train_seconds"] for r in results)}


def compare_losses(a: list[dict], b: list[dict], steps: int | None = None) -> pd.DataFrame:
    """The logged losses of two launches step by step, with their absolute difference."""
    la, lb = a[0]["losses"], b[0]["losses"]
    n = min(len(la), len(lb), steps or len(la))
    return pd.DataFrame({"step": range(1, n + 1), "A": la[:n], "B": lb[:n],
                         "abs_diff": [abs(x - y) for x, y in zip(la[:n], lb[:n])]})


def adapter_difference(folder_a: str | Path, folder_b: str | Path) -> dict:
    """How far two saved LoRA adapters are apart, in the weight updates they make.

    ``relative``: ‖ΔW_a − ΔW_b‖ / ‖ΔW_a‖ over all layers, where ΔW = B·A is the change an
    adapter adds to a frozen weight (the same scale for both); ``max_abs``: the largest
    difference of any stored tensor. Two runs on different data give a relative difference
    near 1; the same training split over processes differs only by float rounding."""
    wa = load_file(str(Path(folder_a) / "adapter_model.safetensors"))
    wb = load_file(str(Path(folder_b) / "adapter_model.safetensors"))
    if wa.keys() != wb.keys():
        raise ConfigError("the adapters hold different tensors: "
                          f"{sorted(wa.keys() ^ wb.keys())[:4]}")
    diff = norm = 0.0
    for key in (k for k in wa if "lora_A" in k):
        b_key = key.replace("lora_A", "lora_B")
        delta_a = wa[b_key].float() @ wa[key].float()
        delta_b = wb[b_key].float() @ wb[key].float()
        diff += float(((delta_a - delta_b) ** 2).sum())
        norm += float((delta_a ** 2).sum())
    return {"relative": (diff / norm) ** 0.5 if norm else float(diff > 0),
            "max_abs": max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)}


def scaling_runs(job: Job, global_batch: int, processes: int, launcher: str = "torchrun",
                 allow_oversubscribe: bool = False, cores: int | None = None,
                 log: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """The four launches of notebook 19, all with ``global_batch`` examples per step:

    - one process using every core (the usual single-process run);
    - one process on one thread (what one core does alone: the base of scaling efficiency);
    - ``processes`` processes (DDP), ``global_batch / processes`` each, cores shared out;
    - one process accumulating ``processes`` micro-batches of that size (the single-process
      equivalent of the DDP run).
    ``job`` gives the model, data and training values; its batch and threads are set here."""
    cores = cores or os.cpu_count() or 1
    each = global_batch // processes
    check_plan(processes, global_batch, cores, allow_oversubscribe)
    threads = max(1, cores // processes)
    out = Path(job.out_dir)
    plans = {f"1 process × {cores} threads": (1, dict(batch_size=global_batch, threads=cores)),
             "1 process × 1 thread": (1, dict(batch_size=global_batch, threads=1)),
             f"{processes} processes (DDP)": (processes, dict(batch_size=each, threads=threads,
                                                              time_full_allreduce=True)),
             f"1 process, {processes} accumulated": (1, dict(batch_size=each,
                                                             grad_accum=processes,
                                                             threads=cores))}
    runs = {}
    for i, (name, (n, values)) in enumerate(plans.items()):
        run = dataclasses.replace(job, out_dir=str(out / f"run{i}"), **values)
        runs[name] = launch(run, n, launcher if n > 1 else "torchrun",
                            allow_oversubscribe=allow_oversubscribe, log=log)
    return runs


def scaling_table(runs: dict[str, list[dict]]) -> pd.DataFrame:
    """:func:`summary` of each launch, with its speed relative to the first one."""
    table = pd.DataFrame({name: summary(r) for name, r in runs.items()}).T
    table["speed_vs_first"] = table["examples_per_s"] / table["examples_per_s"].iloc[0]
    return table


def loss_figure(runs: dict[str, list[dict]]):
    """The logged loss per optimiser step of every launch, one line each."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    for i, (name, results) in enumerate(runs.items()):
        losses = results[0]["losses"]
        ax.plot(range(1, len(losses) + 1), losses, marker="os^v"[i % 4], alpha=0.8, label=name,
                linestyle="-" if i % 2 == 0 else "--")
    ax.set(xlabel="optimiser step", ylabel="training loss",
           title="the same examples per step: the same curve")
    ax.legend(fontsize=8)
    return fig


def speed_figure(table: pd.DataFrame):
    """Examples per second and peak memory per process of each launch."""
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.4))
    names = [n.replace(" (", "\n(").replace(", ", ",\n") for n in table.index]
    a.barh(names, table["examples_per_s"], color="tab:blue")
    a.set(xlabel="examples / s", title="throughput")
    b.barh(names, table["peak_rss_mb_per_process"], color="tab:orange")
    b.set(xlabel="MB", title="peak memory per process")
    for ax in (a, b):
        ax.invert_yaxis()
    b.set_yticklabels([])
    fig.tight_layout()
    return fig


def memory_figure(table: pd.DataFrame, device_gb: float):
    """GiB per device of each strategy and model size (log scale), with the device's size."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(table.columns)
    for i, size in enumerate(table.columns):
        ax.bar([x + i * width for x in range(len(table))], table[size], width, label=size)
    ax.axhline(device_gb * 1e9 / 2**30, color="black", linestyle=":",
               label=f"one {device_gb:.0f} GB GPU")
    ax.set_xticks([x + width * (len(table.columns) - 1) / 2 for x in range(len(table))],
                  table.index, rotation=15, fontsize=8)
    ax.set(yscale="log", ylabel="GiB per device",
           title="model states of AdamW training, per device")
    ax.legend(fontsize=8, ncol=3)
    fig.tight_layout()
    return fig


# bytes per parameter for mixed-precision training with AdamW: bf16 weights (2) and
# gradients (2), fp32 master weights, momentum and variance (4 + 4 + 4)
WEIGHTS, GRADS, OPTIMISER = 2, 2, 12
STRATEGIES = ("DDP", "ZeRO-1", "ZeRO-2", "ZeRO-3 / FSDP", "LoRA (DDP)", "QLoRA (DDP)")


def memory_per_device(params: float, devices: int, strategy: str,
                      lora_share: float = 0.005) -> float:
    """GiB per device for the model states of training (activations not included).

    DDP replicates weights, gradients and optimiser states; ZeRO-1 shards the optimiser
    states over ``devices``, ZeRO-2 also the gradients, ZeRO-3/FSDP also the weights. LoRA
    keeps frozen bf16 weights and trains ``lora_share`` of the parameter count; QLoRA stores
    the frozen weights in 4 bits (0.5 bytes)."""
    if strategy not in STRATEGIES:
        raise ConfigError(f"strategy = {strategy!r}: choose one of {list(STRATEGIES)}")
    n = devices
    per = {"DDP": WEIGHTS + GRADS + OPTIMISER,
           "ZeRO-1": WEIGHTS + GRADS + OPTIMISER / n,
           "ZeRO-2": WEIGHTS + (GRADS + OPTIMISER) / n,
           "ZeRO-3 / FSDP": (WEIGHTS + GRADS + OPTIMISER) / n,
           "LoRA (DDP)": WEIGHTS + lora_share * (GRADS + OPTIMISER + WEIGHTS),
           "QLoRA (DDP)": 0.5 + lora_share * (GRADS + OPTIMISER + WEIGHTS)}[strategy]
    return params * per / 2**30


MODEL_SIZES = {"135M": 135e6, "1.7B": 1.7e9, "8B": 8e9, "70B": 70e9}


def memory_table(sizes: dict[str, float] = MODEL_SIZES, devices: int = 8) -> pd.DataFrame:
    """GiB per device of every strategy (rows) for every model size (columns)."""
    return pd.DataFrame({name: [memory_per_device(n, devices, s) for s in STRATEGIES]
                         for name, n in sizes.items()}, index=list(STRATEGIES)).round(1)


def fits(table: pd.DataFrame, gib: float) -> pd.DataFrame:
    """``table`` as yes/no: do the model states fit a device of ``gib`` GB (with a 20 %
    margin left for activations and the framework)?"""
    limit = 0.8 * gib * 1e9 / 2**30
    return table.map(lambda v: "fits" if v <= limit else "—")


__all__ = ["MODEL_SIZES", "STRATEGIES", "adapter_difference", "compare_losses", "fits",
           "loss_figure", "memory_figure", "memory_per_device", "memory_table", "scaling_runs",
           "scaling_table", "speed_figure", "summary"]
