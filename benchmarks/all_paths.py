"""Every training path against its library's trainer, at its defaults and tuned: one table.

Runs the path benchmarks of this folder one after another on the same machine, each with the
library trainer as shipped (the default anchor), the same trainer set up as a practised user
would (the tuned anchor) and ftkit's path, same model, data, steps and seed within a path (the
scripts' docstrings say which settings). Nothing else should run meanwhile. Printed, one row per
path: the unit (non-padding tokens/s, or seconds per step for GRPO and per iteration for
PPO), each run's rate, ftkit's ratio to each anchor, the held-out measure of the tuned anchor
and of ftkit (loss, or mean reward for GRPO and PPO), peak RSS of each run, the share of the
machine's bf16 matmul peak where the model FLOPs per token have one honest count, and each
goal as met or missed:

- SFT + LoRA (``train_throughput.py``): 4·N FLOPs per token (frozen base: no weight
  gradients), RSS added while loading and training;
- DPO + LoRA (``dpo_step.py``): 4·N for the policy plus 2·N for the reference forward,
  process peak RSS;
- reward model (``reward_step.py``): full fine-tuning of the encoder, 6·N with N its
  parameters outside the token-embedding table (looked up, not multiplied);
- Whisper decoder LoRA (``whisper_step.py``), VQA projector + LoRA (``vqa_step.py``), GRPO
  (``grpo_step.py``): no share printed (an encoder run once per clip, image tokens, sampled
  tokens: no one count per token fits all variants);
- PPO (``ppo_step.py``): seconds per rollout-and-update iteration against TRL's
  ``RLOOTrainer`` (TRL 1.16 ships no PPO trainer); the held-out column is the reward model's
  mean score of greedy replies to held-out prompts (higher is better);
- RL rollouts (``rollout_generate.py``): generate one completion at a time (the default
  anchor) and one batched generate call (what TRL's trainers do: the tuned anchor).

    python benchmarks/all_paths.py                      # every path (about 40 minutes, 2 cores)
    python benchmarks/all_paths.py --paths dpo reward --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from ftkit.core import env  # noqa: E402


@dataclasses.dataclass
class Run:
    """One variant of one path as the table shows it."""
    rate: float
    heldout: float | None = None
    peak_rss_mb: float | None = None


@dataclasses.dataclass(frozen=True)
class PathBench:
    """A path's benchmark script and how to read what it writes with ``--json``."""
    name: str
    script: str
    args: tuple[str, ...]
    read: Callable[[dict], dict[str, Run]]  # -> {"default": Run, "tuned": Run, "ftkit": Run}
    unit: str = "tokens/s"
    lower_is_faster: bool = False
    flops_per_token: Callable[[], float] | None = None  # model FLOPs per counted token
    default_target: float = 0.0
    tuned_target: float = 1.3


def _by_variant(default: str, tuned: str, ftkit: str, rate: str = "tokens_per_s",
                heldout: str | None = "heldout_loss"):
    def read(result: dict) -> dict[str, Run]:
        def run(key: str) -> Run:
            row = result[key]
            return Run(row[rate], row.get(heldout) if heldout else None, row.get("peak_rss_mb"))
        return {"default": run(default), "tuned": run(tuned), "ftkit": run(ftkit)}
    return read


def _read_sft(result: dict) -> dict[str, Run]:
    rows = {r["variant"]: r for r in result["rows"]}
    names = {"default": "TRL SFTTrainer defaults", "tuned": "TRL SFTTrainer tuned",
             "ftkit": "ftkit default"}
    return {k: Run(rows[v]["tokens_per_s"], rows[v]["heldout_loss"], rows[v]["peak_rss_mb"])
            for k, v in names.items()}


def _params(name: str, times: float, embeddings: bool = True) -> Callable[[], float]:
    """``times`` x the parameters of model ``name`` (without the input embedding table when
    ``embeddings`` is False: an encoder without a vocabulary head only looks rows up in it)."""
    def count() -> float:
        from ftkit import models

        model = models.load(name)[0]
        table = {id(p) for p in model.get_input_embeddings().parameters()}
        return times * sum(p.numel() for p in model.parameters()
                           if embeddings or id(p) not in table)
    return count


PATHS = {
    "sft": PathBench("SFT + LoRA", "train_throughput.py",
                     ("--only", "TRL SFTTrainer defaults", "TRL SFTTrainer tuned",
                      "ftkit default"), _read_sft,
                     flops_per_token=_params("smollm2-135m", 4), default_target=3.5),
    "dpo": PathBench("DPO + LoRA", "dpo_step.py", (),
                     _by_variant("trl defaults", "trl tuned", "ftkit"),
                     flops_per_token=_params("smollm2-135m", 6), default_target=2.5),
    "reward": PathBench("reward model", "reward_step.py", (),
                        _by_variant("trl defaults", "trl tuned", "ftkit"),
                        flops_per_token=_params("minilm-l6", 6, embeddings=False),
                        default_target=2.5),
    "whisper": PathBench("Whisper decoder LoRA", "whisper_step.py", (),
                         _by_variant("defaults", "tuned", "ftkit"), default_target=2.0),
    "vqa": PathBench("VQA projector + LoRA", "vqa_step.py", ("--steps", "20"),
                     _by_variant("defaults", "tuned", "ftkit"), default_target=2.0),
    "grpo": PathBench("GRPO step", "grpo_step.py", ("--only", "ftkit"),
                      _by_variant("trl defaults", "trl", "ftkit", rate="median_step_s",
                                  heldout="mean_reward"),
                      unit="s/step", lower_is_faster=True),
    "ppo": PathBench("PPO iteration", "ppo_step.py", (),
                     _by_variant("trl defaults", "trl tuned", "ftkit", rate="median_iteration_s",
                                 heldout="heldout_reward"),
                     unit="s/iteration", lower_is_faster=True),
    "rollouts": PathBench("RL rollouts", "rollout_generate.py", (),
                          _by_variant("generate, one at a time", "generate, batched", "ftkit",
                                      heldout=None), default_target=3.0, tuned_target=0.0),
}


def run_path(bench: PathBench) -> tuple[dict[str, Run], float]:
    """Run one path's script in its own process; its runs and the wall time it took."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        started = time.perf_counter()
        subprocess.run([sys.executable, str(HERE / bench.script), *bench.args, "--json",
                        str(out)], check=True)
        return bench.read(json.loads(out.read_text())), time.perf_counter() - started


def ratio(bench: PathBench, runs: dict[str, Run], anchor: str) -> float:
    """How many times faster ftkit ran than ``anchor``."""
    a, f = runs[anchor].rate, runs["ftkit"].rate
    return a / f if bench.lower_is_faster else f / a


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def table(results: dict[str, dict[str, Run]], peak_gflops: float) -> list[str]:
    """The markdown table of every path that ran, and one goal line per target."""
    lines = ["| path | unit | default | tuned | ftkit | vs default | vs tuned | held-out tuned / "
             "ftkit | peak RSS MB default / tuned / ftkit | ftkit share of bf16 peak |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    goals = []
    for key, runs in results.items():
        bench = PATHS[key]
        vs_default, vs_tuned = ratio(bench, runs, "default"), ratio(bench, runs, "tuned")
        share = "—"
        if bench.flops_per_token is not None and not bench.lower_is_faster:
            share = f"{bench.flops_per_token() * runs['ftkit'].rate / 1e9 / peak_gflops:.0%}"
        held = f"{_num(runs['tuned'].heldout, '.4f')} / {_num(runs['ftkit'].heldout, '.4f')}"
        rss = " / ".join(_num(runs[k].peak_rss_mb, ".0f") for k in ("default", "tuned", "ftkit"))
        lines.append(f"| {bench.name} | {bench.unit} | {runs['default'].rate:.1f} | "
                     f"{runs['tuned'].rate:.1f} | {runs['ftkit'].rate:.1f} | {vs_default:.2f}x | "
                     f"{vs_tuned:.2f}x | {held} | {rss} | {share} |")
        if bench.default_target:
            goals.append(f"{bench.name}: {vs_default:.2f}x the default anchor "
                         f"({'met' if vs_default >= bench.default_target else 'missed'}: "
                         f">= {bench.default_target}x)")
        if bench.tuned_target:
            gap = ""
            t, f = runs["tuned"].heldout, runs["ftkit"].heldout
            ok = vs_tuned >= bench.tuned_target
            if t and f and not bench.lower_is_faster:  # a loss: lower is better
                gap = f" at a held-out loss {f / t - 1:+.1%}"
                ok = ok and f / t - 1 <= 0.01
            goals.append(f"{bench.name}: {vs_tuned:.2f}x the tuned anchor{gap} "
                         f"({'met' if ok else 'missed'}: >= {bench.tuned_target}x"
                         f"{', loss <= +1 %' if gap else ''})")
    return lines + [""] + goals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--paths", nargs="+", choices=list(PATHS), default=list(PATHS))
    parser.add_argument("--json", type=Path, help="write every path's runs here")
    args = parser.parse_args()
    peak = env.measure_matmul("bfloat16", n=1024, seconds=2.0)
    print(f"bf16 matmul peak (1024^2): {peak:.1f} GFLOP/s; bf16 matmul instructions: "
          f"{'yes' if env.bf16_fast() else 'no'}", flush=True)
    results, walls = {}, {}
    for key in args.paths:
        print(f"\n== {PATHS[key].name} ({PATHS[key].script})", flush=True)
        results[key], walls[key] = run_path(PATHS[key])
    print("\n" + "\n".join(table(results, peak)))
    print("\nwall time per path: " + ", ".join(f"{k} {w / 60:.1f} min" for k, w in walls.items()))
    if args.json:
        args.json.write_text(json.dumps(
            {"bf16_peak_gflops": peak, "wall_s": walls,
             "paths": {k: {n: dataclasses.asdict(r) for n, r in runs.items()}
                       for k, runs in results.items()}}, indent=2))


if __name__ == "__main__":
    main()
