"""A model card written from an evaluation's own numbers (paper §7: report what was measured).

:func:`model_card` renders markdown sections (data, training, every score with its interval,
known limits) and :func:`write_card` saves it beside the adapter as ``model_card.md``,
written to a temporary file first and renamed when complete.
Used in notebooks/13_evaluation_and_safety.ipynb.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd


def _table(frame: pd.DataFrame, digits: int = 3) -> str:
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = [f"{v:.{digits}f}" if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ci(value: float, low: float, high: float, digits: int = 3) -> str:
    return f"{value:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def scores_table(perplexity: pd.DataFrame, headline: pd.DataFrame, calibration: pd.DataFrame,
                 refusals: pd.DataFrame) -> pd.DataFrame:
    """Every score of notebook 13 as ``value (low-high)`` text, one row per measure, one
    column per model: perplexity per set, the harness's headline per task (± 1.96 stderr),
    the calibration error over all multiple-choice questions, refusal rates per group."""
    rows: dict[str, dict[str, str]] = {}
    for (name, model), r in perplexity.iterrows():
        rows.setdefault(f"perplexity, {name}", {})[model] = _ci(r.perplexity, r.ppl_low,
                                                                r.ppl_high, 2)
    for r in headline.itertuples():
        rows.setdefault(f"{r.task} ({r.metric})", {})[r.model] = \
            f"{r.value:.3f} ± {1.96 * r.stderr:.3f}"
    for (model, task), r in calibration.iterrows():
        if task == "all":
            rows.setdefault("calibration error (ECE)", {})[model] = _ci(r.ece, r.ece_low, r.ece_high)
    for (model, group), r in refusals.iterrows():
        rows.setdefault(f"refusal rate, {group}", {})[model] = _ci(r.rate, r.low, r.high)
    return pd.DataFrame(rows).T.fillna("").rename_axis("measure")


def model_card(title: str, summary: str, sections: dict[str, str | pd.DataFrame | list[str]],
               limits: list[str]) -> str:
    """Markdown: the title, a summary paragraph, one section per entry (text, a table or a
    list of bullet points) and the known limits."""
    parts = [f"# {title}", "", summary.strip(), ""]
    for name, body in sections.items():
        parts += [f"## {name}", ""]
        if isinstance(body, pd.DataFrame):
            parts.append(_table(body))
        elif isinstance(body, list):
            parts += [f"- {line}" for line in body]
        else:
            parts.append(str(body).strip())
        parts.append("")
    parts += ["## Known limits", ""] + [f"- {line}" for line in limits] + [""]
    return "\n".join(parts)


def write_card(text: str, folder: str | os.PathLike, name: str = "model_card.md") -> Path:
    """Save ``text`` as ``folder/name`` (temporary file, then an atomic rename)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{name}-", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, folder / name)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / name
