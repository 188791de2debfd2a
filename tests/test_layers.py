"""The package's layers point one way, with no cycles and no hidden imports inside functions.

Every ftkit module may import only from its own package or from a lower layer; imports inside
functions are kept for optional dependencies (a library that only one path needs, or that
may be missing) and never for ftkit's own modules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ftkit"

# Lowest first; packages in one row are siblings and may not import each other.
LAYERS = [
    ["core"],
    ["models"],
    ["data"],
    ["evaluate"],
    ["train"],
    ["align", "compress", "memory"],
    ["asr", "vqa"],
    ["deploy", "monitor"],
    ["ui"],
    ["batch"],
]
RANK = {pkg: i for i, row in enumerate(LAYERS) for pkg in row}

# Third-party modules that may be imported inside a function: optional, or needed by one path.
LATE_OK = {
    "bitsandbytes", "trl", "peft", "jiwer", "espeakng_loader", "gguf", "sklearn", "imblearn",
    "papermill", "nbformat", "playwright", "ipywidgets", "IPython", "matplotlib", "optuna",
    "torch.ao.quantization", "scipy", "datasets", "soundfile", "huggingface_hub", "platformdirs",
    "transformers", "torch", "sqlalchemy", "pandas", "numpy", "yaml", "psutil", "tqdm", "safetensors",
    "openai", "uvicorn", "torchao", "lm_eval", "faiss", "vllm",
}
# The ``ftkit`` command starts without torch: only the subcommands that check the model packs
# or serve a model load them (and torch with them), when chosen.
LATE_FTKIT = {"ftkit.batch.cli": ("ftkit.models", "ftkit.batch.packcheck", "ftkit.batch",
                                  "ftkit.deploy")}


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def imports(path: Path) -> list[tuple[str, bool, int]]:
    """``(module, inside_a_function, line)`` for every import in ``path``."""
    tree = ast.parse(path.read_text())
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                found.extend((a.name, in_function, child.lineno) for a in child.names)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}:{child.lineno}: relative import"
                base = child.module or ""
                found.append((base, in_function, child.lineno))
                found.extend((f"{base}.{a.name}", in_function, child.lineno) for a in child.names)
            visit(child, inner)

    visit(tree, False)
    return found


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "ftkit" else None


def test_every_package_has_a_layer():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(RANK), f"packages without a layer: {sorted(packages - set(RANK))}"
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert not loose, f"modules outside any package: {loose}"


@pytest.mark.parametrize("name", sorted(modules()))
def test_imports_point_down(name):
    mine = package_of(name)
    if mine is None:
        return  # ftkit/__init__.py: lazy exports only
    upward = [f"line {line}: {mod}" for mod, _, line in imports(modules()[name])
              if (other := package_of(mod)) and other != mine and RANK[other] >= RANK[mine]]
    assert not upward, f"{name} (layer {RANK[mine]}) imports a layer at or above its own: {upward}"


def late_ok(module: str, importer: str = "") -> bool:
    if module.startswith("ftkit.") or module == "ftkit":
        return any(module == ok or module.startswith(ok + ".")
                   for ok in LATE_FTKIT.get(importer, ()))
    return any(module == ok or module.startswith(ok + ".") for ok in LATE_OK)


@pytest.mark.parametrize("name", sorted(modules()))
def test_no_late_imports_but_optional_ones(name):
    late = [f"line {line}: {mod}" for mod, inside, line in imports(modules()[name])
            if inside and not late_ok(mod, name)]
    assert not late, f"{name} imports inside functions: {late}"


def test_no_import_cycles():
    mods = modules()
    graph = {}
    for name, path in mods.items():
        deps = set()
        for mod, inside, _ in imports(path):
            while mod and mod not in mods:
                mod = mod.rpartition(".")[0]
            if mod and mod != name and mods[mod].name != "__init__.py":
                deps.add(mod)
        graph[name] = deps
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_the_command_starts_without_torch():
    """``ftkit --help``, ``ftkit profiles`` and the schema checks of ``ftkit run`` need no torch:
    the parameter sections live in light ``params`` modules."""
    import subprocess
    import sys

    code = "import sys, ftkit.batch.cli, ftkit.ui.schemas; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_notebook_maps_to_modules_that_exist_in_readme_and_docstring():
    import importlib
    import re

    import ftkit

    root = Path(ftkit.__file__).parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^    (\d\d_\w+) +(.+)$", ftkit.__doc__, re.M))
    for notebook in sorted(p.stem for p in (root / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        assert f"| `{notebook}` |" in readme, f"{notebook} missing from the README table"
        assert notebook in table, f"{notebook} missing from the ftkit docstring table"
        for module in re.findall(r"\b([a-z]+\.[a-z_]+)\b", table[notebook]):
            importlib.import_module(f"ftkit.{module}")
