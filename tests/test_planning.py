"""Planning in steps, in a thread ahead of decoding (`utilities.indexing.planning`, `indexing.pipeline.index_paths`)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import class_photos
from tests.conftest import mean_colour_embedder as _mean_colour
from utilities.errors import MilvusUnavailableError
from utilities.indexing import planning
from utilities.indexing.pipeline import index_folder
from utilities.milvus.collection import ImageCollection


def _distinct_photos(folder: Path, count: int) -> list[Path]:
    """`count` small JPEGs of distinct random pixels (no two the same content)."""
    rng = np.random.default_rng(11)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number in range(count):
        path = folder / f"generated_{number:03d}.jpg"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


@pytest.fixture
def indexed(backend: str, collection_name: str, tmp_path: Path):
    """A collection holding 4 photos of a folder, and 60 new files added to that folder since."""
    folder = tmp_path / "photos"
    for source in class_photos(1)[:4]:
        (folder / "old").mkdir(parents=True, exist_ok=True)
        (folder / "old" / source.name).write_bytes(source.read_bytes())
    store = ImageCollection.open(backend, name=collection_name, dimension=3)
    index_folder(folder, store, _mean_colour(), progress=False)
    _distinct_photos(folder / "new", 60)
    try:
        yield folder, store
    finally:
        store.drop()
        store.close()


def test_decoding_starts_while_later_steps_are_still_being_planned(indexed, monkeypatch: pytest.MonkeyPatch) -> None:
    folder, store = indexed
    monkeypatch.setattr(planning, "PLAN_FILES_PER_STEP", 4)
    monkeypatch.setattr(planning, "COPY_LOOKUP_FILES", 4)
    embedded = threading.Event()
    lookups: list[bool] = []
    read = store.file_stats

    def late_lookups_wait_for_the_model(ids, *rest):
        # the 12th lookup onwards (of 16) waits until the model has embedded a batch: with
        # planning done before decoding, it would wait for nothing and time out
        if len(lookups) >= 11:
            lookups.append(embedded.wait(30))
        else:
            lookups.append(True)
        return read(ids, *rest)

    monkeypatch.setattr(store, "file_stats", late_lookups_wait_for_the_model)
    report = index_folder(folder, store, _mean_colour(on_batch=embedded.set), batch_size=4, progress=False)
    assert len(lookups) == 16
    assert all(lookups), "planning waited for decoding to start: it did not run ahead of it"
    assert (report.added, report.unchanged, report.updated, report.failed) == (60, 4, 0, [])
    assert store.count() == 64


def test_a_failed_lookup_stops_the_run_and_a_re_run_finishes_it_without_duplicates(
    indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, store = indexed
    monkeypatch.setattr(planning, "PLAN_FILES_PER_STEP", 4)
    monkeypatch.setattr(planning, "COPY_LOOKUP_FILES", 4)
    calls: list[int] = []
    read = store.file_stats

    def fails_at_the_sixth(ids, *rest):
        calls.append(len(ids))
        if len(calls) == 6:
            raise MilvusUnavailableError("server gone (test)")
        return read(ids, *rest)

    monkeypatch.setattr(store, "file_stats", fails_at_the_sixth)
    with pytest.raises(MilvusUnavailableError, match="server gone"):
        index_folder(folder, store, _mean_colour(), batch_size=4, progress=False)
    monkeypatch.undo()
    written = store.count()
    assert 4 <= written < 64
    report = index_folder(folder, store, _mean_colour(), batch_size=4, progress=False)
    assert report.added + report.unchanged == 64
    assert report.unchanged == written
    assert store.count() == 64


def test_new_files_scattered_over_many_steps_are_looked_up_by_content_once(
    indexed, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, store = indexed
    monkeypatch.setattr(planning, "PLAN_FILES_PER_STEP", 4)
    by_hash: list[int] = []
    read = store.records_by_hash
    monkeypatch.setattr(
        store, "records_by_hash", lambda hashes, *rest: by_hash.append(len(hashes)) or read(hashes, *rest)
    )
    # one of the new files is a copy of a stored photo: it gets that photo's vector, not the model's
    copy = folder / "new" / "copy.jpg"
    copy.write_bytes(class_photos(1)[0].read_bytes())
    seen: list[int] = []
    report = index_folder(folder, store, _mean_colour(on_batch=lambda: seen.append(1)), batch_size=4, progress=False)
    assert by_hash == [61]
    assert (report.added, report.unchanged) == (61, 4)
    assert len(seen) == 15  # 60 files embedded in batches of 4; the copy was not
