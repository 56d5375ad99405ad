"""Decode image files in parallel, in batches, ahead of the model.

Worker threads decode the next batches while the caller runs the model on the
current one (Pillow releases the GIL while decoding and resizing). A file that
fails to decode becomes a `LoadFailure` in its batch; the others go on.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import shared_memory
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
    """Decoding workers: one per CPU core, at least 2, at most 16."""
    return max(2, min(16, os.cpu_count() or 2))


def default_decoder() -> str:
    """`"process"` on machines with 8 or more cores (where decoding limits a GPU), else `"thread"`.

    Pillow releases the GIL for much of decoding, but not all of it: on a 16-core GPU
    machine, 16 threads decoded about 1,100 ~500x375 JPEGs/s against about 2,900 for
    16 processes. With 2 cores the model is the limit and threads cost less.
    """
    return "process" if (os.cpu_count() or 1) >= 8 else "thread"


def _decode(path: Path, size: int) -> np.ndarray | LoadFailure:
    try:
        return decode_for_model(path, size)
    except ImageLoadError as error:
        return LoadFailure(path=os.fspath(path), reason=error.reason)


def _decode_chunk(paths: list[Path], size: int) -> list[np.ndarray | LoadFailure]:
    return [_decode(path, size) for path in paths]


def _decode_into(
    memory_name: str, shape: tuple[int, ...], slot: int, row: int, paths: list[Path], size: int
) -> list[LoadFailure | None]:
    """Decode in a worker process straight into a shared-memory slot; return only the failures.

    Sending pixels back through a pipe (pickled arrays) limited 16 workers to ~3,700
    images/s on a GPU machine; writing them into shared memory avoids that copy.
    """
    memory = shared_memory.SharedMemory(name=memory_name)
    try:
        view = np.ndarray(shape, dtype=np.uint8, buffer=memory.buf)
        results: list[LoadFailure | None] = []
        for offset, path in enumerate(paths):
            decoded = _decode(path, size)
            if isinstance(decoded, LoadFailure):
                results.append(decoded)
            else:
                view[slot, row + offset] = decoded
                results.append(None)
        del view
        return results
    finally:
        memory.close()


def _executor(decoder: str, workers: int) -> Executor:
    if decoder == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
    if decoder == "process":
        # spawn: never fork a process that runs TensorFlow/JAX threads
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    raise ValueError(f"decoder must be 'thread' or 'process', got {decoder!r}")


class _Slots:
    """Shared-memory buffers, one per batch in flight, that worker processes decode into."""

    def __init__(self, slots: int, batch_size: int, image_size: int) -> None:
        self.shape = (slots, batch_size, image_size, image_size, 3)
        self.memory = shared_memory.SharedMemory(create=True, size=int(np.prod(self.shape)))
        self.array = np.ndarray(self.shape, dtype=np.uint8, buffer=self.memory.buf)

    def close(self) -> None:
        del self.array
        self.memory.close()
        self.memory.unlink()


def iter_decoded_batches(
    paths: Iterable[str | os.PathLike],
    batch_size: int = 32,
    image_size: int = DEFAULT_IMAGE_SIZE,
    workers: int | None = None,
    prefetch_batches: int = 2,
    decoder: str | None = None,
) -> Iterator[DecodedBatch]:
    """Yield decoded batches of `batch_size` files, decoding ahead in worker threads or processes.

    Memory is bounded by `batch_size * (prefetch_batches + 1)` decoded images,
    whatever the number of paths. Each batch is split into one chunk per worker;
    worker processes write pixels into shared memory rather than sending them back.

    Args:
        paths: Image files, in the order wanted.
        batch_size: Files per batch (the last one may be smaller).
        image_size: Side of the square model input.
        workers: Decoding workers; `default_workers()` if None.
        prefetch_batches: Batches decoded ahead of the one being consumed.
        decoder: `"thread"` or `"process"`; `default_decoder()` if None.

    Yields:
        `DecodedBatch` objects; failed files are listed in their batch's `failures`.

    Example:
        >>> for batch in iter_decoded_batches(find_images("photos")):  # doctest: +SKIP
        ...     vectors = embedder.embed_batch(batch.images)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    kind = decoder or default_decoder()
    count = workers or default_workers()
    chunk = max(1, -(-batch_size // count))
    source = iter(Path(p) for p in paths)
    slots = _Slots(prefetch_batches + 1, batch_size, image_size) if kind == "process" else None
    try:
        with _executor(kind, count) as pool:
            pending: deque[tuple[list[Path], Future]] = deque()
            submitted = 0

            def submit_batch() -> int:
                nonlocal submitted
                batch = [path for _, path in zip(range(batch_size), source, strict=False)]
                slot = submitted % (prefetch_batches + 1)
                for start in range(0, len(batch), chunk):
                    part = batch[start : start + chunk]
                    if slots is None:
                        future = pool.submit(_decode_chunk, part, image_size)
                    else:
                        future = pool.submit(
                            _decode_into, slots.memory.name, slots.shape, slot, start, part, image_size
                        )
                    pending.append((part, future))
                submitted += bool(batch)
                return len(batch)

            sizes = deque(size for size in (submit_batch() for _ in range(prefetch_batches + 1)) if size)
            consumed = 0
            while sizes:
                size = sizes.popleft()
                parts = []
                while size > sum(len(part) for part, _ in parts):
                    parts.append(pending.popleft())
                slot_view = None if slots is None else slots.array[consumed % (prefetch_batches + 1)]
                batch = _collect(parts, image_size, slot_view)  # copies out of the slot before it is reused
                consumed += 1
                next_size = submit_batch()
                if next_size:
                    sizes.append(next_size)
                yield batch
    finally:
        if slots is not None:
            slots.close()


def _collect(
    parts: list[tuple[list[Path], Future]], image_size: int, slot_view: np.ndarray | None = None
) -> DecodedBatch:
    good_paths: list[Path] = []
    arrays: list[np.ndarray] = []
    rows: list[int] = []
    failures: list[LoadFailure] = []
    row = 0
    for part, future in parts:
        for path, result in zip(part, future.result(), strict=True):
            if isinstance(result, LoadFailure):
                failures.append(result)
            else:
                good_paths.append(path)
                rows.append(row)
                if slot_view is None:
                    arrays.append(result)
            row += 1
    if slot_view is not None:
        images = slot_view[rows] if rows else np.zeros((0, image_size, image_size, 3), np.uint8)
    else:
        images = stack_inputs(arrays) if arrays else np.zeros((0, image_size, image_size, 3), np.uint8)
    return DecodedBatch(paths=good_paths, images=images, failures=failures)
