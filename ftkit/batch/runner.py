"""Run every notebook with papermill under a parameter profile and report the results.

Layout of one run (``papermill_runs/<run id>/``)::

    run.json                 profile, times, per-notebook results and parameters, versions
    report.md, report.html   summary table plus metrics, claims, figures and errors
    <stem>.ipynb             the executed notebook
    <stem>/metrics.json      what the notebook recorded through ftkit.core.results
    <stem>/figures/*.png     figures saved through ftkit.core.results.save_figure
    logs/<stem>.log          stdout/stderr of papermill and the kernel

run.json is rewritten after every notebook, so an interrupted run can be resumed.
"""
from __future__ import annotations

import fnmatch
import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from ftkit.batch import runinfo
from ftkit.batch.nbexec import Job, execute
from ftkit.batch.report import metrics_summary, write_report
from ftkit.batch.shard import select_shard
from ftkit.core.config import ConfigError, closest
from ftkit.core.profiles import Profile, load_profile, params_for
from ftkit.core.results import METRICS_ENV, load_metrics
from ftkit.core.schema import check_names
from ftkit.ui.schemas import SCHEMAS

PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder that holds ftkit/
PASSED = "passed"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass
class NotebookResult:
    """How one notebook ran; paths are relative to the run directory."""
    stem: str
    status: str = "pending"  # passed | failed | timeout | pending (not run yet)
    seconds: float | None = None
    started: str | None = None
    finished: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    output: str = ""
    metrics_file: str = ""
    log: str = ""

    @classmethod
    def from_json(cls, data: dict) -> "NotebookResult":
        """Rebuild from a run.json entry, ignoring keys this version does not know."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class RunResult:
    """What :func:`run_batch` returns."""
    run_dir: Path
    report: Path
    report_html: Path
    results: list[NotebookResult]
    ok: bool


def run_batch(
    profile: str | Profile,
    only: str | None = None,
    resume: bool = False,
    run_id: str | None = None,
    notebooks_dir: str | os.PathLike = Path("notebooks"),
    runs_dir: str | os.PathLike = Path("papermill_runs"),
    log: Callable[[str], Any] = print,
    overrides: dict[str, Any] | None = None,
    shard: str | None = None,
    jobs: int = 1,
) -> RunResult:
    """Execute the notebooks under ``profile``, keep going past failures, write the report.

    Args:
        profile: a profile name (see :mod:`ftkit.core.profiles`) or a loaded Profile.
        only: glob (``03*``) or substring (``setup``) selecting notebooks by stem.
        resume: rerun only the notebooks that did not pass in an earlier run (``run_id``,
            or the most recent run of this profile); passed ones keep their results.
        run_id: name of the run directory; default ``<profile>-<YYYYmmdd-HHMMSS>``.
        notebooks_dir: folder of ``*.ipynb``; its parent goes on the kernel's PYTHONPATH.
        runs_dir: folder that holds run directories.
        log: called with one line per notebook as it finishes.
        overrides: parameters given on the command line (``-p name value``); each goes to
            every selected notebook that declares it, and wins over the profile.
        shard: ``"i/n"``: run only the i-th of n shares of the selected notebooks
            (:func:`select_shard`), so n machines or scheduler jobs cover the batch; merge
            their run folders with :func:`ftkit.batch.merge.merge_runs`.
        jobs: notebooks run side by side, each kernel limited to ``cores // jobs`` compute
            threads; the notebooks start in name order, and what two of them share (the
            running example's assistant, its exports, the model packs) is built once, under a
            lock, by whichever asks first (``ftkit.core.files``).

    Raises:
        ValueError: unknown profile, nothing matches ``only``, or no run to resume.
        ConfigError: a profile or override names a parameter no notebook declares (checked
            before any notebook runs).
    """
    if not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1:
        raise ValueError(f"jobs = {jobs!r}: a whole number of notebooks at a time, 1 or more")
    prof = profile if isinstance(profile, Profile) else load_profile(profile)
    notebooks_dir, runs_dir = Path(notebooks_dir).resolve(), Path(runs_dir).resolve()
    selected = select_shard(select_notebooks(discover_notebooks(notebooks_dir), only), shard)
    overrides = dict(overrides or {})
    check_parameters(selected, prof, overrides)
    prof = replace(prof, notebooks={**prof.notebooks, **{
        nb.stem: {**prof.notebooks.get(nb.stem, {}), **overrides} for nb in selected}})
    run_dir = _run_dir(prof.name, runs_dir, run_id, resume)
    state = _RunState.open(run_dir, prof, resume)
    todo = [nb for nb in selected if not (resume and state.status(nb.stem) == PASSED)]
    state.begin_attempt(prof, notebooks_dir, only, [nb.stem for nb in todo], selected, shard)
    verb = "Resuming" if resume else "Running"
    log(f"{verb} {len(todo)} of {len(selected)} notebooks, profile {prof.name}, in {run_dir}"
        + (f", {jobs} at a time" if jobs > 1 else ""))
    try:
        _run_all(selected, todo, state, prof, notebooks_dir, log, jobs)
    finally:
        state.finish_attempt()
    md, html_path = write_report(run_dir)
    results = state.ordered()
    return RunResult(run_dir, md, html_path, results, all(r.status == PASSED for r in results))


def discover_notebooks(notebooks_dir: Path) -> list[Path]:
    """The notebooks of a folder, sorted by name, without Jupyter checkpoint copies."""
    if not Path(notebooks_dir).is_dir():
        raise ValueError(f"no notebooks directory at {notebooks_dir}")
    found = Path(notebooks_dir).glob("*.ipynb")
    return sorted(p for p in found if not p.name.startswith(".") and "-checkpoint" not in p.name)


def select_notebooks(notebooks: list[Path], only: str | None) -> list[Path]:
    """Notebooks whose stem matches ``only``: a glob if it has ``*?[``, else a substring."""
    if not only:
        return list(notebooks)
    pattern = only.removesuffix(".ipynb")
    if any(ch in pattern for ch in "*?["):
        chosen = [p for p in notebooks if fnmatch.fnmatchcase(p.stem, pattern)]
    else:
        chosen = [p for p in notebooks if pattern in p.stem]
    if not chosen:
        names = ", ".join(p.stem for p in notebooks) or "none"
        raise ValueError(f"no notebook matches {only!r}; notebooks: {names}")
    return chosen


def latest_run_dir(runs_dir: Path, profile_name: str) -> Path:
    """The most recently started run directory of a profile (ValueError if none)."""
    runs = []
    for path in Path(runs_dir).glob("*/run.json"):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if info.get("profile") == profile_name:
            runs.append((str(info.get("started", "")), path.parent.name, path.parent))
    if not runs:
        raise ValueError(f"no earlier run of profile {profile_name!r} in {runs_dir} to resume")
    return max(runs)[2]


def kernel_env(metrics_file: Path, notebooks_dir: Path, threads: int = 0) -> dict[str, str]:
    """Environment of the papermill child and, through it, of the kernel; ``threads`` > 0
    caps the kernel's compute threads (OpenMP, MKL, OpenBLAS: torch's and numpy's pools)."""
    env = dict(os.environ)
    if threads > 0:
        for name in THREAD_VARS:
            env[name] = str(threads)
    roots = [str(Path(notebooks_dir).parent)]
    # a source checkout of ftkit must be importable even for notebooks kept elsewhere
    if PACKAGE_ROOT.name not in ("site-packages", "dist-packages"):
        roots.append(str(PACKAGE_ROOT))
    if env.get("PYTHONPATH"):
        roots.append(env["PYTHONPATH"])
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(roots))
    env["FTKIT_HEADLESS"] = "1"
    env[METRICS_ENV] = str(metrics_file)
    env.pop("MPLBACKEND", None)  # the kernel's inline backend is what the notebooks expect
    return env


def declared_parameters(notebook: Path) -> set[str]:
    """Names assigned in the notebook's ``parameters`` cell (empty set if it has none)."""
    import papermill

    return set(papermill.inspect_notebook(str(notebook)))


def now() -> str:
    """Local time with offset, to the second."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _run_dir(profile_name: str, runs_dir: Path, run_id: str | None, resume: bool) -> Path:
    """The directory this run writes to (existing when resuming, new otherwise)."""
    if run_id is not None and (Path(run_id).name != run_id or run_id in ("", ".", "..")):
        raise ValueError(f"invalid run id {run_id!r}: it must be a plain folder name")
    if resume:
        run_dir = runs_dir / run_id if run_id else latest_run_dir(runs_dir, profile_name)
        if not (run_dir / "run.json").is_file():
            raise ValueError(f"cannot resume: {run_dir} holds no run.json")
        return run_dir
    if run_id:
        return runs_dir / run_id
    base = f"{profile_name}-{datetime.now():%Y%m%d-%H%M%S}"
    run_dir, n = runs_dir / base, 1
    while run_dir.exists():  # two runs started within one second
        n += 1
        run_dir = runs_dir / f"{base}-{n}"
    return run_dir


def _run_all(selected, todo, state, prof, notebooks_dir, log, jobs: int = 1) -> None:
    """Execute ``todo`` (``jobs`` at a time, started in order), logging every selected
    notebook with its position as it finishes."""
    width = max(len(p.stem) for p in selected)
    position = {p.stem: i for i, p in enumerate(selected, start=1)}

    def prefix(stem: str) -> str:
        return f"[{position[stem]}/{len(selected)}] {stem.ljust(width)}"

    to_run = {p.stem for p in todo}
    for notebook in selected:
        if notebook.stem not in to_run:
            log(f"{prefix(notebook.stem)}  passed  (kept from the earlier attempt)")
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else 0
    with ThreadPoolExecutor(max_workers=jobs) as pool:  # each job is a child process
        running = [pool.submit(_run_one, nb, state.run_dir, prof, notebooks_dir, threads)
                   for nb in todo]
        for future in as_completed(running):
            result = future.result()
            state.put(result)
            log(f"{prefix(result.stem)}  {_outcome_text(result, state.run_dir)}")


def check_parameters(selected: list[Path], prof: Profile, overrides: dict[str, Any]) -> None:
    """Refuse, before anything runs, a name that the notebooks' schemas do not declare.

    Every per-notebook override of the profile must be a parameter of that notebook; every
    command-line override must be a parameter of at least one selected notebook (of the one,
    when one is selected). The message names the key, the notebook and the closest valid name.
    """
    schemas = [SCHEMAS[nb.stem] for nb in selected if nb.stem in SCHEMAS]
    for schema in schemas:
        own = prof.notebooks.get(schema.NOTEBOOK, {})
        check_names(schema, own, f"profile {prof.name!r}")
        given = {k: v for k, v in {**own, **overrides}.items() if k in schema.names()}
        schema(**{**schema.defaults(), **given})  # a bad value fails here, naming the field
    if len(selected) == 1 and schemas:
        check_names(schemas[0], overrides, "-p")
        return
    known = {n for nb in selected for n in _safe_declared(nb)}
    unknown = [k for k in overrides if k not in known]
    if unknown:
        raise ConfigError("-p: " + "; ".join(f"{k}: not a parameter of any selected notebook"
                                              f"{closest(k, known)}" for k in unknown))


def _safe_declared(notebook: Path) -> set[str]:
    """Declared parameters, or an empty set when the notebook cannot be parsed."""
    try:
        return declared_parameters(notebook)
    except Exception:  # reported properly when the notebook itself is run
        return set()


def _run_one(notebook: Path, run_dir: Path, prof: Profile, notebooks_dir: Path,
             threads: int = 0) -> NotebookResult:
    """Execute one notebook and describe the result."""
    stem = notebook.stem
    out_dir = run_dir / stem
    shutil.rmtree(out_dir, ignore_errors=True)  # a rerun must not show stale figures
    out_dir.mkdir(parents=True)
    result = NotebookResult(stem, started=now(), output=f"{stem}.ipynb",
                            metrics_file=f"{stem}/metrics.json", log=f"logs/{stem}.log")
    try:
        result.params = injected_params(notebook, prof, out_dir)
    except Exception as exc:  # unreadable notebook: report it, go on with the next one
        result.status, result.seconds, result.finished = "failed", 0.0, now()
        result.error = f"{type(exc).__name__}: {exc}"
        return result
    outcome = execute(Job(
        input=notebook, output=run_dir / result.output, params=result.params,
        cwd=notebooks_dir, env=kernel_env(run_dir / result.metrics_file, notebooks_dir, threads),
        timeout_s=prof.timeout_s, cell_timeout_s=prof.cell_timeout_s,
        log_path=run_dir / result.log, outcome_path=run_dir / "logs" / f"{stem}.outcome.json",
    ))
    result.status, result.error = outcome.status, outcome.error
    result.seconds, result.finished = round(outcome.seconds, 2), now()
    return result


def injected_params(notebook: Path, prof: Profile, out_dir: Path) -> dict[str, Any]:
    """Parameters to inject: the profile's, filtered to declared names, plus output_dir."""
    declared = declared_parameters(notebook)
    params = params_for(prof, notebook.stem, declared)
    if "output_dir" in declared:
        params["output_dir"] = str(out_dir.resolve())
    return params


def _outcome_text(result: NotebookResult, run_dir: Path) -> str:
    """``passed  41.2 s  (7 metrics, 2/2 claims hold)`` plus the error's first line."""
    try:
        n_metrics, held, total = metrics_summary(load_metrics(run_dir / result.metrics_file))
    except ValueError:
        n_metrics, held, total = 0, 0, 0
    text = (f"{result.status}  {result.seconds or 0:.1f} s  "
            f"({n_metrics} metrics, {held}/{total} claims hold)")
    if result.error:
        text += "  " + result.error.splitlines()[0][:160]
    return text


class _RunState:
    """The contents of run.json, saved after every change."""
    def __init__(self, run_dir: Path, info: dict, results: dict[str, NotebookResult]):
        """Hold run.json's fields (``info``) apart from its per-notebook ``results``."""
        self.run_dir, self.info, self.results = run_dir, info, results

    @classmethod
    def open(cls, run_dir: Path, prof: Profile, resume: bool) -> "_RunState":
        """Fresh state, or the state of the run being resumed (same profile only)."""
        if not resume:
            info = {"profile": prof.name, "run_id": run_dir.name, "started": now(),
                    "finished": None, "attempts": []}
            return cls(run_dir, info, {})
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if info.get("profile") != prof.name:
            raise ValueError(f"{run_dir.name} was run with profile {info.get('profile')!r}, "
                             f"not {prof.name!r}")
        entries = info.pop("notebooks", [])
        return cls(run_dir, info, {e["stem"]: NotebookResult.from_json(e) for e in entries})

    def status(self, stem: str) -> str | None:
        """Status of a notebook in this run, None if it was never part of it."""
        result = self.results.get(stem)
        return result.status if result else None

    def begin_attempt(self, prof, notebooks_dir, only, stems, selected, shard=None) -> None:
        """Record the profile, environment and plan of this attempt; mark todo as pending."""
        env = runinfo.environment(Path(notebooks_dir).parent)
        self.info.update({
            "profile_description": prof.description, "timeout_s": prof.timeout_s,
            "cell_timeout_s": prof.cell_timeout_s, "notebooks_dir": str(notebooks_dir),
            "environment": env, "finished": None,
        })
        self.info["attempts"].append({"started": now(), "finished": None, "only": only,
                                      "shard": shard, "notebooks": stems, "git": env["git"]})
        for notebook in selected:
            self.results.setdefault(notebook.stem, NotebookResult(notebook.stem))
        for stem in stems:
            self.results[stem] = NotebookResult(stem)
        self.save()

    def put(self, result: NotebookResult) -> None:
        """Store one notebook's result and save."""
        self.results[result.stem] = result
        self.save()

    def finish_attempt(self) -> None:
        """Stamp the end time and save."""
        self.info["finished"] = self.info["attempts"][-1]["finished"] = now()
        self.save()

    def ordered(self) -> list[NotebookResult]:
        """Results sorted by notebook stem."""
        return [self.results[k] for k in sorted(self.results)]

    def save(self) -> None:
        """Rewrite run.json atomically."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        data = {**self.info, "notebooks": [asdict(r) for r in self.ordered()]}
        tmp = self.run_dir / "run.json.tmp"
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.run_dir / "run.json")
