"""Merge the run folders of a sharded batch into one run and one report.

``ftkit run --shard i/n`` runs the i-th share of the notebooks, so n machines (a Slurm job
array, a CI matrix, two laptops) cover the batch between them; :func:`merge_runs` (``ftkit
merge``) then puts their executed notebooks, metrics, figures and logs into one run folder
with one ``run.json`` and writes the report of the whole batch.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ftkit.batch.report import load_run, write_report


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    elif src.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dst)


def merge_runs(run_dirs: list[str | os.PathLike], into: str | os.PathLike) -> Path:
    """One run folder ``into`` from the shards' run folders; returns it.

    Raises ValueError when fewer than two runs are given, a folder is not a run, the runs
    used different profiles, a notebook appears in two of them, or ``into`` exists already.
    The merged folder is built beside ``into`` and renamed when complete.
    """
    dirs = [Path(d) for d in run_dirs]
    if len(dirs) < 2:
        raise ValueError("merge needs the run folders of at least two shards")
    into = Path(into)
    if into.exists():
        raise ValueError(f"{into} exists already; merge into a new folder")
    runs = [load_run(d) for d in dirs]
    profiles = {r.get("profile") for r in runs}
    if len(profiles) != 1:
        raise ValueError(f"the runs used different profiles: {sorted(map(str, profiles))}")
    owner: dict[str, Path] = {}
    for d, run in zip(dirs, runs):
        for entry in run.get("notebooks", []):
            if entry["stem"] in owner:
                raise ValueError(f"{entry['stem']} is in both {owner[entry['stem']]} and {d}: "
                                 "shards must not share notebooks")
            owner[entry["stem"]] = d
    into.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{into.name}-", dir=into.parent))
    try:
        _fill(tmp, dirs, runs, into.name)
        os.replace(tmp, into)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_report(into)
    return into


def _fill(folder: Path, dirs: list[Path], runs: list[dict], run_id: str) -> None:
    entries, attempts = [], []
    for d, run in zip(dirs, runs):
        for entry in run.get("notebooks", []):
            stem = entry["stem"]
            for name in (entry.get("output") or f"{stem}.ipynb", stem):
                _copy(d / name, folder / name)
            for log in (d / "logs").glob(f"{stem}.*"):
                _copy(log, folder / "logs" / log.name)
            entries.append(entry)
        attempts += [{**a, "run": d.name} for a in run.get("attempts", [])]
    started = [r["started"] for r in runs if r.get("started")]
    finished = [r["finished"] for r in runs if r.get("finished")]
    merged = {**runs[0], "run_id": run_id, "merged_from": [d.name for d in dirs],
              "started": min(started) if started else None,
              "finished": max(finished) if len(finished) == len(runs) else None,
              "attempts": attempts, "notebooks": sorted(entries, key=lambda e: e["stem"])}
    (folder / "run.json").write_text(json.dumps(merged, indent=2, ensure_ascii=False) + "\n",
                                     encoding="utf-8")
