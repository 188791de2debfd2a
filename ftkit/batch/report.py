"""Render a batch run as ``report.md`` and ``report.html`` from run.json and metrics files.

The report is rebuilt from files only, so ``ftkit report RUN_DIR`` gives the same result as
the end of ``ftkit run``, also on a copy of the run directory made elsewhere (CI artifacts).
"""
from __future__ import annotations

import html
import json
import math
import os
from pathlib import Path, PurePosixPath
from urllib.parse import quote

from ftkit.core.results import empty_metrics, load_metrics

STATUS_MARK = {"passed": "✔", "failed": "✘", "timeout": "⏱", "pending": "…"}
VALUE_CHARS = 200  # longer metric values are cut in tables; metrics.json has them whole


def write_report(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write report.md and report.html into ``run_dir``; returns their paths."""
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    views = notebook_views(run, run_dir)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text(render_markdown(run, views), encoding="utf-8")
    html_path.write_text(render_html(run, views), encoding="utf-8")
    return md_path, html_path


def load_run(run_dir: str | os.PathLike) -> dict:
    """The parsed run.json of a run directory (ValueError if there is none)."""
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a run directory: no run.json")
    return json.loads(path.read_text(encoding="utf-8"))


def metrics_summary(doc: dict) -> tuple[int, int, int]:
    """(number of metrics, claims that hold, claims in all) of a metrics document."""
    claims = doc.get("claims", [])
    return len(doc.get("metrics", {})), sum(bool(c.get("ok")) for c in claims), len(claims)


def notebook_views(run: dict, run_dir: Path) -> list[dict]:
    """Each notebook's run.json entry joined with its metrics and figure links."""
    return [_view(entry, run_dir) for entry in run.get("notebooks", [])]


def _view(entry: dict, run_dir: Path) -> dict:
    """One run.json entry plus its metrics document, figure paths and existing links."""
    rel = entry.get("metrics_file") or f"{entry['stem']}/metrics.json"
    try:
        doc, problem = load_metrics(run_dir / rel), ""
    except ValueError as exc:
        doc, problem = empty_metrics(), str(exc)
    base = PurePosixPath(rel).parent
    figures = [str(base / f) for f in doc.get("figures", [])]
    view = {**entry, "doc": doc, "figures": figures, "metrics_problem": problem}
    for key in ("output", "log"):  # a notebook that could not even be read has neither
        if not view.get(key) or not (run_dir / view[key]).is_file():
            view[key] = ""
    return view


def format_value(value) -> str:
    """A metric value for a table cell; non-finite numbers are flagged, null is a dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.6g}" if math.isfinite(value) else f"{value} ⚠ not finite"
    if isinstance(value, (list, dict)):
        text = json.dumps(value, ensure_ascii=False)
        return text if len(text) <= VALUE_CHARS else text[: VALUE_CHARS - 1] + "…"
    return str(value)


def status_label(status: str) -> str:
    """Status with its mark, e.g. ``✘ failed``."""
    return f"{STATUS_MARK.get(status, '?')} {status}"


def _seconds(value) -> str:
    """Seconds with one decimal, or a dash when the notebook did not run."""
    return f"{value:.1f}" if isinstance(value, (int, float)) else "–"


def _summary_counts(view: dict) -> tuple[str, str]:
    """Table texts for the metric count and the claims held/total."""
    n_metrics, held, total = metrics_summary(view["doc"])
    return str(n_metrics), f"{held}/{total}" if total else "–"


def _overview_lines(run: dict, views: list[dict]) -> list[tuple[str, str]]:
    """(label, value) pairs describing the run as a whole."""
    env = run.get("environment", {})
    git = env.get("git", {})
    dirty = " (uncommitted changes)" if git.get("dirty") else ""
    pkgs = env.get("packages", {})
    passed = sum(v.get("status") == "passed" for v in views)
    return [
        ("Result", f"{passed}/{len(views)} notebooks passed"),
        ("Profile", f"{run.get('profile')}: {run.get('profile_description', '')}".strip()),
        ("Limits", f"{run.get('timeout_s')} s per notebook, "
                   f"{run.get('cell_timeout_s')} s per cell"),
        ("Started / finished", f"{run.get('started')} / {run.get('finished') or '–'}"),
        ("Git revision", f"{git.get('revision', 'unknown')}{dirty}"),
        ("Machine", f"{env.get('platform', '?')}, {env.get('cpus_usable', '?')} CPUs usable"),
        ("Packages", ", ".join(f"{k} {v}" for k, v in pkgs.items())),
    ]


# ---------------------------------------------------------------- Markdown


def render_markdown(run: dict, views: list[dict]) -> str:
    """The whole report as GitHub-flavoured Markdown."""
    parts = [f"# ftkit run `{run.get('run_id')}`", ""]
    parts += [f"- **{label}:** {_md_text(value)}" for label, value in _overview_lines(run, views)]
    parts += ["", "## Summary", "", _md_summary(views)]
    for view in views:
        parts += ["", _md_section(view)]
    return "\n".join(parts).rstrip() + "\n"


def _md_text(text) -> str:
    """Text safe inside a Markdown table cell or list item."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(text.split("\n")).replace("<", "&lt;")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table with escaped cells."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md_text(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_summary(views: list[dict]) -> str:
    """The table with one row per notebook."""
    rows = [[v["stem"], status_label(v.get("status", "?")), _seconds(v.get("seconds")),
             *_summary_counts(v)] for v in views]
    return _md_table(["Notebook", "Status", "Seconds", "Metrics", "Claims held"], rows)


def _md_section(view: dict) -> str:
    """One notebook's metrics, claims, figures and error."""
    doc = view["doc"]
    out = [f"## {view['stem']} — {status_label(view.get('status', '?'))} "
           f"({_seconds(view.get('seconds'))} s)", ""]
    if view.get("output"):
        out += [f"Executed notebook: [{view['output']}]({quote(view['output'])})", ""]
    if view.get("params"):
        params = ", ".join(f"`{k}={v!r}`" for k, v in view["params"].items())
        out += [f"Parameters: {_md_text(params)}", ""]
    if doc["metrics"]:
        rows = [[k, format_value(v)] for k, v in doc["metrics"].items()]
        out += ["### Metrics", "", _md_table(["Metric", "Value"], rows), ""]
    for name, table in doc.get("tables", {}).items():
        rows = [[format_value(v) for v in row] for row in table["rows"]]
        out += [f"### Table: {name}", "", _md_table(table["columns"], rows), ""]
    if doc["claims"]:
        out += ["### Claims", ""] + [_md_claim(c) for c in doc["claims"]] + [""]
    for name, text in doc.get("readings", {}).items():
        out += [f"### Reading the results: {name}", "", text, ""]
    if view["figures"]:
        out += ["### Figures", ""]
        for fig in view["figures"]:
            out += [f"![{PurePosixPath(fig).stem}]({quote(fig)})", ""]
    out += _md_error(view)
    return "\n".join(out).rstrip()


def _md_claim(claim: dict) -> str:
    """One claim as a list item with its mark and detail."""
    mark = "✔" if claim.get("ok") else "✘"
    detail = f" — {claim['detail']}" if claim.get("detail") else ""
    return f"- {mark} {_md_text(claim.get('text', ''))}{_md_text(detail)}"


def _md_error(view: dict) -> list[str]:
    """The error excerpt in a fence that the excerpt itself cannot close."""
    text = "\n".join(t for t in (view.get("error"), view.get("metrics_problem")) if t)
    if not text:
        return []
    fence = "~~~~" if "```" in text else "```"
    log = [f"Full log: [{view['log']}]({quote(view['log'])})", ""] if view.get("log") else []
    return ["### Error", "", fence + "text", text, fence, ""] + log


# -------------------------------------------------------------------- HTML

CSS = """
body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;
color:#222}
table{border-collapse:collapse;margin:.5rem 0 1rem}
th,td{border:1px solid #ccc;padding:.25rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f3f3} .passed{color:#17702b} .failed,.timeout{color:#b3261e}
.pending{color:#777} pre{background:#f6f6f6;padding:.75rem;overflow-x:auto}
img{max-width:100%;border:1px solid #ddd;margin:.5rem 0} dt{font-weight:600}
dd{margin:0 0 .4rem 1rem}
"""


def render_html(run: dict, views: list[dict]) -> str:
    """The whole report as one HTML page (images are linked, everything else inline)."""
    title = html.escape(f"ftkit run {run.get('run_id')}")
    overview = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>"
                       for k, v in _overview_lines(run, views))
    body = [f"<h1>{title}</h1>", f"<dl>{overview}</dl>", "<h2>Summary</h2>",
            _html_summary(views)] + [_html_section(v) for v in views]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{title}</title><style>{CSS}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")


def _html_table(header: list[str], rows: list[list[str]]) -> str:
    """A table whose cells are given as ready HTML."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _anchor(stem: str) -> str:
    """The id of a notebook's section."""
    return "nb-" + quote(stem, safe="")


def _html_status(status: str) -> str:
    """Status label coloured by its CSS class."""
    return f'<span class="{html.escape(status)}">{html.escape(status_label(status))}</span>'


def _html_summary(views: list[dict]) -> str:
    """The table with one row per notebook, each linking to its section."""
    rows = []
    for v in views:
        link = f'<a href="#{_anchor(v["stem"])}">{html.escape(v["stem"])}</a>'
        counts = [html.escape(c) for c in _summary_counts(v)]
        rows.append([link, _html_status(v.get("status", "?")),
                     _seconds(v.get("seconds")), *counts])
    return _html_table(["Notebook", "Status", "Seconds", "Metrics", "Claims held"], rows)


def _html_section(view: dict) -> str:
    """One notebook's metrics, claims, figures and error."""
    doc, esc = view["doc"], html.escape
    out = [f'<h2 id="{_anchor(view["stem"])}">{esc(view["stem"])} — '
           f'{_html_status(view.get("status", "?"))} ({_seconds(view.get("seconds"))} s)</h2>']
    if view.get("output"):
        out.append(f'<p>Executed notebook: <a href="{esc(quote(view["output"]))}">'
                   f'{esc(view["output"])}</a></p>')
    if view.get("params"):
        params = ", ".join(f"{k}={v!r}" for k, v in view["params"].items())
        out.append(f"<p>Parameters: <code>{esc(params)}</code></p>")
    if doc["metrics"]:
        rows = [[esc(k), esc(format_value(v))] for k, v in doc["metrics"].items()]
        out += ["<h3>Metrics</h3>", _html_table(["Metric", "Value"], rows)]
    for name, table in doc.get("tables", {}).items():
        rows = [[esc(format_value(v)) for v in row] for row in table["rows"]]
        out += [f"<h3>Table: {esc(name)}</h3>",
                _html_table([esc(str(c)) for c in table["columns"]], rows)]
    if doc["claims"]:
        out += ["<h3>Claims</h3>", "<ul>" + "".join(map(_html_claim, doc["claims"])) + "</ul>"]
    for name, text in doc.get("readings", {}).items():
        out += [f"<h3>Reading the results: {esc(name)}</h3>", f"<pre>{esc(text)}</pre>"]
    if view["figures"]:
        out.append("<h3>Figures</h3>")
        out += [f'<p><img src="{esc(quote(f))}" alt="{esc(PurePosixPath(f).stem)}"></p>'
                for f in view["figures"]]
    error = "\n".join(t for t in (view.get("error"), view.get("metrics_problem")) if t)
    if error:
        out += ["<h3>Error</h3>", f"<pre>{esc(error)}</pre>"]
        if view.get("log"):
            link = f'<a href="{esc(quote(view["log"]))}">{esc(view["log"])}</a>'
            out.append(f"<p>Full log: {link}</p>")
    return "\n".join(out)


def _html_claim(claim: dict) -> str:
    """One claim as a list item with its mark and detail."""
    ok = bool(claim.get("ok"))
    mark = f'<span class="{"passed" if ok else "failed"}">{"✔" if ok else "✘"}</span>'
    detail = f" — {html.escape(str(claim['detail']))}" if claim.get("detail") else ""
    return f"<li>{mark} {html.escape(str(claim.get('text', '')))}{detail}</li>"
