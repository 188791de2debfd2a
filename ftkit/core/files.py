"""Files several processes may build at once: an exclusive lock per cache entry.

``ftkit run --jobs N`` runs notebooks side by side, and two of them may ask for the same
cached build (the running example's assistant, its exports, an offline model pack). Each
builder takes :func:`exclusive` on the entry, checks again whether it exists, and builds only
when it does not: the second notebook waits and then reuses the first one's result.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no advisory locks here; one job at a time stays safe
    fcntl = None


@contextmanager
def exclusive(path: str | os.PathLike):
    """Hold an exclusive lock on ``path`` (a lock file ``.<name>.lock`` beside it) while the
    block runs; other processes and threads asking for it wait."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{path.name}.lock"), "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
