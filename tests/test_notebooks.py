"""Every notebook: clean in git, in house style, and passing the smoke profile via papermill.

New notebooks are picked up automatically (no edit here): the smoke test is parametrised over
``notebooks/*.ipynb``.
"""
import json
import math
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
IDS = [p.stem for p in NOTEBOOKS]


def _code_cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_curriculum_is_not_empty():
    assert {"00_setup_and_environment", "03_model_initialisation"} <= set(IDS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_committed_clean(path):
    nb = json.loads(path.read_text())
    assert "widgets" not in nb["metadata"], "strip metadata.widgets"
    for cell in _code_cells(path):
        assert not cell.get("outputs"), "strip outputs before committing"
        assert cell.get("execution_count") is None, "strip execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_structure(path):
    cells = json.loads(path.read_text())["cells"]
    code = _code_cells(path)
    tagged = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert "profile" in "".join(tagged[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and "ftkit" in "".join(cells[0]["source"])
    assert "§" in "".join(cells[0]["source"]), "the first cell names the paper section"
    source = "\n".join("".join(c["source"]) for c in code)
    assert "config_from_params" in source and "ft.panel(" in source
    assert "ft.record(" in source and "ft.claim(" in source
    lengths = sorted(len("".join(c["source"]).splitlines()) for c in code)
    assert len(code) <= 25 and lengths[-1] <= 40 and lengths[len(lengths) // 2] <= 8


def _markdown(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"]
            if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_course_standard(path):
    """DESIGN.md section 2: what you will learn, the paper, the time per profile; readings
    written from the run's numbers; a summary, exercises that name a parameter, links onward."""
    from ftkit.ui.schemas import schema_for

    md = _markdown(path)
    intro = md[0]
    assert "What you will learn" in intro and "§" in intro
    assert re.search(r"Run time:.*smoke.*workshop", intro, re.S), "time per profile"
    summary = [m for m in md if m.lstrip().startswith("## Summary")]
    assert len(summary) == 1, "one summary section"
    exercises = summary[0].split("## Try next", 1)
    assert len(exercises) == 2, "'Try next' exercises follow the summary"
    items = [l for l in exercises[1].splitlines() if l.startswith("- ")]
    assert 2 <= len(items) <= 4, "two to four exercises"
    names = set(schema_for(path.stem).names())
    for item in items:
        named = set(re.findall(r"`(\w+)", item)) & names
        assert named, f"an exercise names a parameter of the notebook: {item}"
    assert re.search(r"\*\*Next:\*\*.*\]\(\d\d_\w+\.ipynb\)", exercises[1], re.S)
    assert "](../docs/glossary.md)" in exercises[1]
    cells = json.loads(path.read_text())["cells"]
    for cell, after in zip(cells, cells[1:] + [None]):  # readings are written from numbers:
        text = "".join(cell["source"])  # a heading over an ft.reading cell, never fixed prose
        if cell["cell_type"] == "markdown" and "reading the results" in text.lower():
            assert text.strip() == "### Reading the results", text[:60]
            assert after and "ft.reading(" in "".join(after["source"])
    readings = [src for src in map("".join, (c["source"] for c in _code_cells(path)))
                if "ft.reading(" in src]
    assert readings and all(re.search(r'f"""[^"]*\{', src) for src in readings)


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")


def _sane(value) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_sane(v) for v in value.values())
    if isinstance(value, list):
        return all(_sane(v) for v in value)
    return True


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_smoke_profile(path, smoke_runs):
    from ftkit.batch.runner import run_batch

    result = run_batch("smoke", only=path.stem, run_id=path.stem, notebooks_dir=path.parent,
                       runs_dir=smoke_runs)
    (nb,) = result.results
    assert nb.status == "passed", nb.error
    metrics = Path(result.run_dir) / nb.metrics_file
    doc = json.loads(metrics.read_text())
    assert len(doc["metrics"]) >= 3, "a notebook records its results"
    bad = [k for k, v in doc["metrics"].items() if not _sane(v)]
    assert not bad, f"non-finite metrics: {bad}"
    assert doc["claims"], "at least one paper claim is checked"
    assert all(isinstance(c["ok"], bool) and c["detail"] for c in doc["claims"])
    for fig in doc["figures"]:
        assert (metrics.parent / fig).stat().st_size > 1000
    assert doc["params"]["profile"] == "smoke"


# Metrics that measure the machine (time, memory, speed) rather than the results.
MACHINE_METRIC = re.compile(r"seconds|_ms\b|ms_per|_mb\b|memory|gflops|speedup|latency|"
                            r"over_base|cores|rss|trains_in|gpu")


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_run_all_twice_in_one_kernel(path, tmp_path, monkeypatch):
    """DESIGN.md section 2: "Run All" a second time in the same kernel gives the same results
    (no `del` of inputs, no reassigned parameters, nothing that depends on a fresh kernel)."""
    import copy

    import nbformat
    import papermill
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    from ftkit.batch import runner
    from ftkit.core import profiles

    first, metrics = tmp_path / "first.json", tmp_path / "metrics.json"
    params = runner.injected_params(path, profiles.load_profile("smoke"), tmp_path / "out")
    nb = parameterize_notebook(load_notebook_node(str(path)), params)
    snapshot = nbformat.v4.new_code_cell(
        f"import shutil\nshutil.copy({str(metrics)!r}, {str(first)!r})", metadata={"tags": []})
    second = copy.deepcopy(nb.cells)
    for i, cell in enumerate(second):
        cell["id"] = f"second-pass-{i}"  # cell ids stay unique in the doubled notebook
    nb.cells = nb.cells + [snapshot] + second
    doubled = tmp_path / path.name
    nbformat.write(nb, doubled)
    for key, value in runner.kernel_env(metrics, path.parent).items():
        monkeypatch.setenv(key, value)
    papermill.execute_notebook(str(doubled), str(tmp_path / "out.ipynb"), kernel_name="python3",
                               cwd=str(path.parent), progress_bar=False)
    once, twice = json.loads(first.read_text()), json.loads(metrics.read_text())
    results = {k for k in once["metrics"] if not MACHINE_METRIC.search(k)}
    assert once["metrics"].keys() == twice["metrics"].keys()
    changed = [k for k in sorted(results) if not _same(once["metrics"][k], twice["metrics"][k])]
    assert not changed, {k: (once["metrics"][k], twice["metrics"][k]) for k in changed}
    assert [c["text"] for c in once["claims"]] == [c["text"] for c in twice["claims"]]
    assert once["readings"].keys() == twice["readings"].keys()
