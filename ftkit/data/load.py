"""Data collection (paper §3.1.1): CSV, JSONL, Parquet, SQL and `datasets` into one Dataset.

Every reader returns a ``datasets.Dataset`` whose text columns are strings (or null). Two
problems are caught here, where they are cheap to explain, instead of deep inside Arrow or the
tokenizer:

- bytes that are not UTF-8 (a legacy CSV export): ``on_bad="raise"`` names the lines;
  ``"replace"`` decodes them as U+FFFD so that :mod:`ftkit.data.validate` reports the rows;
- a value of the wrong type in a text column (a number where SQLite or JSON allows anything):
  Arrow cannot hold mixed types, so the value becomes null and the ``_issue`` column says what
  it was; validation then counts and skips those rows.

:func:`collect` concatenates several sources and adds a ``source`` column.
Used in notebooks/01_data_preparation.ipynb.
"""
from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path
from typing import Callable

import datasets
import pandas as pd

from ftkit.core.config import ConfigError
from ftkit.models import hub_reachable

ISSUE = "_issue"  # per-row note of what the reader had to change; null when nothing


class DataLoadError(ConfigError):
    """A source cannot be read as asked; the message says where and what to do."""


def _bad_utf8_lines(raw: bytes) -> list[int]:
    """1-based numbers of the lines that are not valid UTF-8."""
    bad = []
    for i, line in enumerate(raw.split(b"\n"), start=1):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            bad.append(i)
    return bad


def _decode(path: Path, on_bad: str) -> str:
    raw = path.read_bytes()
    bad = _bad_utf8_lines(raw)
    if bad and on_bad == "raise":
        raise DataLoadError(f"{path.name}: {len(bad)} line(s) are not valid UTF-8 (lines "
                            f"{bad[:10]}); re-export the file as UTF-8, or pass "
                            "on_bad='replace' to read them with U+FFFD and let validation "
                            "report the rows")
    return raw.decode("utf-8", errors="replace")


def _flag_wrong_types(df: pd.DataFrame) -> pd.DataFrame:
    """Null out non-string values in text columns; note them in the ``_issue`` column."""
    df = df.astype(object).where(df.notna(), None)
    issues = [None] * len(df)
    for col in df.columns:
        values = df[col].tolist()
        if not any(isinstance(v, str) for v in values):
            continue
        for i, v in enumerate(values):
            if v is not None and not isinstance(v, str):
                issues[i] = f"{col}: {type(v).__name__} {v!r} (expected str)"
                df.at[df.index[i], col] = None
    df[ISSUE] = issues
    return df


def to_dataset(df: pd.DataFrame) -> datasets.Dataset:
    """A Dataset with every column stored as a (nullable) string, plus ``_issue``."""
    df = _flag_wrong_types(df.reset_index(drop=True))
    features = datasets.Features({c: datasets.Value("string") for c in df.columns})
    return datasets.Dataset.from_pandas(df, features=features, preserve_index=False)


def load_csv(path: str | Path, on_bad: str = "raise") -> datasets.Dataset:
    """Read a CSV file; every column as text (no type guessing that turns ids into numbers)."""
    text = _decode(Path(path), on_bad)
    return to_dataset(pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False))


def load_jsonl(path: str | Path, on_bad: str = "raise") -> datasets.Dataset:
    """Read one JSON object per line; a malformed line raises with its line number."""
    rows = []
    for i, line in enumerate(_decode(Path(path), on_bad).splitlines(), start=1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataLoadError(f"{Path(path).name} line {i} is not JSON: {exc}") from None
    return to_dataset(pd.DataFrame(rows))


def load_parquet(path: str | Path, on_bad: str = "raise") -> datasets.Dataset:
    """Read a Parquet file (typed columns; ``on_bad`` is accepted for a uniform signature)."""
    return to_dataset(pd.read_parquet(path))


def load_sql(query: str, database: str | Path) -> datasets.Dataset:
    """Run ``query`` on a database: a SQLite file path (standard library) or a SQLAlchemy URL.

    A URL such as ``postgresql://user@host/db`` needs SQLAlchemy and the database's driver.
    """
    if "://" in str(database):
        try:
            import sqlalchemy
        except ImportError:
            raise DataLoadError("a database URL needs SQLAlchemy: pip install sqlalchemy") from None
        engine = sqlalchemy.create_engine(str(database))
        with engine.connect() as con:
            return to_dataset(pd.read_sql_query(sqlalchemy.text(query), con))
    if not Path(database).exists():
        raise DataLoadError(f"no SQLite database at {database}")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as con:
        cursor = con.execute(query)
        columns = [d[0] for d in cursor.description]
        return to_dataset(pd.DataFrame(cursor.fetchall(), columns=columns, dtype=object))


def load_hf(name: str, split: str = "train", **kwargs) -> datasets.Dataset:
    """Load with ``datasets.load_dataset``: a builder on local files, a saved folder, a hub id.

    Offline, a hub id fails at once with advice instead of a long retry.
    """
    if Path(name).is_dir() and (Path(name) / "dataset_info.json").exists():
        return datasets.load_from_disk(name)
    local = name in {"csv", "json", "parquet", "text"} or Path(name).exists()
    if not local:

        if not hub_reachable():
            raise DataLoadError(f"{name!r} looks like a hub id, but the Hugging Face hub is not "
                                "reachable (offline). Load local files instead, e.g. "
                                "load_hf('json', data_files='data.jsonl'), or a folder saved "
                                "with Dataset.save_to_disk")
    return datasets.load_dataset(name, split=split, **kwargs)


READERS: dict[str, Callable[..., datasets.Dataset]] = {
    ".csv": load_csv, ".jsonl": load_jsonl, ".json": load_jsonl, ".parquet": load_parquet}


def load_file(path: str | Path, on_bad: str = "raise") -> datasets.Dataset:
    """Pick the reader from the file suffix (``.sqlite``/``.db`` need a query: use load_sql)."""
    suffix = Path(path).suffix.lower()
    if suffix not in READERS:
        raise DataLoadError(f"no reader for {suffix!r} files ({path}); known: {sorted(READERS)}"
                            "; for a database call load_sql(query, path)")
    return READERS[suffix](path, on_bad=on_bad)


def collect(sources: dict[str, datasets.Dataset]) -> datasets.Dataset:
    """Concatenate datasets that share columns, adding a ``source`` column with each name.

    Columns missing from one source are added as nulls, so the schema mismatch shows up in
    validation with row counts instead of as an Arrow error here.
    """
    columns = list(dict.fromkeys(c for ds in sources.values() for c in ds.column_names))
    parts = []
    for name, ds in sources.items():
        for col in columns:
            if col not in ds.column_names:
                ds = ds.add_column(col, [None] * len(ds)).cast_column(col, datasets.Value("string"))
        ds = ds.select_columns(columns).add_column("source", [name] * len(ds))
        strings = datasets.Features({c: datasets.Value("string") for c in ds.column_names})
        parts.append(ds if ds.features == strings else ds.cast(strings))
    return datasets.concatenate_datasets(parts)
