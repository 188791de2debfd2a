"""Notebook schemas: one declaration per notebook, misspelt keys refused wherever they come
from, lists as lists, and ``profile`` meaning the same in papermill, the panel and ``ftkit run``."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ftkit.batch import cli
from ftkit.batch.runner import check_parameters
from ftkit.core import profiles
from ftkit.core.config import ConfigError
from ftkit.core.schema import cell_parameters, resolve
from ftkit.ui.schemas import SCHEMAS, config_from_params, schema_for

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def parameters_cell(path: Path) -> dict:
    cells = json.loads(path.read_text())["cells"]
    (cell,) = [c for c in cells if "parameters" in c["metadata"].get("tags", [])]
    body = ast.parse("".join(cell["source"])).body
    return {node.targets[0].id: ast.literal_eval(node.value) for node in body}


def test_every_notebook_has_a_schema_and_its_parameters_cell_mirrors_it():
    assert {p.stem for p in NOTEBOOKS} == set(SCHEMAS)
    for path in NOTEBOOKS:
        assert parameters_cell(path) == SCHEMAS[path.stem].defaults(), path.stem


def test_no_parameter_is_a_comma_separated_string():
    for schema in SCHEMAS.values():
        for name, value in schema.defaults().items():
            assert not (isinstance(value, str) and "," in value), f"{schema.NOTEBOOK}.{name}"


@pytest.mark.parametrize("profile", ["smoke", "workshop", "gpu"])
def test_every_profile_resolves_for_every_notebook(profile):
    for schema in SCHEMAS.values():
        params = resolve(schema, {"profile": profile})
        assert params.run.profile == profile


def test_misspelt_keys_name_the_notebook_and_the_closest_name():
    with pytest.raises(ConfigError) as err:
        resolve(schema_for("08_dpo_alignment"), {"beta": 0.1, "betaa": 0.2, "lr": 1e-3,
                                                 "lora_rr": 4})
    message = str(err.value)
    assert "betaa: unknown parameter of 08_dpo_alignment; did you mean beta?" in message
    assert "lora_rr: unknown parameter of 08_dpo_alignment; did you mean lora_r?" in message
    assert "beta:" not in message.replace("betaa:", "") and "lr:" not in message
    with pytest.raises(ConfigError, match="no parameter schema for notebook '08_dpo'"):
        schema_for("08_dpo")


def test_profile_values_then_explicit_values_win():
    schema = schema_for("06_lora_vs_dora")
    smoke = profiles.load_profile("smoke").notebooks["06_lora_vs_dora"]
    params = resolve(schema, {"profile": "smoke"})
    assert params.model_name == smoke["model_name"] and params.ranks == smoke["ranks"]
    # the parameters cell (the defaults) with only `profile` changed: the smoke sizes
    params = resolve(schema, {**schema.defaults(), "profile": "smoke"})
    assert params.max_steps == smoke["max_steps"]
    # a value given explicitly wins over the profile
    params = resolve(schema, {**schema.defaults(), "profile": "smoke", "max_steps": 3})
    assert params.max_steps == 3 and params.n_train == smoke["n_train"]
    with pytest.raises(ConfigError, match="profile = 'laptop'.*'smoke'"):
        resolve(schema, {"profile": "laptop"})


def test_a_profile_with_an_unknown_key_is_refused(tmp_path, monkeypatch):
    (tmp_path / "typo.yaml").write_text(yaml.safe_dump(
        {"params": {"profile": "workshop"}, "notebooks": {"06_lora_vs_dora": {"rankz": [2]}}}))
    (tmp_path / "workshop.yaml").write_text("params: {profile: workshop}\n")
    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(tmp_path))
    with pytest.raises(ConfigError, match="profile 'typo': rankz: unknown parameter of "
                                          "06_lora_vs_dora; did you mean ranks"):
        check_parameters([Path("06_lora_vs_dora.ipynb")], profiles.load_profile("typo"), {})


def test_ftkit_run_p_refuses_a_misspelt_key_before_any_work(tmp_path, capsys):
    code = cli.main(["run", "--profile", "smoke", "--only", "08_dpo*", "-p", "betaa", "0.2",
                     "--notebooks-dir", str(ROOT / "notebooks"), "--runs-dir", str(tmp_path)])
    assert code == 2
    assert "betaa: unknown parameter of 08_dpo_alignment; did you mean beta?" in \
        capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing ran, nothing written


def test_ftkit_run_p_values_are_read_as_yaml_and_checked():
    smoke = profiles.load_profile("smoke")
    nb = [ROOT / "notebooks" / "06_lora_vs_dora.ipynb"]
    check_parameters(nb, smoke, {"ranks": [2, 4], "analysis_rank": 4})
    with pytest.raises(ConfigError, match="ranks = '2,4' must be a list"):
        check_parameters(nb, smoke, {"ranks": "2,4", "analysis_rank": 4})


def test_cell_parameters_reads_only_the_literal_cells_run_last():
    history = ["", "import numpy as np\nresults = [1, 2]",  # a previous run left variables
               'profile = "workshop"\nranks = [2, 4, 8]\nseed = 42',  # the parameters cell
               "# Parameters\nprofile = \"smoke\"\n",  # papermill's injected cell
               "cfg = ft.config_from_params(globals(), '06_lora_vs_dora')"]
    namespace = {"In": history, "profile": "smoke", "ranks": [2, 4, 8], "seed": 42,
                 "results": [1, 2], "np": sys}
    assert cell_parameters(namespace) == {"profile": "smoke", "ranks": [2, 4, 8], "seed": 42}
    # outside IPython: every plain value not starting with "_"
    assert cell_parameters({"seed": 1, "_x": 2, "np": sys}) == {"seed": 1}


def test_config_from_params_in_a_second_run_of_the_same_kernel(tmp_path, monkeypatch):
    monkeypatch.delenv("FTKIT_METRICS_FILE", raising=False)
    out = str(tmp_path / "o")
    cell = f'profile = "smoke"\noutput_dir = "{out}"\nn_questions = 3'
    first = {"In": ["", cell, "cfg = ..."], "profile": "smoke", "output_dir": out,
             "n_questions": 3}
    a = config_from_params(first, "03_model_initialisation")
    # run all again: the kernel still holds the first run's variables
    again = {**first, "questions": ["q"], "table_rows": 3, "In": first["In"] + [cell, "cfg"]}
    b = config_from_params(again, "03_model_initialisation")
    assert a == b and b.probes.n_questions == 3


@pytest.mark.slow
def test_papermill_with_a_misspelt_key_fails_and_names_it(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "papermill", "03_model_initialisation.ipynb",
         str(tmp_path / "out.ipynb"), "-k", "python3", "-p", "n_questionz", "3",
         "--cwd", str(ROOT / "notebooks")],
        cwd=ROOT / "notebooks", capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert "n_questionz: unknown parameter of 03_model_initialisation; did you mean " \
           "n_questions?" in result.stdout + result.stderr
