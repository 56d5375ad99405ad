"""Indexes chosen by size, and the package's reads of stored vectors (moved files, search by row id,
duplicates) under the memory-lean server indexes, on segments large enough to get a real index."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PHOTOS, run_python
from utilities.duplicates.finder import find_duplicates
from utilities.engine import ImageSearchEngine
from utilities.ids import path_id, stored_path
from utilities.indexing.pipeline import index_folder
from utilities.milvus import storage_probe, vector_index
from utilities.milvus.collection import ImageCollection
from utilities.milvus.server_start import server_started

SYNTHETIC_ROWS = 3_000
"""More than the 1,024 rows below which a Milvus 2.3 server searches a segment without its index."""


def _synthetic_rows(store: ImageCollection, count: int = SYNTHETIC_ROWS, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((count, store.dimension)).astype(np.float32)
    ids = list(range(1, count + 1))
    store.insert([f"/synthetic/{i}.jpg" for i in ids], vectors, ids=ids)
    return vectors


def test_lite_always_keeps_the_exact_index(tmp_path: Path) -> None:
    store = ImageCollection.open(str(tmp_path / "lite.db"), name="auto", dimension=16)
    _synthetic_rows(store, 50)
    assert store.create_index()["index_type"] == "FLAT"
    summary = store.index_summary()
    assert summary["recommended_index"] == "FLAT" and summary["bytes_per_row"] == 64
    store.close()


def test_the_server_index_follows_the_collection_size(
    server_uri: str, collection_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    dimension, expected = 256, "SCANN"  # reduced vectors; longer ones get HNSW (recommended_index's examples)
    store = ImageCollection.open(server_uri, name=collection_name, dimension=dimension)
    try:
        _synthetic_rows(store, 200)
        assert store.create_index()["index_type"] == "FLAT"  # small: exact
        monkeypatch.setattr(vector_index, "FLAT_UP_TO_ROWS", 100)
        assert store.index_summary()["recommended_index"] == expected  # info says what it would choose now
        assert store.create_index()["index_type"] == expected
        summary = store.index_summary()
        assert summary["index_type"] == expected and summary["bytes_per_row"] < 4 * dimension + 200
        assert summary["index_params"] == vector_index.recommended_index(False, 200, dimension)[1]
    finally:
        store.drop()
        store.close()


@pytest.mark.parametrize("kind", ["IVF_SQ8", "IVF_PQ", "SCANN"])
def test_stored_vectors_are_served_under_lean_indexes(
    server_uri: str, collection_name: str, embedder, tmp_path: Path, kind: str
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    photos = [Path(shutil.copy2(p, folder / p.name)) for p in sorted(PHOTOS.rglob("*.jpg"))[:10]]
    store = ImageCollection.open(server_uri, name=collection_name, dimension=2048)
    try:
        _synthetic_rows(store)
        index_folder(folder, store, embedder, batch_size=8, progress=False)
        store.create_index(kind, nlist=16, **({"m": 64} if kind == "IVF_PQ" else {}))
        assert store.wait_for_index(timeout=300)
        info = store.index_info()
        assert info["index_type"] == kind and int(info["indexed_rows"]) == SYNTHETIC_ROWS + 10
        before = store.records([path_id(stored_path(photos[0]))], with_vectors=True)[0].vector

        moved = photos[0].rename(folder / "moved.jpg")  # a moved file keeps its stored vector
        report = index_folder(folder, store, embedder, batch_size=8, progress=False, prune=True)
        assert report.moved == 1 and report.added == 0
        after = store.records([path_id(stored_path(moved))], with_vectors=True)[0].vector
        assert after.shape == (2048,) and float(after @ before / np.linalg.norm(after) / np.linalg.norm(before)) > 0.99

        row = path_id(stored_path(photos[1]))  # a search by row id, as the web page does it
        vector = store.records([row], with_vectors=True)[0].vector
        hits = store.search(vector, top_k=10)[0]  # re-ranked on the stored vectors (SQ8, PQ) or by SCANN itself
        assert int(hits[0]["id"]) == row and hits[0]["distance"] > 0.999
        assert {int(hit["id"]) for hit in hits} == {path_id(stored_path(p)) for p in [moved, *photos[1:]]}

        report = find_duplicates(store, threshold=0.99, neighbours=3, verify=False)  # reads every stored vector
        assert report.rows == SYNTHETIC_ROWS + 10 and report.searched == SYNTHETIC_ROWS + 10

        store.release()  # the reads above left the stored vectors in place: a fresh load still serves them
        store.load()
        again = store.records([path_id(stored_path(moved))], with_vectors=True)[0].vector
        assert np.allclose(again, after, atol=1e-5)
    finally:
        store.drop()
        store.close()


def test_a_server_check_is_remembered_for_that_address_and_start_only() -> None:
    path = storage_probe.verdicts_path()  # in this test's $UTILITIES_CACHE_DIR
    assert storage_probe.remembered_verdict("http://a:19530", "start 1") is None  # no file yet
    path.parent.mkdir(parents=True)
    path.write_text("{not json")
    assert storage_probe.remembered_verdict("http://a:19530", "start 1") is None  # a damaged file: asked again
    storage_probe.remember_verdict("http://a:19530", "start 1", False, "v2.3.5-lite")  # and replaced
    storage_probe.remember_verdict("http://b:19530", "start 9", True, "v2.3.5-lite")
    assert storage_probe.remembered_verdict("http://a:19530", "start 1")["vectors_survive_reads"] is False
    assert storage_probe.remembered_verdict("http://b:19530", "start 9")["vectors_survive_reads"] is True
    assert storage_probe.remembered_verdict("http://a:19530", "start 2") is None  # restarted since
    assert storage_probe.remembered_verdict("http://a:19530", None) is None  # start unknown: never trusted
    assert storage_probe.remembered_verdict("http://c:19530", "start 1") is None


CHECK_IN_A_NEW_PROCESS = """
import logging, sys, time
from utilities.milvus.connection import MilvusConnection
from utilities.milvus.storage_probe import check_vector_reads
logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
connection = MilvusConnection.open(sys.argv[1])
started = time.monotonic()
check_vector_reads(connection)
print(time.monotonic() - started)
"""
"""What a second command does before it reads stored vectors under IVF_SQ8: the check, timed."""


def test_the_test_server_keeps_vectors_read_under_sq8_and_is_checked_once_per_start(
    server_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = ImageCollection.connect(server_uri)
    try:
        with caplog.at_level(logging.INFO, logger=storage_probe.__name__):
            storage_probe.check_vector_reads(store.connection)  # started with localStorage.path=data: no error
        assert store.connection.vector_reads_checked
        probes = [record.getMessage() for record in caplog.records if record.getMessage().startswith("stored vectors")]
        assert len(probes) == 1 and probes[0].startswith("stored vectors survive a read under IVF_SQ8")
        remembered = json.loads(storage_probe.verdicts_path().read_text())[server_uri]
        assert remembered["vectors_survive_reads"] is True
        assert remembered["started"] == server_started(store.connection)
    finally:
        store.close()
    # another command against the same running server, with this test's $UTILITIES_CACHE_DIR: no second probe
    second = run_python(CHECK_IN_A_NEW_PROCESS, server_uri)
    assert second.returncode == 0, second.stderr
    assert "since it started" in second.stderr and "stored vectors" not in second.stderr, second.stderr
    assert float(second.stdout) < 2.0


@pytest.fixture
def hnsw_store(server_uri: str, collection_name: str):
    """A 2048-d collection of 1,500 rows under an HNSW index that covers them (dropped afterwards)."""
    store = ImageCollection.open(server_uri, name=collection_name, dimension=2048)
    try:
        _synthetic_rows(store, 1_500)
        store.create_index("HNSW", M=8, efConstruction=64)
        store.wait_for_index(timeout=300)
        yield store
    finally:
        store.drop()
        store.close()


def _assert_sealed_and_indexed(store: ImageCollection, rows: int) -> None:
    store._index_cache = None
    info = store.index_info()
    # sealed (growing rows are not in the index's count) and covered by the index
    assert int(info["total_rows"]) == store.count() == rows and int(info["indexed_rows"]) == rows


def test_a_small_run_under_an_approximate_index_is_sealed_and_indexed(
    hnsw_store: ImageCollection, embedder, tmp_path: Path
) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(PHOTOS.rglob("*.jpg"))[:6]:
        shutil.copy2(photo, folder / photo.name)
    assert index_folder(folder, hnsw_store, embedder, batch_size=8, progress=False).added == 6
    _assert_sealed_and_indexed(hnsw_store, 1_506)


def test_vectors_inserted_under_an_approximate_index_are_sealed_and_indexed(
    hnsw_store: ImageCollection, server_uri: str, embedder
) -> None:
    vectors = np.random.default_rng(5).standard_normal((6, 2048)).astype(np.float32)
    with ImageSearchEngine(server_uri, collection_name=hnsw_store.name, embedder=embedder, progress=False) as engine:
        assert engine.insert_vectors([f"/inserted/{i}.jpg" for i in range(6)], vectors) == 6  # as an index run's
    _assert_sealed_and_indexed(hnsw_store, 1_506)


def test_quantised_searches_are_re_ranked_on_the_stored_vectors(server_uri: str, collection_name: str) -> None:
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((300, 256)).astype(np.float32)
    vectors = np.repeat(centres, 10, axis=0) + 0.2 * rng.standard_normal((3_000, 256)).astype(np.float32)
    store = ImageCollection.open(server_uri, name=collection_name, dimension=256)
    try:
        ids = list(range(1, 3_001))
        store.insert([f"/synthetic/{i}.jpg" for i in ids], vectors, ids=ids)
        store.create_index("IVF_SQ8", nlist=16)
        assert store.wait_for_index(timeout=300)
        queries = vectors[::150] + 0.05 * rng.standard_normal((20, 256)).astype(np.float32)
        unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        exact = (queries / np.linalg.norm(queries, axis=1, keepdims=True)) @ unit.T
        expected = np.argsort(-exact, axis=1)[:, :10] + 1

        refined = store.search(queries, top_k=10)  # IVF_SQ8 re-ranks by default (DEFAULT_REFINE)
        assert [[int(hit["id"]) for hit in hits] for hits in refined] == expected.tolist()
        for row, hits in enumerate(refined):
            scores = [hit["distance"] for hit in hits]
            np.testing.assert_allclose(scores, exact[row, np.array([int(hit["id"]) for hit in hits]) - 1], atol=1e-5)
            assert hits[0]["entity"]["path"] == f"/synthetic/{int(hits[0]['id'])}.jpg"

        codes_only = store.search(queries, top_k=10, refine=1)  # the index's own scores: from 8-bit codes
        code_scores = np.array([[hit["distance"] for hit in hits] for hits in codes_only])
        code_ids = np.array([[int(hit["id"]) for hit in hits] for hits in codes_only]) - 1
        assert np.abs(code_scores - np.take_along_axis(exact, code_ids, axis=1)).max() > 1e-5
    finally:
        store.drop()
        store.close()
