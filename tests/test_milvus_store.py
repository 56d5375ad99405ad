from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utilities.errors import CollectionMismatchError, CollectionNotFoundError, ImageSearchError, MilvusUnavailableError
from utilities.ids import path_id
from utilities.milvus.collection import MAX_REQUEST_BYTES, ImageCollection, _batches_by_bytes, connect


def random_unit(count: int, dim: int = 2048, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_count_is_exact_right_after_insert(store: ImageCollection) -> None:
    paths = [f"/data/img_{i}.jpg" for i in range(25)]
    assert store.insert(paths, random_unit(25)) == 25
    assert store.count() == 25


def test_upsert_of_same_paths_adds_nothing(store: ImageCollection) -> None:
    paths = [f"/data/img_{i}.jpg" for i in range(10)]
    store.insert(paths, random_unit(10, seed=1))
    store.insert(paths, random_unit(10, seed=2))
    assert store.count() == 10


def test_insert_split_by_bytes_keeps_every_row(store: ImageCollection) -> None:
    paths = [f"/data/many/{i}.jpg" for i in range(40)]
    store.insert(paths, random_unit(40), max_request_bytes=9000 * 5)  # ~5 rows a request
    assert store.count() == 40
    assert store.existing_ids([path_id(p) for p in paths]) == {path_id(p) for p in paths}


def test_byte_batches_stay_under_server_limit() -> None:
    row = 2048 * 4 + 100
    parts = list(_batches_by_bytes([row] * 10_000, MAX_REQUEST_BYTES))
    assert sum(p.stop - p.start for p in parts) == 10_000
    assert max((p.stop - p.start) * row for p in parts) <= MAX_REQUEST_BYTES < 64 * 1024 * 1024


def test_search_by_precomputed_vector_finds_itself(store: ImageCollection) -> None:
    vectors = random_unit(30, seed=3)
    paths = [f"/precomputed/{i}.jpg" for i in range(30)]
    store.insert(paths, vectors)
    hits = store.search(vectors[7:8], top_k=3)[0]
    assert hits[0]["entity"]["path"] == "/precomputed/7.jpg"
    assert hits[0]["distance"] == pytest.approx(1.0, abs=1e-4)


def test_reopen_with_other_dimension_errors_clearly(store: ImageCollection) -> None:
    with pytest.raises(CollectionMismatchError, match="dimension 2048, not 512"):
        ImageCollection.open(store.target.uri, name=store.name, dimension=512)


def test_reopen_with_other_metric_errors_clearly(store: ImageCollection) -> None:
    with pytest.raises(CollectionMismatchError, match="metric COSINE, not L2"):
        ImageCollection.open(store.target.uri, name=store.name, metric="L2")


def test_foreign_schema_is_refused(store: ImageCollection) -> None:
    store.client.drop_collection(store.name)
    store.client.create_collection(store.name, dimension=2048)  # quick setup: id + "vector" only
    with pytest.raises(CollectionMismatchError, match="field 'path' should be VARCHAR but is missing"):
        ImageCollection.open(store.target.uri, name=store.name, dimension=2048)


def test_reset_drops_the_rows(store: ImageCollection) -> None:
    store.insert(["/a.jpg"], random_unit(1))
    reopened = ImageCollection.open(store.target.uri, name=store.name, dimension=2048, reset=True)
    assert reopened.count() == 0


def test_missing_collection_without_create(backend: str, collection_name: str) -> None:
    with pytest.raises(CollectionNotFoundError, match=collection_name):
        ImageCollection.open(backend, name=collection_name, create=False)


def test_wrong_vector_dimension_on_insert(store: ImageCollection) -> None:
    with pytest.raises(ValueError, match="dimension 3"):
        store.insert(["/a.jpg"], np.zeros((1, 3), np.float32))


def test_ivf_flat_index_and_search(store: ImageCollection) -> None:
    vectors = random_unit(200, seed=4)
    store.insert([f"/ivf/{i}.jpg" for i in range(200)], vectors)
    info = store.create_index("IVF_FLAT", nlist=16)
    assert (info["index_type"], info["metric_type"], str(info["nlist"])) == ("IVF_FLAT", "COSINE", "16")
    assert store.search_params(10)["params"] == {"nprobe": 16}  # the default 32, capped at nlist
    hits = store.search(vectors[42:43], top_k=1, search_params={"params": {"nprobe": 16}})[0]
    assert hits[0]["entity"]["path"] == "/ivf/42.jpg"


def test_hnsw_where_supported(store: ImageCollection) -> None:
    vectors = random_unit(100, seed=5)
    store.insert([f"/hnsw/{i}.jpg" for i in range(100)], vectors)
    if store.target.is_lite:
        with pytest.raises(ImageSearchError, match="Milvus Lite does not support index type HNSW"):
            store.create_index("HNSW")
        return
    info = store.create_index("HNSW", M=8, efConstruction=64)
    assert (info["index_type"], str(info["M"])) == ("HNSW", "8")
    assert store.search_params(10)["params"]["ef"] == 128 and store.search_params(300)["params"]["ef"] == 300
    assert store.search(vectors[3:4], top_k=1)[0][0]["entity"]["path"] == "/hnsw/3.jpg"


def test_unknown_metric_is_refused(backend: str, collection_name: str) -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        ImageCollection.open(backend, name=collection_name, dimension=8, metric="HAMMING")


def test_unreachable_server_names_the_uri() -> None:
    with pytest.raises(MilvusUnavailableError, match="127.0.0.1:1"):
        connect("http://127.0.0.1:1", timeout=2)


def test_lite_file_needs_db_suffix(tmp_path) -> None:
    with pytest.raises(MilvusUnavailableError, match="must end in '.db'"):
        connect(str(tmp_path / "milvus.sqlite"))


def test_hostile_strings_cannot_widen_a_filter(store: ImageCollection) -> None:
    from utilities.milvus.collection import PATH_FIELD, quote_string

    paths = ['/photos/x" or path != "', "/photos/back\\slash.jpg", "/photos/plain.jpg"]
    store.insert(paths, random_unit(3, seed=9))
    for path in paths:
        rows = store.client.query(
            store.name, filter=f"{PATH_FIELD} == {quote_string(path)}", output_fields=[PATH_FIELD]
        )
        assert [r[PATH_FIELD] for r in rows] == [path]


def test_rows_by_hash_finds_only_those_hashes(store: ImageCollection) -> None:
    store.insert(["/a.jpg", "/b.jpg"], random_unit(2), hashes=["aa11", "bb22"])
    assert [r["path"] for r in store.rows_by_hash(["bb22", 'x" or path != "'])] == ["/b.jpg"]


@pytest.mark.slow
def test_concurrent_search_load_has_no_errors_and_stable_latency(store: ImageCollection) -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    vectors = random_unit(300, seed=11)
    store.insert([f"/load/{i}.jpg" for i in range(300)], vectors)
    deadline = time.monotonic() + 180  # bounded in time whatever happens
    per_thread = 750

    def worker(offset: int) -> list[tuple[float, float]]:
        timings = []
        for i in range(per_thread):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            hits = store.search(vectors[(offset + i) % 300][None], top_k=5)[0]
            timings.append((started, time.perf_counter() - started))
            assert hits[0]["id"] == path_id(f"/load/{(offset + i) % 300}.jpg")
        return timings

    with ThreadPoolExecutor(4) as pool:
        timings = sorted(t for result in pool.map(worker, range(0, 300, 75)) for t in result)
    assert len(timings) == 4 * per_thread, "the load did not finish within its time bound"
    latencies = np.array([seconds for _, seconds in timings]) * 1000
    p50, p99 = np.percentile(latencies, [50, 99])
    first, last = np.median(latencies[:1000]), np.median(latencies[-1000:])
    print(
        f"{store.target.uri}: {len(latencies)} searches from 4 threads, p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
        f"p50 of the first 1000 {first:.1f} ms, of the last 1000 {last:.1f} ms"
    )
    assert last < 3 * first + 5, "latency grew during the run"


def test_milvus_lite_import_failure_says_what_failed_and_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "milvus_lite", None)  # what Python does for a package that cannot load
    with pytest.raises(MilvusUnavailableError) as caught:
        ImageCollection.open(str(tmp_path / "lite.db"), name="x", dimension=4)
    message = str(caught.value)
    assert "Milvus Lite could not be imported" in message and "pip install 'milvus-lite" in message
    assert "another process" not in message and "other than this package" not in message


def test_milvus_lite_works_without_pkg_resources(tmp_path: Path) -> None:
    """setuptools 81+ (pulled in by TensorFlow) and fresh 3.12+ venvs have no pkg_resources."""
    import os
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['pkg_resources'] = None\n"  # as if setuptools had none
        "from utilities.milvus.collection import ImageCollection\n"
        f"store = ImageCollection.open({str(tmp_path / 'no_pkg.db')!r}, name='p', dimension=4)\n"
        "store.insert(['/a.jpg'], [[1, 0, 0, 0]]); print('count', store.count())\n"
        "import milvus_lite; print('version', milvus_lite.__version__)\n"
        "print('pkg_resources', sys.modules.get('pkg_resources'))\n"
        "store.close()\n"
    )
    from tests.conftest import ROOT

    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "count 1" in lines and "pkg_resources None" in lines
    assert next(line for line in lines if line.startswith("version ")).split()[1][0].isdigit()


class _CheckedBeforeAnotherProcessCreated(ImageCollection):
    """Sees the collection missing on its first check: as a second shard does when both start at once."""

    checked = False

    def exists(self) -> bool:
        if not self.checked:
            self.checked = True
            return False
        return super().exists()


def test_a_collection_created_by_another_writer_meanwhile_is_used_not_an_error(
    backend: str, collection_name: str
) -> None:
    first = ImageCollection.open(backend, name=collection_name, dimension=8, metric="L2")
    try:
        first.insert(["/a.jpg"], np.ones((1, 8), dtype=np.float32))
        late = _CheckedBeforeAnotherProcessCreated.connect(backend, name=collection_name)
        late.ensure(dimension=8, metric="L2")  # its create is refused: the collection now exists
        assert late.checked and late.metric == "L2" and late.count() == 1
        with pytest.raises(CollectionMismatchError, match="dimension 8, not 16"):
            _CheckedBeforeAnotherProcessCreated.connect(backend, name=collection_name).ensure(dimension=16)
    finally:
        first.drop()
