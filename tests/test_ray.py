"""Indexing on a real Ray cluster into the real Milvus server.

`.ci/run` starts a two-node local cluster: a head node with the custom resource
`embed_node` and a second node with `decode_node`, so that decoding tasks must run on one
node and the embedding actors on the other. The tests reach it through `RAY_TEST_ADDRESS`.
"""

from __future__ import annotations

import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import class_photos, run_cli
from tests.images_factory import make_bad_files
from utilities.embeddings import ResNet50Embedder, embedder_from_callable
from utilities.ids import path_id, stored_path
from utilities.indexing.pipeline import index_paths
from utilities.milvus.collection import ImageCollection

RAY_ENV = "RAY_TEST_ADDRESS"
ON_TWO_NODES = {"decode_resources": {"decode_node": 1}, "embed_resources": {"embed_node": 1}}
"""Decoding on the node that has `decode_node`, embedding on the one that has `embed_node`."""


@pytest.fixture(scope="module")
def ray_address() -> str:
    """The address of the local two-node cluster from `.ci/run`, joined by this process."""
    address = os.environ.get(RAY_ENV)
    if not address:
        pytest.fail(
            f"{RAY_ENV} is not set: run `bash .ci/run`, or start a cluster (`ray start --head "
            "--resources='{\"embed_node\": 2}'` and `ray start --address=HEAD:6379 "
            "--resources='{\"decode_node\": 2}'`) and export it, or deselect with -m 'not ray'"
        )
    from utilities.indexing.on_ray import connect

    connect(address)
    return address


@pytest.fixture
def server_store(server_uri: str, collection_name: str):
    """An empty 2048-d collection on the server, dropped afterwards."""
    opened = ImageCollection.open(server_uri, name=collection_name, dimension=2048)
    yield opened
    opened.drop()
    opened.close()


def _copy_photos(folder: Path, per_class: int) -> list[Path]:
    copies = []
    for source in class_photos(per_class):
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
        copies.append(target)
    return copies


@pytest.mark.server
@pytest.mark.ray
@pytest.mark.slow
def test_ray_on_two_nodes_matches_the_single_process_path(
    ray_address: str, server_uri: str, server_store: ImageCollection, tmp_path: Path
) -> None:
    from utilities.indexing.on_ray import RayOptions, index_paths_on_ray

    photos = _copy_photos(tmp_path / "photos", 3)
    bad = make_bad_files(tmp_path / "photos" / "bad")
    files = photos + list(bad.values())
    embedder = ResNet50Embedder(weights=None, batch_size=8)  # seeded random weights: the same in every process

    options = RayOptions(address=ray_address, **ON_TWO_NODES)
    report = index_paths_on_ray(files, server_store, embedder, options, batch_size=8, progress=False)

    assert report.added == len(photos) and report.updated == 0 and report.unchanged == 0
    assert sorted(f.path for f in report.failed) == sorted(stored_path(p) for p in bad.values())
    assert all(f.reason for f in report.failed)
    assert len(report.decode_nodes) == 1 and len(report.embed_nodes) == 1
    assert set(report.decode_nodes) != set(report.embed_nodes), "decoding and embedding ran on the same node"
    assert sum(report.embed_nodes.values()) == len(files)

    single = ImageCollection.open(server_uri, name=f"{server_store.name}_single", dimension=2048)
    try:
        index_paths(files, single, embedder, batch_size=8, progress=False)
        ids = [path_id(stored_path(p)) for p in photos]
        on_ray = {r.id: r for r in server_store.records(ids, with_vectors=True)}
        alone = {r.id: r for r in single.records(ids, with_vectors=True)}
    finally:
        single.drop()
        single.close()
    assert set(on_ray) == set(alone) == set(ids)
    assert server_store.count() == len(photos)
    for row_id, record in alone.items():
        twin = on_ray[row_id]
        assert (twin.path, twin.file_size, twin.mtime_ns, twin.content_hash) == (
            record.path,
            record.file_size,
            record.mtime_ns,
            record.content_hash,
        )
        cosine = float(np.dot(twin.vector, record.vector) / np.linalg.norm(twin.vector) / np.linalg.norm(record.vector))
        assert cosine >= 0.9999, (record.path, cosine)

    again = index_paths_on_ray(files, server_store, embedder, options, batch_size=8, progress=False)
    assert (again.added, again.updated, again.unchanged, len(again.failed)) == (0, 0, len(photos), len(bad))


@pytest.mark.server
@pytest.mark.ray
@pytest.mark.slow
def test_a_ray_worker_killed_mid_run_leaves_each_image_once(
    ray_address: str, server_store: ImageCollection, tmp_path: Path
) -> None:
    from utilities.indexing.on_ray import RayOptions, index_paths_on_ray

    photos = _copy_photos(tmp_path / "photos", 10)
    calls = tmp_path / "embed-calls.txt"  # each actor appends its pid per batch: the test kills the first

    def slow_mean_colour(images: np.ndarray) -> np.ndarray:
        with calls.open("a") as log:
            log.write(f"{os.getpid()}\n")
        time.sleep(0.4)
        means = images.reshape(len(images), -1, 3).mean(axis=1) + 1.0
        return np.tile(means, (1, 2048 // 3 + 1))[:, :2048].astype(np.float32)

    embedder = embedder_from_callable(slow_mean_colour, dimension=2048)
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["report"] = index_paths_on_ray(
                photos, server_store, embedder, RayOptions(address=ray_address, **ON_TWO_NODES), 4, progress=False
            )
        except BaseException as error:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = error

    runner = threading.Thread(target=run)
    runner.start()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and runner.is_alive():
        pids = calls.read_text().split() if calls.exists() else []
        if len(pids) >= 3:
            break
        time.sleep(0.1)
    assert len(pids) >= 3, "the embedding actor never started"
    victim = int(pids[0])
    os.kill(victim, signal.SIGKILL)
    killed_after = len(pids)
    runner.join(timeout=240)
    assert not runner.is_alive(), "the run did not finish after the actor was killed"
    assert "error" not in outcome, outcome.get("error")

    report = outcome["report"]
    pids_seen = calls.read_text().split()
    assert victim in map(int, pids_seen) and any(int(p) != victim for p in pids_seen[killed_after:]), (
        "no other actor process took over after the kill"
    )
    assert killed_after < len(photos) // 4, "the kill came after the run had embedded every batch"
    assert report.added == len(photos) and not report.failed
    ids = [path_id(stored_path(p)) for p in photos]
    stored = server_store.records(ids)
    assert sorted(r.id for r in stored) == sorted(ids)
    assert server_store.count() == len(photos)
    rerun = index_paths_on_ray(photos, server_store, embedder, RayOptions(address=ray_address), 4, progress=False)
    assert (rerun.added, rerun.unchanged) == (0, len(photos))


@pytest.mark.server
@pytest.mark.ray
@pytest.mark.slow
def test_cli_index_with_ray_then_search(ray_address: str, server_uri: str, photo_folder: Path) -> None:
    collection = f"ray_cli_{os.getpid()}"
    try:
        done = run_cli(
            "index", str(photo_folder), "--uri", server_uri, "--collection", collection, "--weights", "none",
            "--ray", ray_address, "--batch-size", "4", "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        assert '"added": 10' in done.stdout and '"embed_nodes"' in done.stdout
        found = run_cli(
            "search", str(next(photo_folder.rglob("*.jpg"))), "--uri", server_uri,
            "--collection", collection, "--weights", "none", "--top-k", "3",
        )  # fmt: skip
        assert found.returncode == 0, found.stderr[-2000:]
        assert str(photo_folder) in found.stdout
    finally:
        store = ImageCollection.open(server_uri, name=collection, dimension=2048)
        store.drop()
        store.close()


def test_ray_with_a_milvus_lite_file_is_one_clear_error(tmp_path: Path) -> None:
    from utilities.indexing.on_ray import RayUnavailableError, index_paths_on_ray

    lite = ImageCollection.open(str(tmp_path / "milvus.db"), name="lite", dimension=2048)
    try:
        with pytest.raises(RayUnavailableError, match="Milvus Lite file .* admits only one"):
            index_paths_on_ray(class_photos(1), lite, ResNet50Embedder(weights=None))
    finally:
        lite.close()
    done = run_cli("index", str(tmp_path), "--uri", str(tmp_path / "other.db"), "--weights", "none", "--ray")
    assert done.returncode != 0 and "use a Milvus server" in done.stderr and "Traceback" not in done.stderr
