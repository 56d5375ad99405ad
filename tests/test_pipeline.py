from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import class_photos, cli_process, run_cli
from tests.conftest import mean_colour_embedder as _mean_colour
from tests.images_factory import make_bad_files, make_odd_good_files
from utilities.embeddings import embedder_from_callable
from utilities.errors import CollectionMismatchError
from utilities.ids import path_id, stored_path
from utilities.indexing.pipeline import embed_paths, index_folder
from utilities.milvus.collection import ImageCollection


class CountingEmbedder:
    """Passes batches to a real embedder and counts the images it saw."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.image_size = inner.image_size
        self.dimension = inner.dimension
        self.seen = 0

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        self.seen += len(images)
        return self.inner.embed_batch(images)


def test_index_then_reindex_adds_nothing(store: ImageCollection, embedder, photo_folder: Path) -> None:
    first = index_folder(photo_folder, store, embedder, batch_size=4, progress=False)
    assert (first.indexed, first.already_present, first.failed) == (10, 0, [])
    assert store.count() == 10
    counting = CountingEmbedder(embedder)
    second = index_folder(photo_folder, store, counting, progress=False)
    assert (second.indexed, second.already_present, counting.seen) == (0, 10, 0)
    assert store.count() == 10


def test_only_new_files_are_embedded(store: ImageCollection, embedder, photo_folder: Path) -> None:
    index_folder(photo_folder, store, embedder, progress=False)
    extra = class_photos(2)[1::2][:2]
    for source in extra:
        shutil.copy2(source, photo_folder / f"new_{source.name}")
    counting = CountingEmbedder(embedder)
    report = index_folder(photo_folder, store, counting, progress=False)
    assert (report.indexed, report.already_present, counting.seen) == (2, 10, 2)
    assert store.count() == 12


def test_indexed_image_is_its_own_nearest(store: ImageCollection, embedder, photo_folder: Path) -> None:
    from utilities.search import search_images

    index_folder(photo_folder, store, embedder, progress=False)
    query = sorted(photo_folder.rglob("*.jpg"))[4]
    results = search_images(store, query, embedder, top_k=3)
    assert results.loc[0, "path"] == stored_path(query)
    assert results.loc[0, "distance"] < 1e-4
    assert list(results["rank"]) == [1, 2, 3]


def test_broken_files_are_reported_and_good_ones_indexed(store: ImageCollection, embedder, tmp_path: Path) -> None:
    folder = tmp_path / "messy"
    good = make_odd_good_files(folder / "good")
    bad = make_bad_files(folder / "bad")
    (folder / "dir_named.jpg").mkdir()
    report = index_folder(folder, store, embedder, batch_size=4, progress=False)
    assert report.indexed == len(good) and store.count() == len(good)
    failed = {f.path: f.reason for f in report.failed}
    assert set(failed) == {stored_path(p) for p in bad.values()}
    assert all(failed.values())
    assert "decompression-bomb" in failed[stored_path(bad["bomb"])]
    csv_path = report.write_failures(tmp_path / "failures.csv")
    assert csv_path.read_text(encoding="utf-8").count("\n") == len(bad) + 1
    assert stored_path(good["unicode"]) in {r["path"] for r in store.get([path_id(stored_path(good["unicode"]))])}


def test_embedder_dimension_must_match_collection(
    backend: str, collection_name: str, embedder, photo_folder: Path
) -> None:
    small = ImageCollection.open(backend, name=collection_name, dimension=8)
    try:
        with pytest.raises(CollectionMismatchError, match="2048-d vectors but collection"):
            index_folder(photo_folder, small, embedder, progress=False)
    finally:
        small.drop()


def test_any_embedder_works(backend: str, collection_name: str, photo_folder: Path) -> None:
    mean_colour = embedder_from_callable(lambda batch: batch.mean(axis=(1, 2)) / 255.0, dimension=3)
    small = ImageCollection.open(backend, name=collection_name, dimension=3, metric="L2")
    try:
        report = index_folder(photo_folder, small, mean_colour, progress=False)
        assert report.indexed == 10 and small.count() == 10
    finally:
        small.drop()


def test_embed_paths_keeps_vectors_aligned_with_paths(embedder, tmp_path: Path) -> None:
    photos = class_photos(1)[:3]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"nope")
    mixed = [photos[0], broken, photos[1], photos[2]]
    result = embed_paths(mixed, embedder, batch_size=2, progress=False)
    assert result.paths == [stored_path(p) for p in photos]
    assert [f.path for f in result.failures] == [str(broken)]
    alone = embed_paths([photos[2]], embedder, progress=False).vectors[0]
    np.testing.assert_allclose(result.vectors[2], alone, atol=1e-5)


@pytest.fixture(scope="module")
def weights_file(embedder, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet50_random.weights.h5"
    embedder.model.get_layer("resnet50").save_weights(path)
    return path


PROGRESS = re.compile(r"(\d+)/(\d+) \[")
"""A tqdm bar's `done/total [` (the `planned=N/M` postfix has no bracket after it)."""


def _cli_indexer(uri: str, name: str, folder: Path, weights_file: Path, cwd: Path) -> subprocess.Popen:
    """`python -m utilities index FOLDER` as a user runs it, its progress bar on (to know where it is)."""
    common = ["--uri", uri, "--collection", name, "--weights", str(weights_file), "--batch-size", "2"]
    return cli_process("index", str(folder), *common, cwd=cwd, env={"UTILITIES_PROGRESS": "1"})


def _files_done(child: subprocess.Popen, at_least: int) -> int:
    """Read the child's progress bar until it shows `at_least` files done; return what it showed."""
    text = ""
    while True:
        character = child.stderr.read(1)  # type: ignore[union-attr]
        if not character:
            return -1  # the child ended first
        if character not in "\r\n":
            text += character
            continue
        found = PROGRESS.search(text)
        text = ""
        if found and int(found.group(1)) >= at_least:
            return int(found.group(1))


def _assert_each_path_once(uri: str, name: str, folder: Path) -> int:
    """Open the collection, check no path is stored twice and every path is a file of `folder`; return the count."""
    from utilities.catalog import mapping_from_collection

    check = ImageCollection.open(uri, name=name, create=False)
    try:
        mapping = mapping_from_collection(check)
        assert mapping["path"].is_unique and mapping["id"].is_unique
        assert set(mapping["path"]) <= {stored_path(p) for p in folder.iterdir()}
        assert check.count() == len(mapping)
        return len(mapping)
    finally:
        check.close()


@pytest.mark.slow
def test_killed_cli_runs_resume_with_each_image_once_in_the_collection_and_the_mapping(
    store: ImageCollection, weights_file: Path, tmp_path: Path
) -> None:
    """SIGKILL `python -m utilities index` three times at random points, then finish it: every image
    exactly once in the collection and in the saved mapping file."""
    from utilities.catalog import default_mapping_path, load_mapping, mapping_from_collection, verify_mapping

    folder = tmp_path / "many"
    for source in class_photos(5):  # 25 batches of 2: three kills after 4-20 files each leave some to do
        shutil.copy2(source, folder.mkdir(exist_ok=True) or folder / source.name)
    total = len(list(folder.iterdir()))
    uri, name = store.target.uri, store.name
    store.close()  # Milvus Lite allows one process per file: let each child open it alone
    rng = random.Random(int(os.environ.get("KILL_SEED", "2026")))
    counts = [0]
    for _ in range(3):
        child = _cli_indexer(uri, name, folder, weights_file, cwd=tmp_path)
        kill_after = counts[-1] + rng.randint(4, 10)  # files done (of all runs) when it is killed
        shown = _files_done(child, kill_after)
        time.sleep(rng.uniform(0.0, 0.4))  # land anywhere: mid-write, mid-decode, mid-embedding
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        assert shown >= kill_after, f"the indexer ended before it was killed: {child.stderr.read()[-2000:]}"
        counts.append(_assert_each_path_once(uri, name, folder))
        assert counts[-1] < total
    assert counts[-1] > 0 and counts == sorted(counts)  # progress kept across kills, nothing lost
    done = run_cli("index", str(folder), "--uri", uri, "--collection", name, "--weights", str(weights_file),
                   "--json", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["already_present"] == counts[-1] and report["indexed"] == total - counts[-1]
    assert _assert_each_path_once(uri, name, folder) == total
    resumed = ImageCollection.open(uri, name=name, create=False)
    try:
        mapping_file = default_mapping_path(resumed.target, name)
        if not resumed.target.is_lite:
            mapping_file = tmp_path / mapping_file  # a server's mapping goes to db/ in the working directory
        saved = load_mapping(mapping_file)
        assert len(saved) == total and saved["path"].is_unique and saved["id"].is_unique
        check = verify_mapping(resumed, mapping_file)
        assert (check.missing_from_file, check.stale_in_file, check.wrong_path) == ([], [], [])
        assert saved[["id", "path"]].equals(mapping_from_collection(resumed)[["id", "path"]])
        resumed.drop()
    finally:
        resumed.close()


def stored_vector(store: ImageCollection, path: Path) -> np.ndarray:
    from utilities.milvus.collection import VECTOR_FIELD

    rows = store.get([path_id(stored_path(path))], (VECTOR_FIELD,))
    return np.asarray(rows[0][VECTOR_FIELD], dtype=np.float32)


def test_changed_file_is_embedded_again_in_place(store: ImageCollection, embedder, photo_folder: Path) -> None:
    index_folder(photo_folder, store, embedder, progress=False)
    target = sorted(photo_folder.rglob("*.jpg"))[0]
    before = stored_vector(store, target)
    replacement = class_photos(2)[1]  # another photo of the same class
    shutil.copyfile(replacement, target)
    os.utime(target, ns=(target.stat().st_atime_ns, target.stat().st_mtime_ns + 10**9))
    report = index_folder(photo_folder, store, embedder, progress=False)
    assert (report.updated, report.added, report.unchanged, report.moved) == (1, 0, 9, 0)
    assert store.count() == 10
    assert np.abs(stored_vector(store, target) - before).max() > 1e-4


def test_prune_removes_rows_of_deleted_files(store: ImageCollection, embedder, photo_folder: Path) -> None:
    index_folder(photo_folder, store, embedder, progress=False)
    victim = sorted(photo_folder.rglob("*.jpg"))[3]
    victim.unlink()
    kept = index_folder(photo_folder, store, embedder, progress=False)
    assert kept.removed == 0 and store.count() == 10  # without prune nothing is deleted
    report = index_folder(photo_folder, store, embedder, progress=False, prune=True)
    assert (report.removed, report.unchanged, report.indexed) == (1, 9, 0)
    assert store.count() == 9
    assert store.existing_ids([path_id(stored_path(victim))]) == set()


def test_moved_folder_is_not_embedded_again(store: ImageCollection, embedder, photo_folder: Path) -> None:
    index_folder(photo_folder, store, embedder, progress=False)
    target = sorted(photo_folder.rglob("*.jpg"))[2]
    before = stored_vector(store, target)
    moved_root = photo_folder.parent / "renamed_photos"
    photo_folder.rename(moved_root)
    counting = CountingEmbedder(embedder)
    report = index_folder(moved_root, store, counting, progress=False)
    assert (report.moved, report.added, counting.seen) == (10, 0, 0)
    assert store.count() == 10
    new_path = moved_root / target.relative_to(photo_folder)
    np.testing.assert_allclose(stored_vector(store, new_path), before, atol=1e-6)
    from utilities.catalog import mapping_from_collection

    assert all(p.startswith(stored_path(moved_root)) for p in mapping_from_collection(store)["path"])


def _sealed_rows(store: ImageCollection) -> int:
    """Rows in sealed segments: a Milvus 2.3 server counts only those in its collection statistics."""
    return int(store.client.get_collection_stats(store.name)["row_count"])


def test_a_large_run_seals_its_rows_and_a_small_one_leaves_them_to_milvus(
    server_uri: str, collection_name: str, photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from utilities.indexing import pipeline

    mean_colour = _mean_colour()
    store = ImageCollection.open(server_uri, name=collection_name, dimension=3)
    try:
        monkeypatch.setattr(pipeline, "SEAL_AFTER_ROWS", 10)
        assert index_folder(photo_folder, store, mean_colour, progress=False).indexed == 10
        assert _sealed_rows(store) == 10  # searched with the collection's index from now on
        monkeypatch.setattr(pipeline, "SEAL_AFTER_ROWS", 1000)
        for source in class_photos(2)[1::2][:3]:
            shutil.copy2(source, photo_folder / source.name)
        assert index_folder(photo_folder, store, mean_colour, progress=False).indexed == 3
        assert _sealed_rows(store) == 10 and store.count() == 13  # written, visible, not sealed yet
    finally:
        store.drop()
        store.close()


def test_create_index_seals_the_rows_first(server_uri: str, collection_name: str) -> None:
    store = ImageCollection.open(server_uri, name=collection_name, dimension=8)
    try:
        store.insert([f"/seal/{i}.jpg" for i in range(50)], np.random.default_rng(7).random((50, 8), np.float32))
        assert _sealed_rows(store) == 0
        store.create_index("IVF_FLAT", nlist=4)
        assert _sealed_rows(store) == 50
    finally:
        store.drop()
        store.close()


def test_long_passes_show_progress(
    backend: str, collection_name: str, photo_folder: Path, capsys: pytest.CaptureFixture
) -> None:
    mean_colour = _mean_colour()
    store = ImageCollection.open(backend, name=collection_name, dimension=3)
    try:
        index_folder(photo_folder, store, mean_colour, progress=True, prune=True)
        shown = capsys.readouterr().err
        for step in ("indexing", "prune"):
            assert f"{step}: " in shown, f"no {step} progress bar in {shown!r}"
        # one bar for planning and indexing, with the files planned so far
        assert "planned=10/10" in shown
        # an empty collection holds no copies to look for: the files were hashed as they were written
        assert "hashing: " not in shown
        assert all(record.content_hash for page in store.iter_records() for record in page)
        shutil.copy2(class_photos(2)[1], photo_folder / "new.jpg")
        index_folder(photo_folder, store, mean_colour, progress=True)
        shown = capsys.readouterr().err
        assert "planned=11/11" in shown and "11/11 [" in shown, shown
    finally:
        store.drop()
        store.close()


def test_planning_reads_nothing_but_a_count_from_an_empty_collection(
    backend: str, collection_name: str, photo_folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from utilities.indexing import planning

    store = ImageCollection.open(backend, name=collection_name, dimension=3)
    try:
        files = sorted(str(p) for p in photo_folder.rglob("*.jpg"))
        lookups, read = [], store.file_stats
        monkeypatch.setattr(store, "file_stats", lambda ids, *rest: lookups.append(list(ids)) or read(ids, *rest))
        plan = planning.plan_run([stored_path(p) for p in files], store)
        assert (plan.stored_rows, plan.unchanged, plan.changed, lookups) == (0, 0, [], [])
        assert plan.new == [stored_path(p) for p in files]
        index_folder(photo_folder, store, _mean_colour(), progress=False)
        changed, unchanged = files[0], files[1:4]
        Path(changed).write_bytes(Path(changed).read_bytes() + b"\0")  # a new size
        new = photo_folder / "new.jpg"
        shutil.copy2(class_photos(2)[1], new)
        # steps of 2 files: 3 lookups, two of them in flight at a time, answers sorted in order
        monkeypatch.setattr(planning, "PLAN_FILES_PER_STEP", 2)
        planned = [stored_path(p) for p in [unchanged[0], changed, *unchanged[1:], str(new)]]
        plan = planning.plan_run(planned, store)
        assert [len(ids) for ids in lookups] == [2, 2, 1]
        assert plan.stored_rows == 10
        assert plan.new == [stored_path(new)]
        assert plan.changed == [stored_path(changed)]
        assert plan.unchanged == 3
        assert list(plan.stats) == planned
    finally:
        store.drop()
        store.close()
