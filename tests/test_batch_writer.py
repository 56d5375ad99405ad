"""BatchWriter: full requests, a bounded wait, a bounded number of writes in flight, errors kept."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from utilities.ids import path_id
from utilities.indexing.batch_writer import BatchWriter
from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import ROW_OVERHEAD_BYTES
from utilities.records import ImageRecord

DIMENSION = 2048


def batch(start: int, count: int) -> tuple[list[str], np.ndarray]:
    paths = [f"/photos/{i:04d}.jpg" for i in range(start, start + count)]
    vectors = np.random.default_rng(start).standard_normal((count, DIMENSION)).astype(np.float32)
    return paths, vectors


def make_record(path: str, vector: np.ndarray) -> ImageRecord:
    return ImageRecord(path_id(path), path, 1, 2, "hash", vector)


class RecordingStore:
    """The real collection, recording how many rows each write request carried."""

    def __init__(self, store: ImageCollection) -> None:
        self.store = store
        self.requests: list[int] = []
        self.max_request_bytes = store.max_request_bytes

    def write(self, records: list[ImageRecord], max_request_bytes: int) -> int:
        self.requests.append(len(records))
        return self.store.write(records, max_request_bytes=max_request_bytes)


def five_rows_bytes() -> int:
    return 5 * (DIMENSION * 4 + ROW_OVERHEAD_BYTES + len("/photos/0000.jpg"))


def test_rows_are_written_in_full_requests_and_the_rest_at_close(store: ImageCollection) -> None:
    recording = RecordingStore(store)
    batches = [batch(start, 4) for start in range(0, 12, 4)]
    with BatchWriter(recording, make_record, max_delay_seconds=3600, max_request_bytes=five_rows_bytes()) as writer:
        for paths, vectors in batches:
            writer.add(paths, vectors)
    assert recording.requests == [5, 5, 2]
    assert store.count() == 12
    expected = {path: vector for paths, vectors in batches for path, vector in zip(paths, vectors, strict=True)}
    stored = store.records([path_id(p) for p in expected], with_vectors=True)
    assert sorted(r.path for r in stored) == sorted(expected)
    for record in stored:  # each row kept its own vector
        assert np.allclose(record.vector, expected[record.path], atol=1e-5)


def test_with_no_wait_each_batch_is_written_at_once(store: ImageCollection) -> None:
    recording = RecordingStore(store)
    with BatchWriter(recording, make_record, max_delay_seconds=0) as writer:
        for start in range(0, 9, 3):
            writer.add(*batch(start, 3))
            time.sleep(0.01)
    assert recording.requests == [3, 3, 3]
    assert store.count() == 9


def test_add_waits_while_in_flight_writes_are_running(store: ImageCollection) -> None:
    release = threading.Event()

    def slow_record(path: str, vector: np.ndarray) -> ImageRecord:
        release.wait(timeout=30)
        return make_record(path, vector)

    writer = BatchWriter(store, slow_record, in_flight=2, max_delay_seconds=0)
    writer.add(*batch(0, 2))
    writer.add(*batch(2, 2))  # two writes in flight: both blocked in slow_record
    third = threading.Thread(target=writer.add, args=batch(4, 2))
    third.start()
    third.join(timeout=1.0)
    assert third.is_alive(), "a third write was handed over while two were in flight"
    release.set()
    third.join(timeout=30)
    assert not third.is_alive()
    writer.close()
    assert store.count() == 6


def test_a_failed_write_stops_the_run_and_the_other_rows_are_kept(store: ImageCollection) -> None:
    def failing_record(path: str, vector: np.ndarray) -> ImageRecord:
        if path.endswith("0003.jpg"):
            raise OSError(f"cannot read {path}")
        return make_record(path, vector)

    with pytest.raises(OSError, match="0003.jpg"), BatchWriter(store, failing_record, max_delay_seconds=0) as writer:
        for start in range(0, 12, 2):
            writer.add(*batch(start, 2))
            time.sleep(0.05)
    # the request with 0003 was lost and the run stopped; the writes before it are stored, never twice
    stored = sorted(r.path for r in store.records([path_id(p) for p in batch(0, 12)[0]]))
    assert {"/photos/0000.jpg", "/photos/0001.jpg"} <= set(stored)
    assert "/photos/0003.jpg" not in stored and len(stored) == len(set(stored)) == store.count()


def test_in_flight_must_be_positive(store: ImageCollection) -> None:
    with pytest.raises(ValueError, match="in_flight"):
        BatchWriter(store, make_record, in_flight=0)
