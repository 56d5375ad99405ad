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
from itertools import islice
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from utilities.errors import ImageLoadError
from utilities.images.decoding import DEFAULT_IMAGE_SIZE, decode_for_model, stack_inputs


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


def default_workers(decoder: str = "thread") -> int:
    """Decoding workers for a decoder: at least 2, at most 16.

    Threads: one per core (they wait on Pillow, which releases the GIL). GPU: 2 threads
    (they read files and feed nvJPEG). Processes: a quarter of the cores (at least 2) are
    left to the process that runs the model.
    On a 16-core H100 machine, 16 worker processes starved it: decoding and
    embedding reached 0.82 of the model's own speed, against 0.94 with 12 or 8
    workers (`benchmarks/results/gpu-h100-jax-fp32-decoders.md`).
    """
    if decoder == "gpu":
        return 2
    cores = os.cpu_count() or 2
    if decoder == "process":
        cores -= max(2, cores // 4)
    return max(2, min(16, cores))


DECODERS = ("thread", "process", "gpu")
"""Ways to decode: CPU threads, CPU worker processes, or nvJPEG on a CUDA GPU (`images.gpu_decoder`)."""


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
    reuse_buffers: bool = False,
) -> Iterator[DecodedBatch]:
    """Yield decoded batches of `batch_size` files, decoding ahead in worker threads or processes.

    Memory is bounded by a few batches of decoded images, whatever the number of
    paths: `prefetch_batches + 1` batches (one more with `reuse_buffers`; with the GPU
    decoder `max(prefetch_batches, workers) + 1`). Each batch is split into one chunk
    per worker; worker processes write pixels into shared memory rather than sending
    them back.

    Args:
        paths: Image files, in the order wanted.
        batch_size: Files per batch (the last one may be smaller).
        image_size: Side of the square model input.
        workers: Decoding workers; `default_workers(decoder)` if None.
        prefetch_batches: Batches decoded ahead of the one being consumed.
        decoder: `"thread"`, `"process"` or `"gpu"` (nvJPEG; needs torchvision with
            CUDA, see `utilities.images.gpu_decoder`); `default_decoder()` if None.
        reuse_buffers: With the process decoder, hand out each batch's images as a view of
            the shared buffer the workers wrote (no copy) instead of a copy. Faster, but a
            batch's `images` are then only valid until the next batch is asked for.

    Yields:
        `DecodedBatch` objects; failed files are listed in their batch's `failures`.

    Example:
        >>> for batch in iter_decoded_batches(find_images("photos")):  # doctest: +SKIP
        ...     vectors = embedder.embed_batch(batch.images)
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    kind = decoder or default_decoder()
    if kind not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {kind!r}")
    count = workers or default_workers(kind)
    if kind == "gpu":
        yield from _iter_gpu_batches(paths, batch_size, image_size, count, prefetch_batches)
        return
    batcher: _PoolBatcher
    if kind == "process":
        batcher = _SharedMemoryBatcher(paths, batch_size, image_size, count, prefetch_batches, reuse_buffers)
    else:
        batcher = _ThreadBatcher(paths, batch_size, image_size, count, prefetch_batches)
    yield from batcher


@dataclass
class _BatchInFlight:
    """One batch being decoded: its chunks (files and the future of their results) and its slot."""

    chunks: list[tuple[list[Path], Future]]
    slot: int = 0


class _PoolBatcher:
    """Decodes batches ahead in a pool of workers, `prefetch_batches` ahead of the one handed out.

    Each batch is split into one chunk per worker; subclasses say how a chunk is decoded
    (`_submit_chunk`) and how a batch's results are gathered (`_gather`).
    """

    def __init__(
        self, paths: Iterable[str | os.PathLike], batch_size: int, image_size: int, workers: int, prefetch: int
    ) -> None:
        self.source = iter(Path(p) for p in paths)
        self.batch_size = batch_size
        self.image_size = image_size
        self.workers = workers
        self.prefetch = prefetch
        self.chunk = max(1, -(-batch_size // workers))
        self.submitted = 0
        self.in_flight: deque[_BatchInFlight] = deque()

    def _executor(self) -> Executor:
        raise NotImplementedError

    def _submit_chunk(self, pool: Executor, files: list[Path], slot: int, row: int) -> Future:
        raise NotImplementedError

    def _gather(self, batch: _BatchInFlight) -> DecodedBatch:
        raise NotImplementedError

    def _slot_of(self, number: int) -> int:
        return 0

    def _submit_next(self, pool: Executor) -> None:
        files = list(islice(self.source, self.batch_size))
        if not files:
            return
        slot = self._slot_of(self.submitted)
        chunks = [
            (
                files[start : start + self.chunk],
                self._submit_chunk(pool, files[start : start + self.chunk], slot, start),
            )
            for start in range(0, len(files), self.chunk)
        ]
        self.in_flight.append(_BatchInFlight(chunks, slot))
        self.submitted += 1

    def __iter__(self) -> Iterator[DecodedBatch]:
        with self._executor() as pool:
            for _ in range(self.prefetch + 1):
                self._submit_next(pool)
            while self.in_flight:
                batch = self._gather(self.in_flight.popleft())
                self._submit_next(pool)  # before handing this one out: decoding goes on meanwhile
                yield batch


class _ThreadBatcher(_PoolBatcher):
    """Worker threads decode into arrays of their own; a batch's arrays are stacked."""

    def _executor(self) -> Executor:
        return ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="decode")

    def _submit_chunk(self, pool: Executor, files: list[Path], slot: int, row: int) -> Future:
        return pool.submit(_decode_chunk, files, self.image_size)

    def _gather(self, batch: _BatchInFlight) -> DecodedBatch:
        return _collect(batch.chunks, self.image_size)


class _SharedMemoryBatcher(_PoolBatcher):
    """Worker processes decode straight into shared-memory slots, one slot per batch in flight."""

    def __init__(
        self,
        paths: Iterable[str | os.PathLike],
        batch_size: int,
        image_size: int,
        workers: int,
        prefetch: int,
        share: bool,
    ) -> None:
        super().__init__(paths, batch_size, image_size, workers, prefetch)
        self.share = share
        # A view handed out must survive until the next batch is asked for: one more slot than in flight.
        self.slot_count = prefetch + 1 + int(share)

    def _executor(self) -> Executor:
        # spawn: never fork a process that runs TensorFlow/JAX threads
        return ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("spawn"))

    def _slot_of(self, number: int) -> int:
        return number % self.slot_count

    def _submit_chunk(self, pool: Executor, files: list[Path], slot: int, row: int) -> Future:
        return pool.submit(_decode_into, self.slots.memory.name, self.slots.shape, slot, row, files, self.image_size)

    def _gather(self, batch: _BatchInFlight) -> DecodedBatch:
        return _collect(batch.chunks, self.image_size, self.slots.array[batch.slot], share=self.share)

    def __iter__(self) -> Iterator[DecodedBatch]:
        self.slots = _Slots(self.slot_count, self.batch_size, self.image_size)
        try:
            yield from super().__iter__()
        finally:
            self.slots.close()


def _collect(
    parts: list[tuple[list[Path], Future]], image_size: int, slot_view: np.ndarray | None = None, share: bool = False
) -> DecodedBatch:
    """Gather a batch's results; images in a shared slot are copied out unless `share` (and none failed)."""
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
    if slot_view is not None and share and len(rows) == row:
        images = slot_view[:row]  # every file decoded: the slot's first rows, as they are
    elif slot_view is not None:
        images = slot_view[rows]  # a copy; (0, size, size, 3) when every file failed
    else:
        images = stack_inputs(arrays, image_size)
    return DecodedBatch(paths=good_paths, images=images, failures=failures)


def _iter_gpu_batches(
    paths: Iterable[str | os.PathLike], batch_size: int, image_size: int, workers: int, prefetch_batches: int
) -> Iterator[DecodedBatch]:
    """`iter_decoded_batches` with nvJPEG: worker threads read and decode whole batches on the GPU."""
    from utilities.images.gpu_decoder import GpuJpegDecoder

    gpu = GpuJpegDecoder(image_size)
    source = iter(Path(p) for p in paths)

    def decode(batch: list[Path]) -> DecodedBatch:
        kept, images, failures = gpu.decode(batch)
        return DecodedBatch(
            paths=[batch[i] for i in kept],
            images=images,
            failures=[LoadFailure(path=os.fspath(path), reason=reason) for path, reason in failures],
        )

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpu-decode") as pool:
        pending: deque[Future] = deque()

        def submit() -> None:
            batch = list(islice(source, batch_size))
            if batch:
                pending.append(pool.submit(decode, batch))

        for _ in range(max(prefetch_batches, workers) + 1):
            submit()
        while pending:
            batch = pending.popleft().result()
            submit()
            yield batch
