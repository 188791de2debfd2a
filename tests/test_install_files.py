"""The install files agree: environment.yml defers to pyproject, pins cover the dependencies."""
import re
from pathlib import Path

import tomllib
import yaml

from ftkit.core import versions

ROOT = Path(__file__).resolve().parents[1]


def _pins() -> dict[str, str]:
    lines = (ROOT / "requirements/constraints.txt").read_text().splitlines()
    pairs = (l.split("==") for l in lines if "==" in l and not l.startswith("#"))
    return {re.sub(r"[-_.]+", "-", n.lower()): v.strip() for n, v in pairs}


def _dep_name(requirement: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", requirement, 1)[0].lower())


def test_environment_yml_installs_the_pip_package_with_the_same_pins():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-c requirements/constraints.txt" in pip_section
    assert any(line.startswith("-e .") for line in pip_section)
    conda_pkgs = [d for d in env["dependencies"] if isinstance(d, str)]
    # Only python and pip come from conda; everything else is the pip package's.
    assert sorted(p.split("=")[0] for p in conda_pkgs) == ["pip", "python"]
    python = next(p for p in conda_pkgs if p.startswith("python=")).split("=")[1]
    spec = pyproject["project"]["requires-python"]
    lo, hi = re.findall(r"3\.(\d+)", spec)
    assert int(lo) <= int(python.split(".")[1]) < int(hi)


def test_every_dependency_is_pinned_and_pins_satisfy_the_ranges():
    from packaging.requirements import Requirement

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    pins = _pins()
    deps = pyproject["project"]["dependencies"] + pyproject["project"]["optional-dependencies"]["dev"]
    for dep in deps:
        req = Requirement(dep)
        name = _dep_name(dep)
        assert name in pins, f"{name} is not pinned in requirements/constraints.txt"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} violates {dep}"


def test_versions_module_agrees_with_the_pins():
    pins = _pins()
    for name, tested in versions.TESTED.items():
        assert pins[name] == tested, name
