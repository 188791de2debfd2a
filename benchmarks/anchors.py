"""What the anchor benchmarks share (``dpo_step``, ``reward_step``, ``whisper_step``,
``vqa_step``, ``ppo_step``, ``grpo_step``): one variant per child process, a summary per variant
over the rounds, the two goal lines (ftkit against the tuned anchor at a held-out loss no more
than 1 % above it, and against the library's defaults), and a clock for a library trainer's
steps."""
from __future__ import annotations

import json
import math
import statistics
import time
import subprocess
import sys


def child(script: str, argv: list[str], env: dict | None = None) -> dict:
    """Run ``script`` with ``argv`` in a process of its own (its own peak RSS); the JSON of its
    last stdout line. A failed child stops the benchmark with the end of its stderr."""
    out = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True,
                         env=env)
    if out.returncode:
        sys.exit(f"{' '.join(argv)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def summarise(runs: dict[str, list[dict]], medians: tuple[str, ...] = (),
              means: tuple[str, ...] = ()) -> dict[str, dict]:
    """Per variant over its rounds: the median ``tokens_per_s`` and the median of ``medians``,
    the mean of ``means``, the largest peak RSS, ftkit's ratio to it, and the runs."""
    rate = {v: statistics.median(r["tokens_per_s"] for r in rs) for v, rs in runs.items()}
    return {v: {"tokens_per_s": rate[v],
                **{k: statistics.median(r[k] for r in rs) for k in medians},
                **{k: statistics.mean(r[k] for r in rs) for k in means},
                "ftkit_vs": rate["ftkit"] / rate[v],
                "peak_rss_mb": max(r["peak_rss_mb"] for r in rs), "runs": rs}
            for v, rs in runs.items()}


def goal_lines(result: dict[str, dict], tuned: str, default: str, default_target: float,
               library: str) -> str:
    """The two goals, met or missed: ftkit >= 1.3x ``tuned`` at a held-out loss <= +1 %, and
    >= ``default_target`` x ``default``."""
    ratio = result[tuned]["ftkit_vs"]
    gap = result["ftkit"]["heldout_loss"] / result[tuned]["heldout_loss"] - 1
    vs_default = result[default]["ftkit_vs"]
    return (f"ftkit vs {library} tuned: {ratio:.2f}x at a held-out loss {gap:+.1%} "
            f"({'goal met' if ratio >= 1.3 and gap <= 0.01 else 'goal missed'}: >= 1.3x, "
            f"<= +1 %)\nftkit vs {library} defaults: {vs_default:.2f}x "
            f"({'goal met' if vs_default >= default_target else 'goal missed'}: "
            f">= {default_target:g}x)")


def step_clock(times: list[float], logged: list[tuple[int, float]], key: str = "reward"):
    """A Trainer callback that appends each optimiser step's seconds to ``times`` and
    ``(step, value)`` to ``logged`` for every logged ``key`` that is a number."""
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            self.started = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            times.append(time.perf_counter() - self.started)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and not math.isnan(logs.get(key, math.nan)):
                logged.append((state.global_step, logs[key]))

    return Clock()
