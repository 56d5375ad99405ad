from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utilities.catalog import load_mapping
from utilities.engine import ImageSearchEngine
from utilities.ids import stored_path


def test_end_to_end_with_the_facade(
    backend: str, collection_name: str, embedder, photo_folder: Path, tmp_path: Path
) -> None:
    engine = ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder, progress=False)
    engine.create_collection(reset=True)
    try:
        assert engine.embed_image(next(photo_folder.rglob("*.jpg"))).shape == (2048,)
        report = engine.index_folder(photo_folder)
        assert report.indexed == 10 and engine.count() == 10
        mapping = load_mapping(engine.mapping_path)
        assert len(mapping) == 10 and set(mapping["path"]) == {stored_path(p) for p in photo_folder.rglob("*.jpg")}
        precomputed = np.random.default_rng(1).random((3, 2048), dtype=np.float32)
        engine.insert_vectors([f"/precomputed/{i}.jpg" for i in range(3)], precomputed)
        engine.insert_vectors([f"/precomputed/{i}.jpg" for i in range(3)], precomputed)
        assert engine.count() == 13
        query = sorted(photo_folder.rglob("*.jpg"))[5]
        results = engine.search(query, top_k=3)
        assert results.loc[0, "path"] == stored_path(query)
        copied = engine.copy_results(results, tmp_path / "nearest")
        assert copied[0].read_bytes() == query.read_bytes()
        figure = engine.plot(query, results, outfile=tmp_path / "plot.png")
        assert (
            tmp_path / "plot.png"
        ).stat().st_size > 1000 and figure._suptitle.get_text() == "ResNet50, random weights (seed 0)"
    finally:
        assert engine.drop() is True
        engine.close()
        engine.mapping_path.unlink(missing_ok=True)


def test_failures_are_written_beside_the_mapping(tmp_path: Path, embedder) -> None:
    from tests.images_factory import make_bad_files

    folder = tmp_path / "mixed"
    make_bad_files(folder)
    with ImageSearchEngine(uri=str(tmp_path / "m.db"), collection_name="mixed", embedder=embedder) as engine:
        engine.progress = False
        report = engine.index_folder(folder)
        assert report.indexed == 0 and len(report.failed) == 6
        lines = engine.failures_path.read_text(encoding="utf-8").splitlines()
        assert lines[0] == "path,reason" and len(lines) == 7
        assert engine.failures_path.parent == engine.mapping_path.parent


def test_second_process_indexing_a_busy_lite_file_gets_a_clear_error_and_corrupts_nothing(
    tmp_path: Path, photo_folder: Path
) -> None:
    import numpy as np

    from tests.conftest import run_cli
    from utilities.milvus.collection import ImageCollection

    uri = str(tmp_path / "busy.db")
    holder = ImageCollection.open(uri, name="busy", dimension=2048)
    vectors = np.random.default_rng(1).random((3, 2048), dtype=np.float32)
    holder.insert(["/busy/a.jpg", "/busy/b.jpg", "/busy/c.jpg"], vectors)
    try:
        done = run_cli("index", str(photo_folder), "--uri", uri, "--collection", "busy", "--weights", "none")
        assert done.returncode == 1
        assert done.stderr.strip().count("\n") == 0, done.stderr
        assert "cannot open Milvus Lite file" in done.stderr and "another process has it open" in done.stderr
        assert holder.count() == 3  # the first process still works
    finally:
        holder.close()
    reopened = ImageCollection.open(uri, name="busy", dimension=2048)  # and the file is intact
    try:
        assert reopened.count() == 3
        assert reopened.search(vectors[1:2], top_k=1)[0][0]["entity"]["path"] == "/busy/b.jpg"
    finally:
        reopened.close()


def test_metric_is_honoured_for_a_new_collection_and_checked_on_an_existing_one(
    backend: str, collection_name: str, embedder
) -> None:
    from utilities.errors import CollectionMismatchError

    with ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder, metric="L2") as engine:
        engine.insert_vectors(["/l2/a.jpg"], np.ones((1, 2048), np.float32))
        assert engine.store.metric == "L2"
        try:
            with ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder) as default:
                assert default.count() == 1  # no metric given: the existing one is used
            if backend.endswith(".db"):
                engine.close()  # a Lite file serves one connection at a time in this test
            with pytest.raises(CollectionMismatchError, match="metric L2, not COSINE"):
                ImageSearchEngine(
                    uri=backend, collection_name=collection_name, embedder=embedder, metric="cosine"
                ).count()
        finally:
            assert engine.drop() is True


def test_reading_never_creates_a_collection(backend: str, collection_name: str, embedder, photo_folder: Path) -> None:
    from utilities.errors import CollectionNotFoundError
    from utilities.milvus.collection import ImageCollection

    with ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder, progress=False) as engine:
        query = next(photo_folder.rglob("*.jpg"))
        for read in (engine.count, engine.mapping, lambda: engine.search(query), lambda: engine.create_index("FLAT")):
            with pytest.raises(CollectionNotFoundError, match="index a folder first"):
                read()
        assert engine.drop() is False
    store = ImageCollection.open(backend, name=f"{collection_name}_probe", dimension=4)
    try:
        assert collection_name not in store.client.list_collections()
    finally:
        store.drop()
        store.close()


def test_engine_closes_drops_and_reopens(tmp_path: Path, embedder, photo_folder: Path) -> None:
    uri = str(tmp_path / "cycle.db")
    with ImageSearchEngine(uri=uri, collection_name="cycle", embedder=embedder, progress=False) as engine:
        assert engine.index_folder(photo_folder).indexed == 10
    with ImageSearchEngine(uri=uri, collection_name="cycle", embedder=embedder, progress=False) as again:
        assert again.count() == 10  # the first one let go of the Lite file
        assert again.drop() is True
        with pytest.raises(Exception, match="index a folder first"):
            again.count()
        assert again.index_folder(photo_folder).indexed == 10  # writing creates it anew
        assert again.count() == 10


def test_a_run_that_changes_nothing_leaves_the_mapping_file_alone(tmp_path: Path, embedder, photo_folder: Path) -> None:
    with ImageSearchEngine(uri=str(tmp_path / "m.db"), collection_name="keep", embedder=embedder) as engine:
        engine.progress = False
        engine.index_folder(photo_folder)
        written = engine.mapping_path.stat().st_mtime_ns
        assert engine.index_folder(photo_folder).indexed == 0
        assert engine.mapping_path.stat().st_mtime_ns == written  # not rewritten
        engine.mapping_path.unlink()
        engine.index_folder(photo_folder)
        assert len(load_mapping(engine.mapping_path)) == 10  # a missing file is written again


def test_a_run_patches_the_mapping_file_with_its_rows_and_rebuilds_a_stale_one(
    backend: str, collection_name: str, embedder, photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    from utilities import catalog

    reads: list[int] = []
    read_all = catalog.mapping_from_collection
    monkeypatch.setattr(catalog, "mapping_from_collection", lambda *a, **k: reads.append(1) or read_all(*a, **k))
    engine = ImageSearchEngine(uri=backend, collection_name=collection_name, embedder=embedder, progress=False)
    engine.create_collection(reset=True)
    try:
        engine.index_folder(photo_folder)
        assert reads == []  # a first run into an empty collection: its own rows are the mapping
        photos = sorted(photo_folder.rglob("*.jpg"))
        shutil.copy2(photos[0], photo_folder / "copy.jpg")  # a copy: the stored vector, a new row
        photos[1].rename(photo_folder / "moved.jpg")  # moved: the old row goes, a new one comes
        photos[2].write_bytes(photos[2].read_bytes() + b"\0")  # changed: the row is replaced
        photos[3].unlink()  # gone: pruned
        report = engine.index_folder(photo_folder, prune=True)
        assert (report.added, report.moved, report.updated, report.removed) == (1, 1, 1, 1)
        assert reads == []
        check = catalog.verify_mapping(engine.store, engine.mapping_path)
        assert check.consistent and check.rows == 10, check
        saved = load_mapping(engine.mapping_path)
        assert saved.to_dict("list") == read_all(engine.store).to_dict("list")
        # a file missing rows (written by another process, say) is rebuilt from the collection
        reads.clear()  # verify_mapping read it
        lines = engine.mapping_path.read_text(encoding="utf-8").splitlines()
        engine.mapping_path.write_text("\n".join(lines[:-2]) + "\n", encoding="utf-8")
        shutil.copy2(photos[4], photo_folder / "another copy.jpg")
        engine.index_folder(photo_folder)
        assert reads == [1]
        assert catalog.verify_mapping(engine.store, engine.mapping_path).consistent
    finally:
        engine.drop()
        engine.close()
        engine.mapping_path.unlink(missing_ok=True)
