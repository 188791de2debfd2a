"""Benchmarks through EleutherAI's lm-evaluation-harness, offline, on local task files (paper §7.7).

The kit does not score benchmarks itself: it hands a model already in memory and a list of
task YAML files to ``lm_eval.simple_evaluate`` and reads back the harness's own results.

- :func:`load_task` — one task YAML as a config dict: the harness's format, with the JSONL
  ``data_files`` taken relative to the YAML's folder (the harness alone would resolve them
  against the working directory) and the fields its templates name checked in every row.
- :func:`run_tasks` — the tasks for one model: a table (task, metric, value, stderr, 95 %
  interval), the per-question samples (choice log-likelihoods, generations) and the harness's
  own markdown table (:attr:`HarnessResult.markdown`).
- :func:`choice_table` — the multiple-choice samples as one row per question: the
  log-likelihood of every choice, the target, and whether the top choice is right; the input
  of :mod:`ftkit.evaluate.uncertainty`.

The project's tasks are in ``data/eval_tasks/`` (written by ``data/make_eval_tasks.py``).
Used in notebooks/13_evaluation_and_safety.ipynb.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ftkit.core.config import ConfigError

TASK_DIR = Path(__file__).resolve().parents[2] / "data" / "eval_tasks"
REQUIRED = ("task", "dataset_path", "output_type", "doc_to_text", "doc_to_target")
OUTPUT_TYPES = ("multiple_choice", "generate_until", "loglikelihood", "loglikelihood_rolling")
_FIELD = re.compile(r"{{\s*([A-Za-z_][A-Za-z0-9_]*)")


def task_path(name_or_path: str | os.PathLike) -> Path:
    """The YAML of a task: a path, or the name of one of the project's tasks."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = TASK_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in TASK_DIR.glob("*.yaml"))
        raise ConfigError(f"task {str(name_or_path)!r}: no file {path}; the project's tasks: "
                          f"{known}")
    return path


def _fields(cfg: dict) -> set[str]:
    """The document fields the task's templates read."""
    names: set[str] = set()
    for key in ("doc_to_text", "doc_to_target", "doc_to_choice"):
        value = cfg.get(key)
        if isinstance(value, str):
            found = _FIELD.findall(value)
            names.update(found if found else ([value] if value.isidentifier() else []))
    return names


def load_task(name_or_path: str | os.PathLike, check_rows: bool = True) -> dict:
    """The task's config dict, ready for ``lm_eval.simple_evaluate(tasks=[...])``.

    Raises ConfigError naming the file when a required key is missing, the output type is
    unknown, a data file does not exist or is empty, or a row lacks a field the templates read.
    """
    import yaml

    path = task_path(name_or_path)
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: not a task config (a YAML mapping)")
    missing = [k for k in REQUIRED if k not in cfg]
    if missing:
        raise ConfigError(f"{path}: missing {missing}; a task needs {list(REQUIRED)}")
    if cfg["output_type"] not in OUTPUT_TYPES:
        raise ConfigError(f"{path}: output_type {cfg['output_type']!r} is not one of "
                          f"{list(OUTPUT_TYPES)}")
    if cfg["output_type"] == "multiple_choice" and "doc_to_choice" not in cfg:
        raise ConfigError(f"{path}: a multiple_choice task needs doc_to_choice")
    files = (cfg.get("dataset_kwargs") or {}).get("data_files")
    if cfg["dataset_path"] == "json":
        if not isinstance(files, dict) or not files:
            raise ConfigError(f"{path}: dataset_kwargs.data_files must map splits to JSONL files")
        resolved = {split: str((path.parent / f).resolve()) for split, f in files.items()}
        cfg["dataset_kwargs"] = {**cfg["dataset_kwargs"], "data_files": resolved}
        needed = _fields(cfg)
        for split, file in resolved.items():
            if not Path(file).is_file():
                raise ConfigError(f"{path}: data file {file} (split {split!r}) does not exist")
            if check_rows:
                _check_rows(path, Path(file), needed)
    return cfg


def _check_rows(path: Path, file: Path, needed: set[str]) -> None:
    lines = [ln for ln in file.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise ConfigError(f"{path}: data file {file} is empty: nothing to evaluate")
    for number, line in enumerate(lines, 1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{file}:{number}: not JSON ({err.msg})") from None
        gone = sorted(needed - set(row))
        if gone:
            raise ConfigError(f"{file}:{number}: row lacks {gone}, which the task "
                              f"{path.name} reads")


def check_causal_lm(model) -> None:
    """Refuse a model the harness cannot score: it must be a causal (decoder-only) LM."""
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING or \
            getattr(config, "is_encoder_decoder", False) or not hasattr(base, "generate") or \
            base.get_output_embeddings() is None:
        raise ConfigError(f"{type(base).__name__} is not a causal language model: the "
                          "harness scores next-token log-likelihoods and generations (load one "
                          "with AutoModelForCausalLM)")


@dataclass
class HarnessResult:
    """One model's harness run: ``table`` (task, metric, value, stderr, low, high),
    ``samples`` (per task, the harness's logged samples), ``raw`` (its results dict)."""
    table: pd.DataFrame
    samples: dict[str, list[dict]]
    raw: dict = field(repr=False)

    @property
    def markdown(self) -> str:
        """The harness's own results table (``lm_eval.utils.make_table``)."""
        from lm_eval.utils import make_table

        return make_table(self.raw)


def _table(results: dict) -> pd.DataFrame:
    rows = []
    for task, metrics in results["results"].items():
        for key, value in metrics.items():
            if "," not in key or key.split(",")[0].endswith("_stderr"):
                continue
            metric, flt = key.split(",", 1)
            stderr = metrics.get(f"{metric}_stderr,{flt}")
            stderr = float(stderr) if isinstance(stderr, (int, float)) else float("nan")
            rows.append({"task": task, "metric": metric, "value": float(value), "stderr": stderr,
                         "low": float(value) - 1.96 * stderr, "high": float(value) + 1.96 * stderr,
                         "n": int(results.get("n-samples", {}).get(task, {}).get("effective", 0))})
    return pd.DataFrame(rows)


def run_tasks(model, tokenizer, tasks: list, limit: int | None = None, batch_size: int = 8,
              chat: bool = False, bootstrap_iters: int = 1000, seed: int = 0,
              max_length: int = 1024) -> HarnessResult:
    """Evaluate ``model`` (in memory, a causal LM or a peft model on one) on ``tasks``.

    ``tasks``: task names of ``data/eval_tasks`` or YAML paths (each checked by
    :func:`load_task`). ``limit``: at most this many questions per task (None: all).
    ``chat``: wrap each prompt in the tokenizer's chat template (as the model is prompted in
    use). Stderrs are the harness's own (bootstrap for corpus metrics); ``low``/``high`` are
    value ± 1.96 stderr. Runs with the harness's hub access off.
    """
    if not tasks:
        raise ConfigError("run_tasks: no tasks given")
    check_causal_lm(model)
    configs = [load_task(t) for t in tasks]
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    was_training = model.training
    model.eval()
    try:
        limit_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size,
                  max_length=min(max_length, limit_pos or max_length))
        raw = lm_eval.simple_evaluate(
            model=lm, tasks=configs, task_manager=TaskManager(include_defaults=False),
            limit=limit, log_samples=True, bootstrap_iters=bootstrap_iters,
            apply_chat_template=chat, random_seed=seed, numpy_random_seed=seed,
            torch_random_seed=seed, fewshot_random_seed=seed)
    finally:
        model.train(was_training)
    samples = raw.pop("samples", {})
    return HarnessResult(_table(raw), samples, raw)


def compare(model, tokenizer, variants: dict, tasks: list, **kwargs) -> dict[str, HarnessResult]:
    """:func:`run_tasks` for each variant of ``model`` (name → context-manager factory, as in
    :func:`ftkit.evaluate.perplexity.compare`), printing the harness's table of each."""
    results = {}
    for name, switch in variants.items():
        with switch():
            results[name] = run_tasks(model, tokenizer, tasks, **kwargs)
        print(f"{name}:\n{results[name].markdown}", flush=True)
    return results


def headline(results: dict[str, HarnessResult], generation_metric: str = "chrf",
             choice_metric: str = "acc_norm") -> pd.DataFrame:
    """One score per (model, task): ``choice_metric`` for multiple-choice tasks,
    ``generation_metric`` for generation tasks; with the harness's stderr."""
    rows = []
    for name, result in results.items():
        for task, group in result.table.groupby("task", sort=False):
            metric = choice_metric if choice_metric in set(group.metric) else generation_metric
            row = group[group.metric == metric]
            if len(row):
                rows.append({"model": name, **row.iloc[0].to_dict()})
    return pd.DataFrame(rows)


def choice_table(samples: list[dict], normalise: bool = False) -> pd.DataFrame:
    """One row per multiple-choice question: ``loglik`` (list, one per choice), ``target``,
    ``pred`` and ``correct``. ``normalise`` divides each log-likelihood by the choice's length
    in characters (the harness's ``acc_norm``)."""
    rows = []
    for s in samples:
        lls = [float(r[0]) for r in s["filtered_resps"]]
        if not lls:
            continue
        if normalise:
            choices = [a[1] for a in s["arguments"]]  # (context, continuation) pairs
            lls = [ll / max(1, len(c)) for ll, c in zip(lls, choices)]
        target = int(s["target"])
        pred = max(range(len(lls)), key=lls.__getitem__)
        rows.append({"doc_id": s["doc_id"], "loglik": lls, "target": target, "pred": pred,
                     "correct": pred == target})
    if not rows:
        raise ConfigError("choice_table: no multiple-choice samples (run the tasks with "
                          "log_samples, on multiple_choice tasks)")
    return pd.DataFrame(rows)
