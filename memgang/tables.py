"""Plain-text tables for the terminal: the one aligner every table memgang prints uses."""

from __future__ import annotations

from collections.abc import Collection, Sequence


def aligned(rows: Sequence[Sequence[str]], *, left: Collection[int] = (0,)) -> list[str]:
    """``rows`` (the first is usually the header) as lines: each column padded to its widest
    cell, columns two spaces apart, those in ``left`` (negative indexes count from the end)
    aligned left and the others right; no trailing spaces."""
    if not rows:
        return []
    n = len(rows[0])
    lefts = {i % n for i in left}
    widths = [max(len(row[i]) for row in rows) for i in range(n)]
    return ["  ".join(cell.ljust(w) if i in lefts else cell.rjust(w)
                      for i, (cell, w) in enumerate(zip(row, widths, strict=True))).rstrip()
            for row in rows]


__all__ = ["aligned"]
