"""Decode image files in parallel, in batches, ahead of the model.

Worker threads decode the next batches while the caller runs the model on the
current one (Pillow releases the GIL while decoding and resizing). A file that
fails to decode becomes a `LoadFailure` in its batch; the others go on.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utilities.errors import ImageLoadError
from utilities.images import DEFAULT_IMAGE_SIZE, decode_for_model, stack_inputs


@dataclass(frozen=True)
class LoadFailure:
    """A file that could not be used, and why.

    Attributes:
        path: The file.
        reason: What went wrong, in words a user can act on.
    """

    path: str
    reason: str


@dataclass
class DecodedBatch:
    """Images decoded together, aligned with their paths.

    Attributes:
        paths: Files whose images are in `images`, in the same order.
        images: `(len(paths), size, size, 3)` uint8 array.
        failures: Files of this batch that could not be decoded.
    """

    paths: list[Path]
    images: np.ndarray
    failures: list[LoadFailure] = field(default_factory=list)


def default_workers() -> int:
    """Decoding threads: one per CPU core, at least 2, at most 16."""
    return max(2, min(16, os.cpu_count() or 2))


def _decode(path: Path, size: int) -> np.ndarray | LoadFailure:
    try:
        return decode_for_model(path, size)
    except ImageLoadError as error:
        return LoadFailure(path=os.fspath(path), reason=error.reason)


def iter_decoded_batches(
    paths: Iterable[str | os.PathLike],
    batch_size: int = 32,
    image_size: int = DEFAULT_IMAGE_SIZE,
    workers: int | None = None,
    prefetch_batches: int = 2,
) -> Iterator[DecodedBatch]:
    """Yield decoded batches of `batch_size` files, decoding ahead in threads.

    Memory is bounded by `batch_size * (prefetch_batches + 1)` decoded images,
    whatever the number of paths.

    Args:
        paths: Image files, in the order wanted.
        batch_size: Files per batch (the last one may be smaller).
        image_size: Side of the square model input.
        workers: Decoding threads; `default_workers()` if None.
        prefetch_batches: Batches decoded ahead of the one being consumed.

    Yields:
        `DecodedBatch` objects; failed files are listed in their batch's `failures`.

    Example:
        >>> for batch in iter_decoded_batches(find_images("photos")):  # doctest: +SKIP
        ...     vectors = embedder.embed_batch(batch.images)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    source = iter(Path(p) for p in paths)
    window = batch_size * (prefetch_batches + 1)
    with ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix="decode") as pool:
        pending: deque[tuple[Path, Future]] = deque()

        def fill() -> None:
            while len(pending) < window:
                path = next(source, None)
                if path is None:
                    return
                pending.append((path, pool.submit(_decode, path, image_size)))

        fill()
        while pending:
            chunk = [pending.popleft() for _ in range(min(batch_size, len(pending)))]
            fill()
            yield _collect(chunk, image_size)


def _collect(chunk: list[tuple[Path, Future]], image_size: int) -> DecodedBatch:
    good_paths: list[Path] = []
    arrays: list[np.ndarray] = []
    failures: list[LoadFailure] = []
    for path, future in chunk:
        result = future.result()
        if isinstance(result, LoadFailure):
            failures.append(result)
        else:
            good_paths.append(path)
            arrays.append(result)
    images = stack_inputs(arrays) if arrays else np.zeros((0, image_size, image_size, 3), np.uint8)
    return DecodedBatch(paths=good_paths, images=images, failures=failures)
