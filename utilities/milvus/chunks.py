"""Splitting a request into chunks that respect a count and a byte budget."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

T = TypeVar("T")


def chunked(
    items: Sequence[T],
    max_count: int | None = None,
    max_bytes: int | None = None,
    size_of: Callable[[T], int] | None = None,
) -> Iterator[Sequence[T]]:
    """Consecutive slices of `items`, each at most `max_count` long (when given) and, when `max_bytes`
    is given, at most `max_bytes` by `size_of` (a single item larger than that still gets a chunk of its own).

    Example:
        >>> [list(c) for c in chunked([1, 2, 3, 4, 5], 2)]
        [[1, 2], [3, 4], [5]]
        >>> [list(c) for c in chunked(["aaaa", "b", "cc", "dddddd"], max_bytes=5, size_of=len)]
        [['aaaa', 'b'], ['cc'], ['dddddd']]
    """
    if max_count is not None and max_count < 1:
        raise ValueError(f"max_count must be at least 1, got {max_count}")
    start, total = 0, 0
    for index, item in enumerate(items):
        size = size_of(item) if (max_bytes is not None and size_of is not None) else 0
        full = (max_count is not None and index - start >= max_count) or (
            max_bytes is not None and total + size > max_bytes
        )
        if index > start and full:
            yield items[start:index]
            start, total = index, 0
        total += size
    if start < len(items):
        yield items[start:]
