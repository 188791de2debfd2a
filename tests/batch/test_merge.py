"""Sharded batches: disjoint shares that cover every notebook, and their runs merged into one."""
from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from ftkit.batch.cli import main
from ftkit.batch.merge import merge_runs
from ftkit.batch.report import load_run
from ftkit.batch.runner import run_batch
from ftkit.batch.shard import select_shard
from ftkit.core.profiles import Profile

NAMES = [Path(f"{i:02d}_n.ipynb") for i in range(7)]
PROFILE = Profile(name="t", description="", timeout_s=120, cell_timeout_s=60, params={},
                  notebooks={})


def _notebooks(folder: Path, bodies: list[str]) -> None:
    """``00_nb``, ``01_nb``, … each a parameters cell and one code cell."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, body in enumerate(bodies):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "language": "python",
                                     "display_name": "Python 3"}
        cell = nbformat.v4.new_code_cell("profile = 'workshop'\noutput_dir = 'out'")
        cell.metadata["tags"] = ["parameters"]
        nb.cells += [cell, nbformat.v4.new_code_cell(body)]
        nbformat.write(nb, folder / f"0{i}_nb.ipynb")


def test_shards_are_disjoint_and_cover_the_batch():
    shares = [select_shard(NAMES, f"{i}/3") for i in (1, 2, 3)]
    assert sorted(p for share in shares for p in share) == NAMES
    assert shares[0] == [NAMES[0], NAMES[3], NAMES[6]]
    assert select_shard(NAMES, None) == NAMES


@pytest.mark.parametrize("bad,message", [("3", "give it as i/n"), ("0/2", "1..n"),
                                         ("3/2", "1..n"), ("a/b", "give it as i/n")])
def test_bad_shards_are_refused(bad, message):
    with pytest.raises(ValueError, match=message):
        select_shard(NAMES, bad)
    with pytest.raises(ValueError, match="no notebook falls in it"):
        select_shard(NAMES[:1], "2/2")


def _fake_run(folder: Path, stems: list[str], profile: str = "smoke") -> Path:
    """A run folder as ftkit run writes it, without running anything."""
    entries = []
    for stem in stems:
        (folder / stem / "figures").mkdir(parents=True)
        (folder / stem / "metrics.json").write_text(json.dumps(
            {"metrics": {"x": 1.0}, "tables": {}, "claims": [], "figures": [], "params": {},
             "readings": {}}), encoding="utf-8")
        (folder / f"{stem}.ipynb").write_text("{}", encoding="utf-8")
        (folder / "logs").mkdir(exist_ok=True)
        (folder / "logs" / f"{stem}.log").write_text(f"log of {stem}\n", encoding="utf-8")
        entries.append({"stem": stem, "status": "passed", "seconds": 1.0, "output": f"{stem}.ipynb",
                        "metrics_file": f"{stem}/metrics.json", "log": f"logs/{stem}.log"})
    run = {"profile": profile, "run_id": folder.name, "started": "2026-01-01T10:00:00+00:00",
           "finished": "2026-01-01T10:05:00+00:00", "attempts": [{"notebooks": stems}],
           "notebooks": entries}
    (folder / "run.json").write_text(json.dumps(run), encoding="utf-8")
    return folder


def test_merge_copies_every_shard_and_writes_one_report(tmp_path):
    a = _fake_run(tmp_path / "s1", ["00_a", "02_c"])
    b = _fake_run(tmp_path / "s2", ["01_b"])
    merged = merge_runs([a, b], tmp_path / "all")
    run = load_run(merged)
    assert [e["stem"] for e in run["notebooks"]] == ["00_a", "01_b", "02_c"]
    assert run["merged_from"] == ["s1", "s2"] and len(run["attempts"]) == 2
    for stem in ("00_a", "01_b", "02_c"):
        assert (merged / f"{stem}.ipynb").is_file() and (merged / stem / "metrics.json").is_file()
        assert (merged / "logs" / f"{stem}.log").read_text() == f"log of {stem}\n"
    report = (merged / "report.md").read_text(encoding="utf-8")
    assert all(stem in report for stem in ("00_a", "01_b", "02_c"))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftovers


def test_merge_refuses_what_does_not_fit(tmp_path):
    a = _fake_run(tmp_path / "s1", ["00_a"])
    with pytest.raises(ValueError, match="at least two"):
        merge_runs([a], tmp_path / "all")
    with pytest.raises(ValueError, match="different profiles"):
        merge_runs([a, _fake_run(tmp_path / "s2", ["01_b"], profile="workshop")], tmp_path / "x")
    with pytest.raises(ValueError, match="00_a is in both"):
        merge_runs([a, _fake_run(tmp_path / "s3", ["00_a"])], tmp_path / "y")
    with pytest.raises(ValueError, match="exists already"):
        merge_runs([a, tmp_path / "s2"], tmp_path / "s1")
    assert main(["merge", str(a), "--into", str(tmp_path / "z")]) == 2


@pytest.mark.slow
def test_two_shards_run_and_merge_like_one_batch(tmp_path, capsys):
    _notebooks(tmp_path / "notebooks", [f"import ftkit.core.results as r\nr.record('n', {i})"
                                        for i in range(3)])
    runs = [run_batch(PROFILE, notebooks_dir=tmp_path / "notebooks", runs_dir=tmp_path / "runs",
                      run_id=f"shard{i}", shard=f"{i}/2", log=lambda line: None)
            for i in (1, 2)]
    assert [[r.stem for r in run.results] for run in runs] == [["00_nb", "02_nb"], ["01_nb"]]
    assert load_run(runs[0].run_dir)["attempts"][0]["shard"] == "1/2"
    code = main(["merge", *(str(r.run_dir) for r in runs), "--into", str(tmp_path / "all")])
    assert code == 0 and "merged 2 runs" in capsys.readouterr().out
    merged = load_run(tmp_path / "all")
    assert [(e["stem"], e["status"]) for e in merged["notebooks"]] == [
        ("00_nb", "passed"), ("01_nb", "passed"), ("02_nb", "passed")]
    metrics = json.loads((tmp_path / "all" / "01_nb" / "metrics.json").read_text())
    assert metrics["metrics"]["n"] == 1


@pytest.mark.slow
def test_jobs_run_notebooks_side_by_side_with_fewer_threads_each(tmp_path, monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    body = ("import os, time, ftkit.core.results as r\n"
            "r.record('threads', int(os.environ.get('OMP_NUM_THREADS', 0)))\n"
            "start = time.time(); time.sleep(3); r.record('slept_from', start)")
    _notebooks(tmp_path / "notebooks", [body, body])
    lines = []
    result = run_batch(PROFILE, notebooks_dir=tmp_path / "notebooks", runs_dir=tmp_path / "runs",
                       jobs=2, log=lines.append)
    assert result.ok and "2 at a time" in lines[0]
    metrics = [json.loads((result.run_dir / f"0{i}_nb" / "metrics.json").read_text())["metrics"]
               for i in range(2)]
    assert [m["threads"] for m in metrics] == [2, 2]  # 4 cores // 2 jobs
    assert abs(metrics[0]["slept_from"] - metrics[1]["slept_from"]) < 3  # they overlapped
    with pytest.raises(ValueError, match="jobs = 0"):
        run_batch(PROFILE, notebooks_dir=tmp_path / "notebooks", runs_dir=tmp_path / "runs",
                  jobs=0)


@pytest.mark.slow
def test_jobs_2_writes_the_report_entries_that_jobs_1_writes(tmp_path):
    bodies = [f"import ftkit.core.results as r\nr.record('n', {i})\n"
              f"r.claim('n is even', {i} % 2 == 0, 'n = {i}')" for i in range(3)]
    bodies[1] += "\nraise RuntimeError('this notebook fails')"
    _notebooks(tmp_path / "notebooks", bodies)
    runs = {jobs: run_batch(PROFILE, notebooks_dir=tmp_path / "notebooks",
                            runs_dir=tmp_path / "runs", run_id=f"jobs{jobs}", jobs=jobs,
                            log=lambda line: None) for jobs in (1, 2)}

    def entries(result):
        out = []
        for entry in load_run(result.run_dir)["notebooks"]:
            doc = json.loads((result.run_dir / entry["stem"] / "metrics.json").read_text())
            out.append((entry["stem"], entry["status"], doc["metrics"], doc["claims"]))
        return out

    one, two = entries(runs[1]), entries(runs[2])
    assert one == two
    assert [(stem, status) for stem, status, *_ in one] == [
        ("00_nb", "passed"), ("01_nb", "failed"), ("02_nb", "passed")]
    assert one[2][3][0]["ok"] is True and one[1][2] == {"n": 1}

    for result in runs.values():  # each report shows all three, the failure with its error
        report = (result.run_dir / "report.md").read_text()
        assert report.count("n is even — n =") == 3 and "this notebook fails" in report
        assert not result.ok
