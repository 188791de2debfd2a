"""The widget panel: built from a notebook's schema, unchanged when nobody edits it, validating
edits, loading a profile's values when the profile changes."""
import json

import ipywidgets as w
import pytest

from ftkit.core.config import (
    AdapterConfig,
    ConfigError,
    ModelConfig,
    RunConfig,
    TrainConfig,
)
from ftkit.core.schema import notebook_schema, resolve
from ftkit.train.params import SweepConfig
from ftkit.ui.panel import panel

DEMO = notebook_schema(
    "99_demo", "DemoParams",
    run=(RunConfig, {"profile": "smoke", "seed": 42, "output_dir": "outputs/demo"}),
    model=(ModelConfig, {"model_name": "tiny-llama"}),
    train=(TrainConfig, {"lr": 3e-4, "lr_scheduler": "linear", "bf16": False, "max_steps": 7}),
    adapter=(AdapterConfig, {"lora_r": 4}),
    sweep=(SweepConfig, {"ranks": [2, 4], "analysis_rank": 4}))


@pytest.fixture
def cfg():
    return DEMO()


def test_headless_values_flow_through_unchanged(cfg, monkeypatch):
    monkeypatch.setenv("FTKIT_HEADLESS", "1")
    p = panel(cfg)
    assert p.value is cfg
    bundle = p._repr_mimebundle_()
    assert "lr" in bundle["text/plain"] and "0.0003" in bundle["text/plain"]


def test_widget_kinds_follow_field_types(cfg):
    p = panel(cfg)
    assert isinstance(p.widgets["lr"], w.FloatLogSlider)
    assert isinstance(p.widgets["lr_scheduler"], w.Dropdown)
    assert p.widgets["lr_scheduler"].options == ("linear", "cosine", "constant")
    assert isinstance(p.widgets["bf16"], w.Checkbox)
    assert isinstance(p.widgets["model_name"], w.Text)
    assert isinstance(p.widgets["lora_r"], w.BoundedIntText) and p.widgets["lora_r"].min == 1
    assert "rank" in p.widgets["lora_r"].tooltip
    assert p.widgets["ranks"].value == "[2, 4]"  # lists are shown and edited as lists
    assert [a.titles[0] for a in p.sections] == ["run", "model", "train", "adapter", "sweep"]
    assert all(a.selected_index == 0 for a in p.sections)  # open by default
    # exactly the declared fields: nothing that does nothing
    assert list(p.widgets) == DEMO.names() and "warmup_ratio" not in p.widgets


def test_an_edit_gives_a_new_validated_config(cfg):
    p = panel(cfg)
    p.widgets["lora_r"].value = 16
    p.widgets["lr_scheduler"].value = "cosine"
    p.widgets["ranks"].value = "[2, 4, 8]"
    new = p.value
    assert new.adapter.lora_r == 16 and new.train.lr_scheduler == "cosine"
    assert new.sweep.ranks == [2, 4, 8] and new.ranks == [2, 4, 8]
    assert new.train.lr == cfg.train.lr and cfg.adapter.lora_r == 4  # others kept, original intact
    assert "Valid" in p.message.value


def test_an_invalid_edit_shows_the_message_in_the_panel(cfg):
    p = panel(cfg)
    p.widgets["model_name"].value = "   "
    assert "model_name" in p.message.value and "Not valid" in p.message.value
    with pytest.raises(ConfigError, match="model_name"):
        p.value
    p.widgets["model_name"].value = "tiny-llama"
    p.widgets["ranks"].value = "2,4"
    assert "ranks" in p.message.value and "list" in p.message.value


def test_choosing_a_profile_loads_its_values(cfg, tmp_path, monkeypatch):
    (tmp_path / "smoke.yaml").write_text("params: {profile: smoke}\n")
    (tmp_path / "workshop.yaml").write_text(
        "params: {profile: workshop}\nnotebooks:\n  99_demo: {max_steps: 40, lora_r: 8}\n")
    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(tmp_path))
    p = panel(cfg)
    p.widgets["profile"].value = "workshop"
    new = p.value
    assert new.profile == "workshop" and new.train.max_steps == 40 and new.adapter.lora_r == 8
    assert new.train.lr == 3e-4  # not in the profile: the schema's default
    p.widgets["profile"].value = "smoke"
    assert p.value.train.max_steps == 7 and p.value.adapter.lora_r == 4


def test_save_as_profile_reproduces_the_panel_values(cfg, tmp_path, monkeypatch):
    import shutil

    from ftkit.core import profiles

    for name in ("workshop", "smoke"):
        shutil.copy(profiles.profiles_dir() / f"{name}.yaml", tmp_path / f"{name}.yaml")
    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(tmp_path))
    p = panel(cfg)
    p.widgets["lora_r"].value = 32
    path = p.save_profile("my-lab")
    prof = profiles.load_profile("my-lab")
    injected = profiles.params_for(prof, "99_demo", set(DEMO.names()))
    assert resolve(DEMO, injected) == p.value
    assert p.command("my-lab") == "ftkit run --profile my-lab --only 99_demo"
    with pytest.raises(ValueError, match="built-in"):
        p.save_profile("smoke")
    p.profile_name.value = "workshop"
    p._save_clicked()
    assert "Not saved" in p.saved.value and path.exists()


@pytest.mark.slow
def test_export_then_batch_run_gives_the_same_metrics(tmp_path, monkeypatch):
    """Panel edit -> Save as profile -> ftkit run -> the notebook records the edited values."""
    import shutil

    import nbformat

    from ftkit.batch.runner import run_batch
    from ftkit.core import profiles

    nb_dir, prof_dir = tmp_path / "notebooks", tmp_path / "profiles"
    nb_dir.mkdir(), prof_dir.mkdir()
    shutil.copy(profiles.profiles_dir() / "workshop.yaml", prof_dir / "workshop.yaml")
    params = nbformat.v4.new_code_cell('profile = "workshop"\noutput_dir = "out"\n'
                                       'lora_r = 4\nmax_steps = 20')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import ftkit as ft\ncfg = ft.config_from_params(globals(), '05_full_vs_peft')\n"
        "ft.record('lora_r', cfg.adapter.lora_r)\nft.record('max_steps', cfg.train.max_steps)")
    nb = nbformat.v4.new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "05_full_vs_peft.ipynb")

    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(prof_dir))
    from ftkit.ui.schemas import schema_for

    p = panel(schema_for("05_full_vs_peft")())
    p.widgets["lora_r"].value = 32
    p.widgets["max_steps"].value = 5
    p.save_profile("edited")
    result = run_batch("edited", notebooks_dir=nb_dir, runs_dir=tmp_path / "runs", log=lambda _: None)
    assert result.ok
    recorded = json.loads((result.run_dir / result.results[0].metrics_file).read_text())["metrics"]
    assert recorded == {"lora_r": 32, "max_steps": 5}
