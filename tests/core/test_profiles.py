"""Unit tests of ftkit.core.profiles and of the profiles shipped in papermill_runs/profiles."""
from __future__ import annotations

import pytest

from ftkit.core.profiles import (
    PROFILES_ENV,
    Profile,
    list_profiles,
    load_profile,
    params_for,
    profiles_dir,
)


@pytest.fixture
def folder(tmp_path):
    (tmp_path / "mini.yaml").write_text(
        "description: >-\n  A small\n  profile.\n"
        "timeout_s: 30\ncell_timeout_s: 10\n"
        "params: {profile: mini, steps: 2, lr: 0.1}\n"
        "notebooks:\n  03_model: {steps: 5, max_new_tokens: 12}\n"
    )
    return tmp_path


def test_shipped_profiles_load(monkeypatch):
    monkeypatch.delenv(PROFILES_ENV, raising=False)
    assert {"smoke", "workshop", "gpu"} <= set(list_profiles())
    limits = {"smoke": 600, "workshop": 1500, "gpu": 1800}
    for name, timeout in limits.items():
        prof = load_profile(name)
        assert prof.timeout_s == timeout
        assert 0 < prof.cell_timeout_s <= prof.timeout_s
        assert prof.params["profile"] == name
        assert len(prof.description) > 40 and "\n" not in prof.description


def test_load_profile_reads_all_fields(folder):
    prof = load_profile("mini", folder)
    assert prof == Profile(name="mini", description="A small profile.", timeout_s=30,
                           cell_timeout_s=10, params={"profile": "mini", "steps": 2, "lr": 0.1},
                           notebooks={"03_model": {"steps": 5, "max_new_tokens": 12}})


def test_unknown_profile_lists_known_ones(folder):
    with pytest.raises(ValueError, match="unknown profile 'nope'.*mini"):
        load_profile("nope", folder)


def test_env_var_overrides_profiles_dir(folder, monkeypatch):
    monkeypatch.setenv(PROFILES_ENV, str(folder))
    assert profiles_dir() == folder
    assert list_profiles() == ["mini"]


@pytest.mark.parametrize("text, message", [
    ("timeout_s: -1\n", "timeout_s must be a positive"),
    ("cell_timeout_s: fast\n", "cell_timeout_s must be a positive"),
    ("params: [1, 2]\n", "params must be a mapping"),
    ("notebooks: {a: 3}\n", "notebooks.a must be a mapping"),
    ("timeouts: 3\n", "unknown keys"),
    ("- just a list\n", "mapping at the top level"),
])
def test_malformed_profiles_are_rejected(tmp_path, text, message):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ValueError, match=message):
        load_profile("bad", tmp_path)


def test_empty_profile_gets_defaults(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    prof = load_profile("empty", tmp_path)
    assert (prof.params, prof.notebooks, prof.timeout_s) == ({}, {}, 900)


def test_params_for_merges_and_filters(folder):
    prof = load_profile("mini", folder)
    declared = {"profile", "steps", "max_new_tokens", "output_dir"}
    assert params_for(prof, "03_model", declared) == {
        "profile": "mini", "steps": 5, "max_new_tokens": 12}
    assert params_for(prof, "04_other", declared) == {"profile": "mini", "steps": 2}
    assert params_for(prof, "03_model", set()) == {}


def test_params_for_injects_profile_name_when_params_lack_it():
    prof = Profile(name="plain", params={"seed": 1})
    assert params_for(prof, "x", {"profile", "seed"}) == {"profile": "plain", "seed": 1}

