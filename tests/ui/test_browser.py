"""JupyterLab in a real (headless) Chromium: run a notebook, edit its panel, re-run, look.

Starts ``jupyter lab`` on 127.0.0.1 (free port, no token, private settings/runtime dirs) over a
copy of the notebooks, drives Debian's Chromium with Playwright (never a downloaded browser),
and saves screenshots under ``test-artifacts/``. Skips with the reason where no browser exists.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from ftkit.core.env import free_port

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
BROWSERS = ("/usr/bin/chromium", "/usr/bin/chromium-headless-shell", "/usr/bin/chromium-browser")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

pytestmark = pytest.mark.slow


def _browser() -> str:
    found = next((b for b in BROWSERS if Path(b).exists()), None)
    if found is None:
        pytest.skip("no Chromium installed (apt-get install chromium); .ci/run installs it")
    pytest.importorskip("playwright.sync_api", reason="pip install playwright (a dev dependency)")
    return found


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    browser = _browser()
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work / "notebooks")
    shutil.copytree(ROOT / "data", work / "data")  # notebooks read ../data/...
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(work / "config"),
           "JUPYTER_RUNTIME_DIR": str(work / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(work / "settings"),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces")}
    env.pop("FTKIT_HEADLESS", None)  # this is the interactive path
    news = work / "settings" / "@jupyterlab" / "apputils-extension"
    news.mkdir(parents=True)
    (news / "notification.jupyterlab-settings").write_text(
        '{"fetchNews": "false", "checkForUpdates": false}')  # no pop-up over the screenshots
    port = free_port()
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
           "--ServerApp.token=", "--ServerApp.password=", "--ServerApp.disable_check_xsrf=True",
           "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work / 'notebooks'}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI containers run as root
    log = open(work / "lab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/api/status", proc, work / "lab.log")
    yield {"url": url, "browser": browser, "root": work / "notebooks"}
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def _wait_for(url: str, proc, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"jupyter lab did not answer in {timeout} s: {log.read_text()[-2000:]}")


@pytest.fixture
def page(lab):
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=lab["browser"], args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        yield page
        browser.close()


def _open(page, lab, notebook: str) -> None:
    # ?reset: a clean workspace, so the notebook of an earlier test is not restored beside it
    page.goto(f"{lab['url']}/lab/tree/{notebook}?reset", wait_until="domcontentloaded")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel",
                           timeout=60_000)


_LAST_COUNT = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    let last = null, error = false;
    for (let i = 0; i < cells.length; i++) {
        const c = cells.get(i);
        if (c.type !== 'code') continue;
        last = c.executionCount;
        error = error || c.outputs.toJSON().some(o => o.output_type === 'error');
    }
    return {last: last, error: error};
}"""


def _run(page, command: str, timeout_s: float = 150) -> None:
    """Execute a JupyterLab command; wait until the last code cell has run again (or an error).

    The kernel goes idle between queued cells and the DOM holds only visible cells, so neither
    tells that a run-all has finished; the last cell's execution count in the model does.
    """
    before = page.evaluate(_LAST_COUNT)["last"] or 0
    page.evaluate(f"window.jupyterapp.commands.execute('{command}')")
    page.wait_for_function(f"() => {{ const s = ({_LAST_COUNT})(); "
                           f"return s.error || (s.last !== null && s.last > {before}); }}",
                           timeout=timeout_s * 1000)
    page.wait_for_function("() => window.jupyterapp.shell.currentWidget.sessionContext"
                           ".session.kernel.status === 'idle'", timeout=timeout_s * 1000)


def _select_cell(page, index: int) -> None:
    page.evaluate(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index}")


def test_setup_notebook_panel_edit_takes_effect(lab, page):
    _open(page, lab, "00_setup_and_environment.ipynb")
    _run(page, "notebook:run-all-cells")
    figure_titles = page.locator(".jp-OutputArea-output img")
    assert figure_titles.count() >= 1, "the matmul plot rendered"
    page.screenshot(path=str(ARTIFACTS / "00_first_run.png"), full_page=False)
    field = page.locator(".widget-inline-hbox:has(label:text-is('matmul_size')) input").first
    field.scroll_into_view_if_needed()
    field.fill("256")
    field.press("Enter")
    page.wait_for_timeout(500)
    assert "Valid" in " ".join(page.locator(".widget-html").all_inner_texts())
    page.screenshot(path=str(ARTIFACTS / "00_panel_edited.png"), full_page=False)
    _select_cell(page, 4)  # the cell `cfg = panel.value`
    _run(page, "notebook:run-all-below")
    page.screenshot(path=str(ARTIFACTS / "00_after_edit.png"), full_page=False)
    # The edit reached the experiment: the recorded parameters and the plot title say 256.
    metrics = json.loads((lab["root"] / "outputs/00_setup_and_environment/metrics.json").read_text())
    assert metrics["params"]["matmul_size"] == 256
    assert metrics["metrics"]["matmul_gflops_float32"] > 0
    plot = page.locator(".jp-OutputArea-output img").first
    plot.scroll_into_view_if_needed()
    assert plot.evaluate("img => img.naturalWidth") > 200, "the plot rendered"
    page.screenshot(path=str(ARTIFACTS / "00_plot_after_edit.png"), full_page=False)


def _outputs(page) -> list[dict]:
    """Every output of every cell, from the notebook model (the DOM holds only visible cells)."""
    return page.evaluate("""() => {
        const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
        const out = [];
        for (let i = 0; i < cells.length; i++) {
            const c = cells.get(i);
            if (c.type === 'code') out.push(...c.outputs.toJSON());
        }
        return out;
    }""")


def _images(page) -> int:
    return sum("image/png" in o.get("data", {}) for o in _outputs(page))


def _errors(page) -> list[str]:
    return [f"{o['ename']}: {o['evalue']}" for o in _outputs(page) if o["output_type"] == "error"]


def _append_to_parameters(page, lines: str) -> None:
    """Add assignments at the end of the parameters cell (the smoke sizes, for a quick run)."""
    page.evaluate("""(extra) => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        const cell = nb.widgets.find(c => (c.model.getMetadata('tags') || []).includes('parameters'));
        cell.model.sharedModel.setSource(cell.model.sharedModel.getSource() + '\\n' + extra);
    }""", lines)


def test_training_notebook_live_plot_and_panel_edit(lab, page):
    import yaml

    smoke = yaml.safe_load((ROOT / "papermill_runs/profiles/smoke.yaml").read_text())
    overrides = {"profile": "smoke", **smoke["notebooks"]["02_data_balancing"]}
    _open(page, lab, "02_data_balancing.ipynb")
    _append_to_parameters(page, "\n".join(f"{k} = {v!r}" for k, v in overrides.items()))
    _run(page, "notebook:run-all-cells")
    page.screenshot(path=str(ARTIFACTS / "02_first_run.png"), full_page=False)
    assert not _errors(page)
    first_images = _images(page)
    assert first_images >= 4, "figures and the live loss plots rendered"
    field = page.locator(".widget-inline-hbox:has(label:text-is('llm_steps')) input").first
    field.scroll_into_view_if_needed()
    field.fill("4")
    field.press("Enter")
    page.wait_for_timeout(500)
    _select_cell(page, 3)  # the cell `cfg = panel.value`
    _run(page, "notebook:run-all-below")
    metrics = json.loads((lab["root"] / "outputs/02_data_balancing/metrics.json").read_text())
    assert metrics["params"]["llm_steps"] == 4 and metrics["params"]["profile"] == "smoke"
    assert not _errors(page) and _images(page) == first_images
    loss_plot = page.locator(".jp-OutputArea-output img").last
    loss_plot.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "02_after_edit.png"), full_page=False)
