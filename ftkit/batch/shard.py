"""Shares of a batch: ``ftkit run --shard i/n`` runs the i-th of n disjoint shares, so n
machines or scheduler jobs cover the notebooks; ``ftkit merge`` joins their runs."""
from __future__ import annotations

from pathlib import Path


def parse_shard(shard: str) -> tuple[int, int]:
    """``"i/n"`` → ``(i, n)`` with 1 ≤ i ≤ n; anything else is refused with the form."""
    try:
        i, n = (int(part) for part in shard.split("/"))
    except (ValueError, AttributeError):
        raise ValueError(f"shard {shard!r}: give it as i/n, e.g. 2/3 (the second of three)") \
            from None
    if not 1 <= i <= n:
        raise ValueError(f"shard {shard!r}: i must lie in 1..n")
    return i, n


def select_shard(notebooks: list[Path], shard: str | None) -> list[Path]:
    """The i-th of n shares of ``notebooks`` (every n-th, from the i-th, in name order), so
    the shares are disjoint, cover all, and mix long and short notebooks; None: all."""
    if shard is None:
        return list(notebooks)
    i, n = parse_shard(shard)
    chosen = list(notebooks)[i - 1::n]
    if not chosen:
        raise ValueError(f"shard {shard}: no notebook falls in it ({len(notebooks)} selected)")
    return chosen
