"""A saved duplicate search belongs to one database and one collection as it is (issue #33): its files are
named after the Lite file, the state is not trusted once the collection was made again or indexed with
another model (even after a run that found nothing), dropping or resetting removes it, runs that check
less keep the report the web page shows, and `--plot` leaves no figure of an earlier run. Milvus Lite."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES, mean_colour_embedder
from tests.images_factory import edited_copy
from tests.test_duplicates import LOW_THRESHOLD, _outcome, library  # noqa: F401 - `library` is a fixture
from utilities.cli import main
from utilities.duplicates.figures import plot_report
from utilities.duplicates.finder import find_duplicates
from utilities.duplicates.report import DuplicateGroup, DuplicateReport
from utilities.embeddings import embedder_from_callable
from utilities.engine import ImageSearchEngine
from utilities.ids import stored_path
from utilities.milvus.collection import ImageCollection

CHECKED = {"threshold": 0.5, "neighbours": 5, "workers": 1}
"""Mean-colour vectors are near for most photos: the keypoint check decides."""


def noise_embedder():
    """2048-d vectors drawn at random from each image's pixels: a file and its byte copy alike, an edited
    copy as far from its source as any other photo."""

    def embed(batch: np.ndarray) -> np.ndarray:
        seeds = [int.from_bytes(hashlib.sha256(image.tobytes()).digest()[:8], "little") for image in batch]
        return np.stack([np.random.default_rng(seed).standard_normal(2048) for seed in seeds])

    return embedder_from_callable(embed, dimension=2048)


def copies(folder: Path, *names: str) -> Path:
    """`folder` with the samples `names`, a byte copy of the first (in `backup/`) and an edited copy of
    the second (in `edits/`)."""
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLES / name, folder / name)
    (folder / "backup").mkdir()
    shutil.copy2(SAMPLES / names[0], folder / "backup" / names[0])
    if len(names) > 1:
        edited_copy(SAMPLES / names[1], folder / "edits" / names[1], seed=5)
    return folder


def engine_on(uri: Path, embedder=None) -> ImageSearchEngine:
    return ImageSearchEngine(
        uri=str(uri), collection_name="images", embedder=embedder or mean_colour_embedder(), progress=False
    )


def shown_on_the_page(engine: ImageSearchEngine) -> dict:
    """What the web page's Duplicates view answers for the database and collection `engine` serves."""
    from utilities.web.app import SearchService

    return SearchService(engine).duplicates(limit=100)


def saved_files(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.glob("*.duplicates*"))


def test_two_lite_files_in_one_folder_keep_their_own_searches(tmp_path: Path) -> None:
    first_photos = copies(tmp_path / "first", "coffee.jpg")
    second_photos = copies(tmp_path / "second", "cat.jpg", "rocket.jpg")
    databases = tmp_path / "db"
    first, second = databases / "photos.db", databases / "photos-dims256.db"
    with engine_on(first) as engine:
        engine.index_folder(first_photos)
        found_first = engine.find_duplicates(**CHECKED)
    with engine_on(second) as engine:
        engine.index_folder(second_photos)
        found_second = engine.find_duplicates(**CHECKED)
    assert [sorted(group.files) for group in found_first.groups] == [
        sorted(stored_path(p) for p in (first_photos / "coffee.jpg", first_photos / "backup" / "coffee.jpg"))
    ]
    assert sorted(sorted(group.files) for group in found_second.groups) == sorted(
        sorted(stored_path(second_photos / p) for p in pair)
        for pair in (("cat.jpg", "backup/cat.jpg"), ("rocket.jpg", "edits/rocket.jpg"))
    )
    assert saved_files(databases) == [
        "photos-dims256.images.duplicates.json",
        "photos-dims256.images.duplicates.state.npz",
        "photos.images.duplicates.json",
        "photos.images.duplicates.state.npz",
    ]
    with engine_on(first) as engine:
        again = engine.find_duplicates(**CHECKED)  # from its own state, not the other file's
        assert again.incremental and again.changed == 0 and again.searched == 0
        page = shown_on_the_page(engine)
        assert page["rows"] == 2 and page["total_groups"] == 1 and page["groups"][0]["exact"]
    with engine_on(second) as engine:
        page = shown_on_the_page(engine)
        assert page["rows"] == 4 and page["total_groups"] == 2
        shown = {file["path"] for group in page["groups"] for file in group["files"]}
        assert stored_path(second_photos / "edits" / "rocket.jpg") in shown


@pytest.mark.parametrize("how", ["rows deleted", "collection dropped"])
def test_files_indexed_again_with_another_model_are_searched_again(
    tmp_path: Path,
    embedder,
    library,  # noqa: F811 - the fixture imported above
    how: str,
) -> None:
    """The same files, ids and content hashes, other vectors: a state made on the first ones (which found
    only the byte copies: the probe is recorded whatever a run finds) is not used."""
    uri, settings = tmp_path / "db" / "photos.db", {"threshold": LOW_THRESHOLD, "neighbours": 13, "workers": 1}
    with engine_on(uri, noise_embedder()) as engine:
        engine.index_folder(library["root"][0])
        first = engine.find_duplicates(**settings)
        assert len(first.groups) == 2 and all(group.exact for group in first.groups)
        store = engine.store
        if how == "rows deleted":
            store.delete([record.id for page in store.iter_records() for record in page])
        else:  # by another program: the engine does not know, and the saved search stays
            store.drop()
        saved = engine.duplicates_state_path
    assert saved.is_file()
    with engine_on(uri, embedder) as engine:
        assert engine.index_folder(library["root"][0]).added == 14
        again = engine.find_duplicates(**settings)
    assert not again.incremental and again.searched == 14
    assert len(again.groups) == 6 and not any(group.exact for group in again.groups)


def test_a_run_that_found_nothing_still_notices_new_vectors(tmp_path: Path) -> None:
    store = ImageCollection.open(str(tmp_path / "vectors.db"), name="vectors", dimension=64)
    rng = np.random.default_rng(3)
    paths, hashes = [f"/lib/{n:02d}.jpg" for n in range(40)], [f"h{n}" for n in range(40)]
    store.insert(paths, rng.standard_normal((40, 64)).astype(np.float32), hashes=hashes)
    state, settings = tmp_path / "state.npz", {"threshold": 0.9, "neighbours": 5, "verify": False}
    first = find_duplicates(store, state_path=state, **settings)
    assert first.groups == [] and first.pairs == [] and state.is_file()
    centres = rng.standard_normal((4, 64)).astype(np.float32)
    clustered = centres[np.arange(40) % 4] + 0.05 * rng.standard_normal((40, 64)).astype(np.float32)
    store.insert(paths, clustered, hashes=hashes)  # the same files indexed again with another model
    again = find_duplicates(store, state_path=state, **settings)
    full = find_duplicates(store, state_path=tmp_path / "full.npz", full=True, **settings)
    assert not again.incremental and again.searched == 40
    assert len(again.groups) == 4 and _outcome(again) == _outcome(full)
    store.drop()
    store.close()


def test_drop_reset_and_the_cli_drop_remove_the_saved_searches(tmp_path: Path) -> None:
    photos, databases = copies(tmp_path / "photos", "coffee.jpg"), tmp_path / "db"
    uri = databases / "photos.db"
    every = ["photos.images.duplicates.exact.json", "photos.images.duplicates.json"]
    every += ["photos.images.duplicates.state.npz", "photos.images.duplicates.unchecked.json"]
    with engine_on(uri) as engine:
        for undo in (engine.drop, lambda: engine.create_collection(reset=True)):
            engine.index_folder(photos)
            engine.find_duplicates(**CHECKED)
            engine.find_duplicates(exact_only=True)
            engine.find_duplicates(threshold=0.5, verify=False)
            assert saved_files(databases) == every
            undo()
            assert saved_files(databases) == []
        engine.index_folder(photos)
        engine.find_duplicates(**CHECKED)
    assert main(["drop", "--uri", str(uri), "--collection", "images", "--yes"]) == 0
    assert saved_files(databases) == []


def test_exact_only_and_unchecked_runs_keep_the_report_the_page_shows(tmp_path: Path) -> None:
    photos = copies(tmp_path / "photos", "coffee.jpg", "rocket.jpg")
    with engine_on(tmp_path / "db" / "photos.db") as engine:
        engine.index_folder(photos)
        checked = engine.find_duplicates(**CHECKED)
        assert len(checked.groups) == 2
        shown = engine.duplicates_path.read_text()
        exact = engine.find_duplicates(exact_only=True)
        unchecked = engine.find_duplicates(threshold=0.5, verify=False)
        assert engine.duplicates_path.read_text() == shown
        assert len(exact.groups) == 1 and unchecked.pairs and not unchecked.verified
        saved_exact = json.loads(engine.duplicates_report_path(exact_only=True).read_text())
        assert saved_exact["threshold"] is None and len(saved_exact["groups"]) == 1
        assert json.loads(engine.duplicates_report_path(verify=False).read_text())["verified"] is False
        page = shown_on_the_page(engine)
        assert page["total_groups"] == 2 and page["verified"] and page["threshold"] == 0.5
        engine.duplicates_path.unlink()
        assert shown_on_the_page(engine)["total_groups"] == 1  # no checked search: the exact copies


def test_the_page_shows_no_search_of_a_collection_dropped_since(tmp_path: Path) -> None:
    photos, uri = copies(tmp_path / "photos", "coffee.jpg"), tmp_path / "db" / "photos.db"
    with engine_on(uri) as engine:
        engine.index_folder(photos)
        engine.find_duplicates(**CHECKED)
        assert shown_on_the_page(engine)["total_groups"] == 1
        engine.store.drop()  # by another program: the saved search stays
    with engine_on(uri) as engine:
        engine.index_folder(photos)  # the same files, in a collection made again
        assert engine.duplicates_path.is_file()
        with pytest.raises(FileNotFoundError, match="dropped or indexed again"):
            shown_on_the_page(engine)


def test_a_state_under_the_old_name_is_not_used(tmp_path: Path) -> None:
    photos, databases = copies(tmp_path / "photos", "coffee.jpg"), tmp_path / "db"
    with engine_on(databases / "photos.db") as engine:
        engine.index_folder(photos)
        engine.find_duplicates(**CHECKED)
        engine.duplicates_state_path.replace(databases / "images.duplicates.state.npz")  # as earlier versions named it
        again = engine.find_duplicates(**CHECKED)
    assert not again.incremental and again.searched == 2


def test_plot_leaves_no_figure_of_the_last_run(tmp_path: Path) -> None:
    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "group_of_friends.png").write_bytes(b"mine too")
    samples = [str(SAMPLES / name) for name in ("cat.jpg", "coffee.jpg", "rocket.jpg", "camera.jpg")]
    groups = [DuplicateGroup([a, b], a, [b], exact=False) for a, b in zip(samples, samples[1:], strict=False)]
    plot_report(DuplicateReport("c", groups=groups, nearest=[0.5, 0.9]), folder)
    assert len(list(folder.glob("group_0*.png"))) == 3 and (folder / "nearest.png").is_file()
    written = plot_report(DuplicateReport("c", groups=groups[:1]), folder)
    assert [path.name for path in written] == ["group_0001.png"]
    assert sorted(path.name for path in folder.iterdir()) == [
        ".duplicates-figures.json",  # what it wrote: the only files it removes next time
        "group_0001.png",
        "group_of_friends.png",
        "notes.txt",
    ]
