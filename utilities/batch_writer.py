"""Writing embedded images to Milvus in a background thread, batch by batch.

Each batch is upserted as soon as it is embedded (split into requests of the backend's byte
budget), so an interrupted run loses at most the batch in flight and a re-run finishes the
rest; writing one batch overlaps with decoding and embedding the next.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np

from utilities.milvus_store import ImageCollection
from utilities.records import ImageRecord


class BatchWriter:
    """Upserts batches of records in a writer thread, one batch behind the caller.

    Memory stays bounded: `add` waits for the previous batch to be written before it hands
    over the next.

    Args:
        store: The collection.
        make_record: Builds a file's record from its path and vector (in the writer thread,
            so that hashing a file there overlaps with the model).

    Example:
        >>> with BatchWriter(store, plan.record) as writer:  # doctest: +SKIP
        ...     writer.add(paths, vectors)
    """

    def __init__(self, store: ImageCollection, make_record: Callable[[str, np.ndarray], ImageRecord]) -> None:
        self.store = store
        self.make_record = make_record
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-write")
        self._last: Future | None = None

    def add(self, paths: Sequence[str], vectors: np.ndarray) -> None:
        """Hand over a batch; returns once the previous batch is written."""
        self._wait()
        self._last = self._thread.submit(self._write, list(paths), vectors)

    def _write(self, paths: list[str], vectors: np.ndarray) -> None:
        records = [self.make_record(path, vector) for path, vector in zip(paths, vectors, strict=True)]
        self.store.write(records)

    def _wait(self) -> None:
        if self._last is not None:
            last, self._last = self._last, None
            last.result()

    def close(self) -> None:
        """Wait for the last batch and stop the thread."""
        try:
            self._wait()
        finally:
            self._thread.shutdown(wait=True)

    def __enter__(self) -> BatchWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:  # the run failed: still finish the batch in flight, then let the error through
            with contextlib.suppress(Exception):
                self.close()
