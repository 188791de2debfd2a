"""The widget panel: built from the config, unchanged when nobody edits it, validating edits."""
import json

import ipywidgets as w
import pytest

from ftkit.core.config import Config, ConfigError
from ftkit.ui.panel import panel


@pytest.fixture
def cfg():
    return Config.from_params({"profile": "smoke", "lr": 3e-4, "lr_scheduler": "linear",
                               "bf16": False, "model_name": "tiny-llama", "lora_r": 4})


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
    assert [a.titles[0] for a in p.sections] == list(cfg.sections)
    assert all(a.selected_index == 0 for a in p.sections)  # open by default


def test_an_edit_gives_a_new_validated_config(cfg):
    p = panel(cfg)
    p.widgets["lora_r"].value = 16
    p.widgets["lr_scheduler"].value = "cosine"
    new = p.value
    assert new.adapter.lora_r == 16 and new.train.lr_scheduler == "cosine"
    assert new.train.lr == cfg.train.lr and cfg.adapter.lora_r == 4  # others kept, original intact
    assert "Valid" in p.message.value


def test_an_invalid_edit_shows_the_message_in_the_panel(cfg):
    p = panel(cfg)
    p.widgets["model_name"].value = "   "
    assert "model_name" in p.message.value and "Not valid" in p.message.value
    with pytest.raises(ConfigError, match="model_name"):
        p.value


def test_save_as_profile_reproduces_the_panel_values(cfg, tmp_path, monkeypatch):
    import shutil

    from ftkit.core import profiles

    shutil.copy(profiles.profiles_dir() / "workshop.yaml", tmp_path / "workshop.yaml")
    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(tmp_path))
    monkeypatch.setenv("JPY_SESSION_NAME", "/x/notebooks/05_full_vs_peft.ipynb")
    p = panel(cfg)
    p.widgets["lora_r"].value = 32
    path = p.save_profile("my-lab")
    prof = profiles.load_profile("my-lab")
    declared = set(cfg.to_params())
    injected = profiles.params_for(prof, "05_full_vs_peft", declared)
    assert Config.from_params(injected) == p.value.replace(output_dir=cfg.run.output_dir)
    assert p.command("my-lab") == "ftkit run --profile my-lab --only 05_full_vs_peft"
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
                                       'lr = 2e-4\nlora_r = 8\nlr_scheduler = "cosine"')
    params.metadata["tags"] = ["parameters"]
    body = nbformat.v4.new_code_cell(
        "import ftkit as ft\ncfg = ft.config_from_params(globals())\n"
        "ft.record('lr', cfg.train.lr)\nft.record('lora_r', cfg.adapter.lora_r)\n"
        "ft.record('lr_scheduler', cfg.train.lr_scheduler)")
    nb = nbformat.v4.new_notebook(cells=[params, body])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "05_demo.ipynb")

    monkeypatch.setenv("FTKIT_PROFILES_DIR", str(prof_dir))
    p = panel(Config.from_params({"profile": "workshop", "lr": 2e-4, "lora_r": 8,
                                  "lr_scheduler": "cosine"}))
    p.widgets["lora_r"].value = 32
    p.widgets["lr_scheduler"].value = "linear"
    p.save_profile("edited", notebook="05_demo")
    result = run_batch("edited", notebooks_dir=nb_dir, runs_dir=tmp_path / "runs", log=lambda _: None)
    assert result.ok
    recorded = json.loads((result.run_dir / result.results[0].metrics_file).read_text())["metrics"]
    assert recorded == {"lr": p.value.train.lr, "lora_r": 32, "lr_scheduler": "linear"}
