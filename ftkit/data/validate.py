"""Validation before training (paper §3.1.2): every bad row is counted, then raised or skipped.

Each check returns the row indices it rejects, so the report always carries the count of
affected rows, the column and what is allowed. ``validate(..., on_bad="raise")`` stops at the
first failing check with a :class:`DataValidationError`; ``on_bad="skip"`` drops the rows and
returns the report. Checks run in order and a row is charged to the first check it fails:

missing columns (always raises) -> wrong types -> empty text -> non-UTF-8 bytes -> labels
outside the label set -> longer than the model's limit in tokens (with the real tokenizer).

Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import datasets
import pandas as pd

from ftkit.core.config import ConfigError
from ftkit.data.formatting import paper_template
from ftkit.data.load import ISSUE

REPLACEMENT = "\ufffd"  # what undecodable bytes become when read with errors="replace"


class DataValidationError(ConfigError):
    """Input data break a rule; the message names the column, the row count and the rule."""


@dataclass(frozen=True)
class Schema:
    """What a training record must look like."""
    text_columns: tuple[str, ...] = ("instruction", "response")
    label_column: str | None = "category"
    labels: tuple[str, ...] = ()
    id_column: str | None = "id"

    @property
    def required(self) -> list[str]:
        cols = [self.id_column, *self.text_columns, self.label_column]
        return [c for c in cols if c]


def require_columns(ds: datasets.Dataset, schema: Schema) -> None:
    """Raise when a required column is absent or entirely null."""
    missing = [c for c in schema.required if c not in ds.column_names]
    if missing:
        raise DataValidationError(f"missing column(s) {missing} in all {len(ds)} rows; the data "
                                  f"has {ds.column_names}; required: {schema.required}")
    for col in schema.text_columns:
        dtype = getattr(ds.features[col], "dtype", type(ds.features[col]).__name__)
        if dtype not in ("string", "large_string"):
            raise DataValidationError(f"column {col!r} has type {dtype} in all {len(ds)} rows; "
                                      "expected text (string)")


def check_types(ds: datasets.Dataset, schema: Schema) -> list[int]:
    """Rows whose reader replaced a non-string value (see ftkit.data.load)."""
    if ISSUE not in ds.column_names:
        return []
    return [i for i, note in enumerate(ds[ISSUE]) if note]


def check_empty(ds: datasets.Dataset, schema: Schema) -> list[int]:
    """Rows with a null, empty or whitespace-only text field."""
    cols = [ds[c] for c in schema.text_columns]
    return [i for i, values in enumerate(zip(*cols))
            if any(v is None or not v.strip() for v in values)]


def check_utf8(ds: datasets.Dataset, schema: Schema) -> list[int]:
    """Rows that held bytes that are not UTF-8 (decoded as U+FFFD by the reader)."""
    cols = [ds[c] for c in schema.text_columns]
    return [i for i, values in enumerate(zip(*cols)) if any(REPLACEMENT in (v or "") for v in values)]


def check_labels(ds: datasets.Dataset, schema: Schema) -> list[int]:
    """Rows whose label is not in ``schema.labels`` (skipped when no label set is given)."""
    if not schema.label_column or not schema.labels:
        return []
    allowed = set(schema.labels)
    return [i for i, v in enumerate(ds[schema.label_column]) if v not in allowed]


def token_counts(tokenizer, ds: datasets.Dataset, schema: Schema,
                 text_fn: Callable[[str, str], str] = paper_template) -> list[int]:
    """Tokens per row of the formatted training text (0 for rows that cannot be formatted)."""
    a, b = schema.text_columns[:2]
    texts = [text_fn(x, y) if isinstance(x, str) and isinstance(y, str) else ""
             for x, y in zip(ds[a], ds[b])]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=True)["input_ids"]]


CHECKS: dict[str, tuple[Callable, str]] = {
    "wrong type": (check_types, "text values must be strings"),
    "empty text": (check_empty, "non-empty text in every text column"),
    "non-UTF-8 bytes": (check_utf8, "text must decode as UTF-8"),
    "label not in set": (check_labels, "one of the schema's labels"),
}


def _entry(name: str, rows: list[int], ds: datasets.Dataset, schema: Schema, allowed: str,
           column: str) -> dict:
    ids = ds[schema.id_column] if schema.id_column else list(range(len(ds)))
    return {"check": name, "column": column, "rows": len(rows), "allowed": allowed,
            "example_ids": [ids[i] for i in rows[:3]]}


def _fail(entry: dict, total: int) -> None:
    raise DataValidationError(f"{entry['check']}: {entry['rows']} of {total} rows in column(s) "
                              f"{entry['column']} (e.g. ids {entry['example_ids']}); allowed: "
                              f"{entry['allowed']}. Fix the data or pass on_bad='skip'.")


def validate(ds: datasets.Dataset, schema: Schema, tokenizer=None, max_tokens: int | None = None,
             on_bad: str = "skip") -> tuple[datasets.Dataset, pd.DataFrame]:
    """Run every check; return the valid rows and a report (check, column, rows, allowed, ids).

    Args:
        tokenizer, max_tokens: when both are given, rows whose formatted text is longer than
            ``max_tokens`` tokens are rejected (counted with the model's own tokenizer).
        on_bad: "raise" stops at the first check with affected rows; "skip" drops them.
    """
    require_columns(ds, schema)
    rejected: set[int] = set()
    report = []
    checks = dict(CHECKS)
    if tokenizer is not None and max_tokens:
        over = lambda d, s: [i for i, n in enumerate(token_counts(tokenizer, d, s)) if n > max_tokens]
        checks["too many tokens"] = (over, f"<= {max_tokens} tokens (model limit)")
    for name, (check, allowed) in checks.items():
        rows = [i for i in check(ds, schema) if i not in rejected]
        column = schema.label_column if name == "label not in set" else ", ".join(schema.text_columns)
        entry = _entry(name, rows, ds, schema, allowed, column)
        if rows and on_bad == "raise":
            _fail(entry, len(ds))
        report.append(entry)
        rejected.update(rows)
    keep = [i for i in range(len(ds)) if i not in rejected]
    out = ds.select(keep)
    if ISSUE in out.column_names:
        out = out.remove_columns(ISSUE)
    return out, pd.DataFrame(report)
