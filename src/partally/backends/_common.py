"""Helpers shared by the backends: how to cut a range into pieces."""

from __future__ import annotations

from collections.abc import Iterator


def split_range(lo: int, hi: int, parts: int) -> list[tuple[int, int]]:
    """Cut [lo, hi) into at most ``parts`` contiguous, non-empty pieces of near-equal size."""
    size = hi - lo
    parts = max(1, min(parts, size))
    step, extra = divmod(size, parts)
    pieces = []
    start = lo
    for k in range(parts):
        end = start + step + (1 if k < extra else 0)
        pieces.append((start, end))
        start = end
    return [piece for piece in pieces if piece[0] < piece[1]]


def slices(lo: int, hi: int, step: int) -> Iterator[tuple[int, int]]:
    """[lo, hi) in consecutive slices of at most ``step`` elements (calls short enough that
    Python gets control back, and sees Ctrl-C, between them)."""
    for start in range(lo, hi, step):
        yield start, min(hi, start + step)
