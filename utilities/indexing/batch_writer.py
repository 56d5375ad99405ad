"""Writing embedded images to Milvus from background threads, in requests of the backend's size.

Embedded rows wait until they fill one request of the backend's byte budget (8 MB on a server,
about 1,000 rows of 2048-d) or until `WRITE_DELAY_SECONDS` have passed since the last write was
handed over, whichever comes first. With a model of a few batches a second (a CPU) each batch is
written at once; with a fast one (a GPU, or the near-free embedder of `benchmarks/scale.py`)
requests are full, and the server's cost per request is paid once per ~1,000 rows. Measured on
the Milvus 2.3.5 server of this project's 2-core machine (plain `upsert` of 2048-d rows, median
of 6 rounds): 579 µs a row in requests of 32 rows (the CLI's batch), 376 in requests of 256,
319 in requests of 1,000.

Up to `WRITES_IN_FLIGHT` requests are written at a time: pymilvus packs one request into protobuf
in Python (about 100 µs a 2048-d row, holding the GIL) while the server stores others, so the
two overlap. On a GPU machine (H200, 16 cores, Keras on JAX, Milvus Lite, 16,384 photos of
375-500 px) inserting alone went from 2,624 rows/s with one write at a time to 4,182 with two
and 7,288 with four, and `index_paths` from 0.48 to 0.80 and 0.87 of embedding alone
(benchmarks/results/gpu-h200-indexing-run1.md).

An interrupted run loses at most the rows waiting and those in flight, a few seconds of work;
a re-run embeds them again (writes are upserts keyed by id: never a second row).
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import ROW_OVERHEAD_BYTES
from utilities.records import ImageRecord

WRITES_IN_FLIGHT = 4
"""Requests written at a time: some packed by pymilvus while the backend stores the others."""

WRITE_DELAY_SECONDS = 1.0
"""The longest embedded rows wait for a fuller request (measured from the last write handed over)."""


class BatchWriter:
    """Upserts embedded rows from writer threads, in requests of the backend's byte budget.

    Memory stays bounded: at most one request's worth of rows waits, and `add` blocks while
    `in_flight` requests are being written.

    Args:
        store: The collection.
        make_record: Builds a file's record from its path and vector (in a writer thread,
            so that hashing a file there overlaps with the model).
        in_flight: Requests written at a time (`WRITES_IN_FLIGHT` by default).
        max_delay_seconds: Rows wait at most this long (since the last write) for a fuller request
            (`WRITE_DELAY_SECONDS` by default; 0 writes every batch at once).
        max_request_bytes: Byte budget of one request; by default the backend's
            (`CollectionRows.max_request_bytes`).

    Example:
        >>> with BatchWriter(store, plan.record) as writer:  # doctest: +SKIP
        ...     writer.add(paths, vectors)
    """

    def __init__(
        self,
        store: ImageCollection,
        make_record: Callable[[str, np.ndarray], ImageRecord],
        in_flight: int | None = None,
        max_delay_seconds: float | None = None,
        max_request_bytes: int | None = None,
    ) -> None:
        in_flight = WRITES_IN_FLIGHT if in_flight is None else in_flight
        if in_flight < 1:
            raise ValueError(f"in_flight must be at least 1, got {in_flight}")
        self.store = store
        self.make_record = make_record
        self.in_flight = in_flight
        self.max_delay_seconds = WRITE_DELAY_SECONDS if max_delay_seconds is None else max_delay_seconds
        self.max_request_bytes = max_request_bytes or store.max_request_bytes
        self._pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="milvus-write")
        self._writes: deque[Future] = deque()
        self._paths: list[str] = []
        self._vectors: list[np.ndarray] = []
        self._sizes: list[int] = []  # each waiting row's bytes in a request
        self._last_handed_over = time.monotonic()

    def add(self, paths: Sequence[str], vectors: np.ndarray) -> None:
        """Hand over embedded rows; they are written once a request is full or has waited long enough.

        Raises:
            Exception: What an earlier write raised (the run stops at the first failed write).
        """
        if not len(paths):
            return
        row_vector_bytes = vectors.nbytes // len(paths)
        self._paths.extend(paths)
        self._vectors.extend(vectors)
        self._sizes.extend(row_vector_bytes + ROW_OVERHEAD_BYTES + len(path.encode("utf-8")) for path in paths)
        while sum(self._sizes) >= self.max_request_bytes:  # full requests go now, the rest waits
            self._hand_over(self._rows_in_one_request())
        if self._paths and time.monotonic() - self._last_handed_over >= self.max_delay_seconds:
            self._hand_over(len(self._paths))

    def _rows_in_one_request(self) -> int:
        """How many of the waiting rows fill one request (at least one)."""
        total = 0
        for count, size in enumerate(self._sizes):
            total += size
            if total > self.max_request_bytes:
                return max(count, 1)
        return len(self._sizes)

    def _hand_over(self, count: int) -> None:
        """Give the first `count` waiting rows to a writer thread, once fewer than `in_flight` writes run."""
        while len(self._writes) >= self.in_flight:
            self._writes.popleft().result()
        if count == 0:
            return
        paths, vectors = self._paths[:count], np.stack(self._vectors[:count])
        del self._paths[:count], self._vectors[:count], self._sizes[:count]
        self._writes.append(self._pool.submit(self._write, paths, vectors))
        self._last_handed_over = time.monotonic()

    def _write(self, paths: list[str], vectors: np.ndarray) -> None:
        records = [self.make_record(path, vector) for path, vector in zip(paths, vectors, strict=True)]
        self.store.write(records, max_request_bytes=self.max_request_bytes)

    def close(self) -> None:
        """Write the rows still waiting, wait for every write and stop the threads.

        Raises:
            Exception: The first error of a write (the others are still waited for).
        """
        try:
            self._hand_over(len(self._paths))
        finally:
            errors: list[BaseException] = []
            while self._writes:
                try:
                    self._writes.popleft().result()
                except Exception as error:  # wait for every write before reporting one
                    errors.append(error)
            self._pool.shutdown(wait=True)
            if errors:
                raise errors[0]

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the run failed: still write what was embedded, then let the error through
            with contextlib.suppress(Exception):
                self.close()
