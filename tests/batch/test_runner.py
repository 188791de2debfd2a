"""Tests of the batch runner, the report and the ``ftkit`` command on tiny notebooks.

Every executed notebook starts a kernel (a few seconds), so the notebooks are few and a
module-scoped run is shared by the tests that only read its results.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import nbformat
import psutil
import pytest

from ftkit.batch import runinfo
from ftkit.batch.cli import main
from ftkit.batch.runner import (
    discover_notebooks,
    kernel_env,
    latest_run_dir,
    run_batch,
    select_notebooks,
)
from ftkit.core.profiles import PROFILES_ENV, Profile

pytestmark = pytest.mark.slow

PARAMS = "profile = 'workshop'\noutput_dir = 'outputs'\nsteps = 3\n"
GOOD = """\
from pathlib import Path
with open(Path('..') / 'calls.txt', 'a') as fh:
    fh.write(Path.cwd().name + ' {stem}\\n')
import ftkit.core.results as r
r.record('x', 1.5)
r.record('steps_seen', steps)
r.claim('demo', True, 'it holds')
"""
BROKEN = """\
with open('../calls.txt', 'a') as fh:
    fh.write('notebooks {stem}\\n')
raise ValueError('boom')
"""
PROFILE = Profile(name="t", description="test profile", timeout_s=120, cell_timeout_s=60,
                  params={"steps": 2, "undeclared": 1}, notebooks={"01_good": {"steps": 7}})


def make_notebook(path: Path, body: str, params: str | None = PARAMS) -> Path:
    """Write a notebook with an optional tagged parameters cell and one code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                 "display_name": "Python 3"}
    if params is not None:
        cell = nbformat.v4.new_code_cell(params)
        cell.metadata["tags"] = ["parameters"]
        nb.cells.append(cell)
    nb.cells.append(nbformat.v4.new_code_cell(body.format(stem=path.stem)))
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def calls(root: Path) -> list[str]:
    """Which notebooks ran, in order, as written by the notebooks themselves."""
    path = root / "calls.txt"
    return [ln.split()[1] for ln in path.read_text().splitlines()] if path.exists() else []


@dataclass
class Snapshot:
    """A finished run and copies of its files, taken before later tests change anything."""

    root: Path
    result: object
    log: list[str]
    md: str
    html: str
    run_json: dict


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> Snapshot:
    root = tmp_path_factory.mktemp("batch")
    make_notebook(root / "notebooks" / "01_good.ipynb", GOOD)
    make_notebook(root / "notebooks" / "02_broken.ipynb", BROKEN)
    lines: list[str] = []
    result = run_batch(PROFILE, notebooks_dir=root / "notebooks",
                       runs_dir=root / "runs", log=lines.append)
    run_dir = result.run_dir
    return Snapshot(root, result, lines, (run_dir / "report.md").read_text(),
                    (run_dir / "report.html").read_text(),
                    json.loads((run_dir / "run.json").read_text()))


# ------------------------------------------------------------ without kernels


def test_select_notebooks_by_glob_or_substring(tmp_path):
    for stem in ("00_setup", "03_model_initialisation", "03b_extra", "10_setup_more"):
        (tmp_path / f"{stem}.ipynb").write_text("{}")
    (tmp_path / ".ipynb_checkpoints").mkdir()
    (tmp_path / "00_setup-checkpoint.ipynb").write_text("{}")
    found = discover_notebooks(tmp_path)
    assert [p.stem for p in found] == ["00_setup", "03_model_initialisation", "03b_extra",
                                       "10_setup_more"]
    assert [p.stem for p in select_notebooks(found, "03*")] == [
        "03_model_initialisation", "03b_extra"]
    assert [p.stem for p in select_notebooks(found, "setup")] == ["00_setup", "10_setup_more"]
    assert [p.stem for p in select_notebooks(found, "03b_extra.ipynb")] == ["03b_extra"]
    assert select_notebooks(found, None) == found
    with pytest.raises(ValueError, match="no notebook matches"):
        select_notebooks(found, "99*")


def test_kernel_env(tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.setenv("PYTHONPATH", "/somewhere")
    env = kernel_env(tmp_path / "m.json", tmp_path / "notebooks")
    assert env["PYTHONPATH"].split(":")[0] == str(tmp_path)
    assert env["PYTHONPATH"].endswith("/somewhere")
    assert env["FTKIT_HEADLESS"] == "1"
    assert env["FTKIT_METRICS_FILE"] == str(tmp_path / "m.json")
    assert "MPLBACKEND" not in env


def test_resume_without_earlier_run_fails(tmp_path):
    make_notebook(tmp_path / "notebooks" / "01_a.ipynb", "pass")
    with pytest.raises(ValueError, match="no earlier run"):
        run_batch(PROFILE, resume=True, notebooks_dir=tmp_path / "notebooks",
                  runs_dir=tmp_path / "runs", log=lambda line: None)
    with pytest.raises(ValueError, match="invalid run id"):
        run_batch(PROFILE, run_id="../x", notebooks_dir=tmp_path / "notebooks",
                  runs_dir=tmp_path / "runs", log=lambda line: None)


def test_git_revision(tmp_path):
    assert runinfo.git_revision(tmp_path) == {"revision": "unknown", "dirty": None}
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git, "init", "-q"], check=True)
    (tmp_path / "f.txt").write_text("a")
    subprocess.run([*git, "add", "f.txt"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "c"], check=True)
    info = runinfo.git_revision(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", info["revision"]) and info["dirty"] is False
    (tmp_path / "f.txt").write_text("b")
    assert runinfo.git_revision(tmp_path)["dirty"] is True


# ------------------------------------------------------------------ one batch


def test_batch_keeps_going_past_a_failure(first_run):
    result = first_run.result
    assert result.ok is False
    assert [(r.stem, r.status) for r in result.results] == [("01_good", "passed"),
                                                            ("02_broken", "failed")]
    assert calls(first_run.root) == ["01_good", "02_broken"]
    kernel_cwds = {ln.split()[0] for ln in (first_run.root / "calls.txt").read_text().splitlines()}
    assert kernel_cwds == {"notebooks"}
    broken = result.results[1]
    assert broken.error.startswith("ValueError: boom")
    assert "\x1b[" not in broken.error and len(broken.error) <= 1500
    assert (result.run_dir / "01_good.ipynb").is_file()
    assert result.run_dir.name.startswith("t-")


def test_log_has_one_line_per_notebook(first_run):
    finished = [ln for ln in first_run.log if ln.startswith("[")]
    assert re.fullmatch(r"\[1/2\] 01_good\s+passed\s+\d+\.\d s\s+\(2 metrics, 1/1 claims hold\)",
                        finished[0])
    assert re.match(r"\[2/2\] 02_broken\s+failed .*ValueError: boom", finished[1])


def test_reports_show_failure_metrics_and_claims(first_run):
    for text in (first_run.md, first_run.html):
        assert "02_broken" in text and "failed" in text and "boom" in text
        assert "steps_seen" in text and "1.5" in text and "demo" in text
    assert "| 01_good | ✔ passed |" in first_run.md
    assert "| x | 1.5 |" in first_run.md
    assert "<td>x</td><td>1.5</td>" in first_run.html
    assert first_run.html.startswith("<!DOCTYPE html>")


def test_params_are_filtered_to_declared_names(first_run):
    entries = {e["stem"]: e for e in first_run.run_json["notebooks"]}
    run_dir = first_run.result.run_dir
    assert entries["01_good"]["params"] == {"profile": "t", "steps": 7,
                                            "output_dir": str(run_dir / "01_good")}
    assert entries["02_broken"]["params"]["steps"] == 2
    assert "undeclared" not in entries["02_broken"]["params"]
    good_metrics = json.loads((run_dir / "01_good" / "metrics.json").read_text())
    assert good_metrics["metrics"]["steps_seen"] == 7


def test_run_json_records_versions_and_git(first_run):
    info = first_run.run_json
    assert info["profile"] == "t" and info["run_id"] == first_run.result.run_dir.name
    assert info["started"] and info["finished"]
    env = info["environment"]
    assert {"python", "papermill"} <= set(env["packages"])
    assert env["git"]["revision"] == "unknown"
    assert env["cpu_count"] >= 1 and env["platform"]


def test_resume_reruns_only_what_failed(first_run):
    root = first_run.root
    run_dir = first_run.result.run_dir
    good_mtime = (run_dir / "01_good.ipynb").stat().st_mtime_ns
    make_notebook(root / "notebooks" / "02_broken.ipynb", GOOD)
    lines: list[str] = []
    result = run_batch(PROFILE, resume=True, notebooks_dir=root / "notebooks",
                       runs_dir=root / "runs", log=lines.append)
    assert result.run_dir == run_dir and result.ok
    assert calls(root) == ["01_good", "02_broken", "02_broken"]
    assert "kept from the earlier attempt" in lines[1]
    assert (run_dir / "01_good.ipynb").stat().st_mtime_ns == good_mtime
    md = (run_dir / "report.md").read_text()
    assert "2/2 notebooks passed" in md and "boom" not in md
    assert len(json.loads((run_dir / "run.json").read_text())["attempts"]) == 2
    assert latest_run_dir(root / "runs", "t") == run_dir


# ---------------------------------------------------------------- timeouts


def test_wall_clock_timeout_kills_the_notebook(tmp_path):
    make_notebook(tmp_path / "notebooks" / "01_sleep.ipynb", "import time\ntime.sleep(300)")
    prof = Profile(name="quick", timeout_s=6, cell_timeout_s=300)
    result = run_batch(prof, notebooks_dir=tmp_path / "notebooks", runs_dir=tmp_path / "runs",
                       log=lambda line: None)
    (only,) = result.results
    assert only.status == "timeout" and not result.ok
    assert "wall-clock limit of 6 s" in only.error
    assert only.seconds < 30
    assert "timeout" in result.report.read_text()
    assert psutil.Process().children(recursive=True) == []


# --------------------------------------------------------------------- CLI


def test_cli_run_report_and_profiles(tmp_path, monkeypatch, capsys):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "t.yaml").write_text("description: cli test\ntimeout_s: 120\n")
    monkeypatch.setenv(PROFILES_ENV, str(profiles))
    make_notebook(tmp_path / "notebooks" / "01_good.ipynb", GOOD)
    make_notebook(tmp_path / "notebooks" / "02_broken.ipynb", BROKEN, params=None)
    dirs = ["--notebooks-dir", str(tmp_path / "notebooks"), "--runs-dir", str(tmp_path / "r")]

    assert main(["run", "--profile", "t", "--only", "broken", "--run-id", "cli", *dirs]) == 1
    out = capsys.readouterr().out
    report = Path(re.search(r"^Report: (.+)$", out, re.M).group(1))
    assert report.is_absolute() and report == tmp_path / "r" / "cli" / "report.md"
    assert "0/1 notebooks passed" in out and "02_broken" in out
    entries = json.loads((tmp_path / "r" / "cli" / "run.json").read_text())["notebooks"]
    assert [(e["stem"], e["params"]) for e in entries] == [("02_broken", {})]

    report.unlink()
    assert main(["report", str(tmp_path / "r" / "cli")]) == 0
    assert "boom" in report.read_text()
    assert main(["profiles"]) == 0
    assert "cli test" in capsys.readouterr().out
    assert main(["run", "--profile", "nope", *dirs]) == 2
    assert "known profiles: t" in capsys.readouterr().err
