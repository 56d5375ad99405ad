"""The map of a collection: positions from stored vectors (synthetic, well-separated clusters under class
folders: the map reads only the stored vectors), kept with the collection and updated for new rows; the
API, the CLI, and the Map view in headless Chromium."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image

from tests.conftest import headless_chromium, serve_in_thread
from utilities.cli import main
from utilities.collection_map import CollectionMap, map_collection
from utilities.collection_map import layout as map_layout
from utilities.collection_map.saved import load_map, map_path
from utilities.duplicates.provenance import Source
from utilities.embeddings import embedder_from_callable
from utilities.engine import ImageSearchEngine

CLASSES = ("cat", "dog", "fish", "owl")
PER_CLASS = 40
DIMENSION = 16


def _vector_engine(uri: str, name: str) -> ImageSearchEngine:
    """An engine that stores `DIMENSION`-d vectors (its model only runs on the web server's warm-up image)."""
    model = embedder_from_callable(lambda batch: batch.reshape(len(batch), -1)[:, :DIMENSION], dimension=DIMENSION)
    return ImageSearchEngine(uri, collection_name=name, embedder=model, progress=False)


def _cluster(
    folder: Path, number: int, count: int, rng: np.random.Generator, prefix: str = ""
) -> tuple[list, np.ndarray]:
    """`count` paths under class folder `CLASSES[number]` and vectors around that class's centre."""
    name = CLASSES[number]
    paths = [f"{folder}/data/{name}/{prefix}{name}_{n:03d}.jpg" for n in range(count)]
    centre = np.eye(DIMENSION, dtype=np.float32)[number] * 10
    return paths, (centre + rng.normal(scale=0.5, size=(count, DIMENSION))).astype(np.float32)


@pytest.fixture
def clusters(tmp_path: Path, backend: str, collection_name: str) -> Iterator[ImageSearchEngine]:
    """Four well-separated classes of `PER_CLASS` stored vectors each (no files), on Lite and on the server."""
    rng = np.random.default_rng(11)
    parts = [_cluster(tmp_path, number, PER_CLASS, rng) for number in range(len(CLASSES))]
    engine = _vector_engine(backend, collection_name)
    engine.insert_vectors([p for paths, _ in parts for p in paths], np.vstack([v for _, v in parts]))
    yield engine
    engine.drop()
    engine.close()


def _agreement(found: CollectionMap, neighbours: int = 10) -> float:
    """Share of each row's `neighbours` nearest rows in 2-D that have its class."""
    points = np.column_stack([found.x, found.y]).astype(np.float64)
    squared = ((points[:, None, :] - points[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(squared, np.inf)
    nearest = np.argsort(squared, axis=1)[:, :neighbours]
    classes = found.class_index
    return float((classes[nearest] == classes[:, None]).mean())


def test_every_row_gets_a_position_and_the_classes_stay_apart(clusters: ImageSearchEngine) -> None:
    found = map_collection(clusters, progress=False)
    assert (len(found), found.method, found.refitted) == (len(CLASSES) * PER_CLASS, "umap", True)
    assert np.isfinite(found.x).all() and np.isfinite(found.y).all()
    assert found.class_names == list(CLASSES)
    assert sorted(np.bincount(found.class_index).tolist()) == [PER_CLASS] * len(CLASSES)
    assert _agreement(found) >= 0.9


def test_rows_added_later_are_placed_without_moving_the_others(clusters: ImageSearchEngine, tmp_path: Path) -> None:
    before = map_collection(clusters, progress=False)
    paths, vectors = _cluster(tmp_path, 2, 6, np.random.default_rng(5), prefix="new_")
    clusters.insert_vectors(paths, vectors)
    after = map_collection(clusters, progress=False)
    assert (after.refitted, after.placed, len(after), after.fitted_on) == (False, 6, len(before) + 6, len(before))
    position = {row: (x, y) for row, x, y in zip(after.ids.tolist(), after.x.tolist(), after.y.tolist(), strict=True)}
    assert all(
        position[row] == (x, y)
        for row, x, y in zip(before.ids.tolist(), before.x.tolist(), before.y.tolist(), strict=True)
    )
    fish = np.asarray([c == "fish" for c in before.classes])
    centre = np.array([before.x[fish].mean(), before.y[fish].mean()])
    spread = np.hypot(before.x[fish] - centre[0], before.y[fish] - centre[1]).max()
    new = np.asarray([path.split("/")[-1].startswith("new_") for path in after.paths])
    assert new.sum() == 6 and (np.hypot(after.x[new] - centre[0], after.y[new] - centre[1]) <= spread).all()
    again = map_collection(clusters, progress=False)  # nothing new: the saved map as it is
    assert (again.refitted, again.placed) == (False, 0) and np.array_equal(again.x, after.x)


def test_rows_deleted_since_leave_the_map_and_the_others_stay(clusters: ImageSearchEngine) -> None:
    before = map_collection(clusters, method="pca", progress=False)
    gone = before.ids[:5].tolist()
    clusters.open_existing().delete(gone)
    after = map_collection(clusters, method="pca", progress=False)
    assert (len(after), after.placed, after.refitted) == (len(before) - 5, 0, False)
    assert np.array_equal(after.x, before.x[5:]) and not set(gone) & set(after.ids.tolist())


def test_the_pca_matches_the_projection_class_fit_up_to_sign() -> None:
    from utilities.projection import Projection

    vectors = np.random.default_rng(2).standard_normal((300, 24)) * np.linspace(5, 0.1, 24)
    fast, reference = map_layout.fit_pca(vectors, 5), Projection.fit(vectors, 5)
    assert np.allclose(np.abs(fast.components @ reference.components.T), np.eye(5), atol=1e-4)
    assert abs(fast.explained - reference.explained) < 1e-5


def test_full_fits_the_layout_again_on_every_row(clusters: ImageSearchEngine, tmp_path: Path) -> None:
    map_collection(clusters, method="pca", progress=False)
    paths, vectors = _cluster(tmp_path, 0, 5, np.random.default_rng(6), prefix="more_")
    clusters.insert_vectors(paths, vectors)
    found = map_collection(clusters, method="pca", full=True, progress=False)
    assert (found.refitted, found.placed, found.fitted_on, len(found)) == (True, 0, len(found), 165)


def test_a_smaller_sample_fits_the_layout_and_places_the_rest(clusters: ImageSearchEngine) -> None:
    found = map_collection(clusters, sample=60, progress=False)
    assert (found.fitted_on, len(found), found.refitted) == (60, 160, True)
    assert np.isfinite(found.x).all() and _agreement(found) >= 0.9


def test_the_saved_map_belongs_to_its_database_and_collection(
    clusters: ImageSearchEngine, backend: str, collection_name: str
) -> None:
    map_collection(clusters, method="pca", progress=False)
    store = clusters.open_existing()
    saved = map_path(store.target, store.name)
    assert saved.is_file() and load_map(saved, Source.of(store), store) is not None
    other = _vector_engine(backend, collection_name + "_other")
    try:
        other.insert_vectors(["/elsewhere/cat/a.jpg"] * 1, np.ones((1, DIMENSION), dtype=np.float32))
        other_store = other.open_existing()
        assert map_path(other_store.target, other_store.name) != saved
        assert load_map(saved, Source.of(other_store), other_store) is None  # another collection's map is not read
        assert len(map_collection(other, method="pca", progress=False)) == 1
    finally:
        other.drop()
        other.close()


def test_pca_is_used_when_umap_is_not_installed(
    clusters: ImageSearchEngine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(map_layout, "umap_installed", lambda: False)
    with caplog.at_level(logging.WARNING, logger="utilities.collection_map.layout"):
        found = map_collection(clusters, method="umap", progress=False)
    assert found.method == "pca" and "pip install '.[map]'" in caplog.text
    assert len(found) == 160 and _agreement(found) >= 0.9


def test_the_cli_writes_the_positions_and_a_plot(
    clusters: ImageSearchEngine, backend: str, tmp_path: Path, capsys
) -> None:
    store = clusters.open_existing()
    common = ["map", "--uri", backend, "--collection", store.name, "--method", "pca"]
    clusters.close()
    out, picture = tmp_path / "map.json", tmp_path / "map.png"
    assert main([*common, "--json", str(out), "--plot", str(picture)]) == 0
    assert "160 rows mapped by PCA" in capsys.readouterr().out
    written = json.loads(out.read_text())
    assert len(written["ids"]) == len(written["x"]) == len(written["y"]) == len(written["class"]) == 160
    assert written["classes"] == list(CLASSES) and written["method"] == "pca"
    with Image.open(picture) as image:
        assert image.format == "PNG" and min(image.size) >= 400
        assert len(image.convert("RGB").getcolors(1 << 16) or []) > 5  # the classes' colours, not a blank page


@pytest.fixture
def map_server(clusters: ImageSearchEngine) -> Iterator[str]:
    """The web app over the clusters, in a thread of this process."""
    from utilities.web.app import create_app

    url, server, thread = serve_in_thread(create_app(clusters))
    yield url
    server.should_exit = True
    thread.join(timeout=10)


def test_the_api_serves_the_saved_map_as_parallel_arrays(clusters: ImageSearchEngine, map_server: str) -> None:
    missing = requests.get(map_server + "/api/map", timeout=30)
    assert missing.status_code == 404 and "python -m utilities map" in missing.json()["detail"]
    found = map_collection(clusters, method="pca", progress=False)
    answer = requests.get(map_server + "/api/map", timeout=30).json()
    assert answer["ids"] == [str(row) for row in found.ids.tolist()] and answer["classes"] == list(CLASSES)
    assert len(answer["x"]) == len(answer["y"]) == len(answer["class"]) == 160 and set(answer["class"]) == {0, 1, 2, 3}
    assert abs(answer["x"][7] - float(found.x[7])) < 1e-3
    assert "/api/map" in requests.get(map_server + "/openapi.json", timeout=30).json()["paths"]


def test_the_map_view_in_headless_chromium(clusters: ImageSearchEngine, map_server: str) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    found = map_collection(clusters, method="pca", progress=False)
    clusters.audit(check_quality=False, verify=False)  # its outliers: the rows farthest from their centres
    with headless_chromium(1000, 760) as driver:
        wait = WebDriverWait(driver, 30)
        driver.get(map_server + "/map")
        wait.until(lambda d: int(d.find_element(By.TAG_NAME, "body").get_attribute("data-drawn") or 0) > 0)
        assert int(driver.find_element(By.TAG_NAME, "body").get_attribute("data-drawn")) == len(found)
        painted = driver.execute_script(
            "const c = document.getElementById('map'); const d = c.getContext('2d').getImageData(0, 0, c.width, "
            "c.height).data; let n = 0; for (let i = 0; i < d.length; i += 4) if (d[i] !== 255 || d[i + 1] !== 255 "
            "|| d[i + 2] !== 255) n++; return n;"
        )
        assert painted >= len(found)  # every point is at least one pixel off the white background
        x, y = driver.execute_script("return window.mapView.screenOf(3)")
        ActionChains(driver).move_to_element_with_offset(driver.find_element(By.TAG_NAME, "body"), 0, 0).perform()
        body = driver.find_element(By.TAG_NAME, "body").rect
        ActionChains(driver).move_by_offset(round(x - body["width"] / 2), round(y - body["height"] / 2)).perform()
        thumb = wait.until(
            lambda d: d.find_element(By.ID, "map-thumb") if d.find_element(By.ID, "map-thumb").is_displayed() else None
        )
        assert thumb.get_attribute("src").endswith(f"/api/rows/{found.ids[3]}/thumbnail")
        ActionChains(driver).click().perform()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-neighbours") == "10")
        shown = [
            item.get_attribute("data-id") for item in driver.find_elements(By.CSS_SELECTOR, "#neighbours .neighbour")
        ]
        assert shown[0] == str(found.ids[3]) and len(shown) == 10
        same = {
            str(row) for row, name in zip(found.ids.tolist(), found.classes, strict=True) if name == found.classes[3]
        }
        assert set(shown) <= same  # its neighbours are of its class

        outliers = wait.until(lambda d: d.find_element(By.ID, "highlight-outliers"))
        copies = driver.find_element(By.ID, "highlight-duplicates")
        assert not copies.is_enabled() and "python -m utilities duplicates" in copies.find_element(
            By.XPATH, ".."
        ).get_attribute("title")  # no duplicate search saved: greyed, saying what to run
        expected = len(requests.get(map_server + "/api/map/highlights", timeout=30).json()["lists"]["outliers"])
        assert expected > 0 and driver.find_element(By.TAG_NAME, "body").get_attribute("data-highlighted") == "0"
        outliers.click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-highlighted") == str(expected))
        outliers.click()
        wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-highlighted") == "0")


def test_the_engine_maps_and_dropping_the_collection_forgets_its_map(clusters: ImageSearchEngine) -> None:
    found = clusters.map(method="pca")
    assert (len(found), found.method) == (len(CLASSES) * PER_CLASS, "pca")
    assert clusters.map_path.is_file() and clusters.map_path == map_path(clusters.target, clusters.collection_name)
    clusters.drop()
    assert not clusters.map_path.exists()  # a map of the dropped rows is not left behind


def test_dropping_through_the_cli_removes_the_saved_map_and_audit(
    clusters: ImageSearchEngine, backend: str, collection_name: str
) -> None:
    clusters.map(method="pca")
    clusters.audit(check_quality=False, verify=False)
    saved = [clusters.map_path, clusters.audit_path]
    assert all(path.is_file() for path in saved)
    clusters.close()  # the Lite file is held by one connection at a time
    assert main(["drop", "--yes", "--uri", backend, "--collection", collection_name]) == 0
    assert not any(path.exists() for path in saved)
