"""Reduced vectors (`dims`): the projection fitted once, stored in Milvus, applied by every engine that
opens the collection, and a different `dims` refused."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PHOTOS
from utilities.engine import ImageSearchEngine
from utilities.errors import CollectionMismatchError
from utilities.ids import path_id, stored_path
from utilities.images.decoding import decode_for_model
from utilities.milvus.projection_store import load_projection, projection_name
from utilities.projection import Projection


def test_the_projection_keeps_the_directions_of_largest_variance() -> None:
    rng = np.random.default_rng(0)
    data = rng.standard_normal((500, 6)) * np.array([5.0, 3.0, 1.0, 0.1, 0.1, 0.1]) + 7.0
    projection = Projection.fit(data, 2)
    assert projection.dims == 2 and projection.source_dimension == 6 and projection.fitted_on == 500
    assert np.allclose(projection.mean, 7.0, atol=0.5)
    assert np.allclose(np.abs(projection.components[:, :2]), np.eye(2), atol=0.05)
    assert projection.explained > 0.95
    projected = projection.apply(data)
    assert projected.shape == (500, 2) and projected.dtype == np.float32
    assert abs(float(projected[:, 0].std()) - 5.0) < 0.5
    with pytest.raises(ValueError, match="needs more than 2 images, got 2"):
        Projection.fit(data[:2], 2)
    with pytest.raises(ValueError, match="dims must be between 1 and 5"):
        Projection.fit(data, 6)
    with pytest.raises(ValueError, match="takes 6-d vectors, got 4-d"):
        projection.apply(np.zeros((1, 4)))


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    """24 of the committed photos."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for photo in sorted(PHOTOS.rglob("*.jpg"))[:24]:
        shutil.copy2(photo, folder / photo.name)
    return folder


def test_the_projection_is_stored_in_milvus_and_applied_by_a_second_engine(
    backend: str, collection_name: str, embedder, photos: Path
) -> None:
    options = {"collection_name": collection_name, "embedder": embedder, "progress": False}
    with ImageSearchEngine(backend, dims=8, **options) as first:
        report = first.index_folder(photos)
        assert report.added == 24 and report.unchanged == 0 and first.count() == 24
        assert first.store.dimension == 8 and first.projection.fitted_on == 24
        stored = {
            r.path: r.vector for r in first.store.records([path_id(stored_path(p)) for p in photos.iterdir()], True)
        }
        assert first.index_folder(photos).unchanged == 24  # the rows written while fitting count as indexed
    query = sorted(photos.iterdir())[5]
    with ImageSearchEngine(backend, **options) as second:
        results = second.search(query, top_k=3)  # no dims given: the stored projection is applied
        assert second.embedder.dimension == 8 and "PCA to 8 dims" in second.embedder.weights_label
        assert results.iloc[0]["path"] == stored_path(query) and results.iloc[0]["distance"] < 1e-4
        again = second.embed_image(query)
        saved = stored[stored_path(query)]
        assert float(again @ saved / np.linalg.norm(again) / np.linalg.norm(saved)) > 0.9999
        projection = load_projection(second.open_existing())
        assert projection is not None and projection.dims == 8 and projection.source_dimension == 2048
        second.drop()  # the projection goes with the collection
        store = second.store  # indexing again creates it anew, full-size
        assert not store.connection.client.has_collection(projection_name(collection_name))


def test_another_dims_is_refused_with_what_to_do(backend: str, collection_name: str, embedder, photos: Path) -> None:
    with ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, dims=8, progress=False) as e:
        e.index_folder(photos)
    refused = "projected to 8 dims, not 16; changing dims means indexing"
    with (
        ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, dims=16, progress=False) as e,
        pytest.raises(CollectionMismatchError, match=refused),
    ):
        e.index_folder(photos)
    full = collection_name + "_full"
    with ImageSearchEngine(backend, collection_name=full, embedder=embedder, progress=False) as e:
        e.index_folder(photos)
    with ImageSearchEngine(backend, collection_name=full, embedder=embedder, dims=8, progress=False) as e:
        with pytest.raises(CollectionMismatchError, match="stores full 2048-d vectors, not vectors projected to 8"):
            e.count()
        e.dims = None
        e.drop()
    with ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, progress=False) as e:
        exact = re.escape(f"vectors have dimension 2048, collection {collection_name!r} expects 8")
        with pytest.raises(ValueError, match=f"^{exact}$"):  # the insert's own check, not any other ValueError
            e.store.insert(["/x.jpg"], np.zeros((1, 2048), np.float32))
        assert e.insert_vectors(["/x.jpg"], np.ones((1, 2048), np.float32)) == 1  # projected as indexing does
        e.drop()


def test_too_few_images_to_fit_are_refused(backend: str, collection_name: str, embedder, photos: Path) -> None:
    with ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, dims=30, progress=False) as e:
        with pytest.raises(ValueError, match="needs more than 30 images, got 24"):
            e.index_folder(photos)
        assert e.count() == 0  # nothing written with a projection that could not be fitted
        e.drop()


def _indexed(backend: str, collection_name: str, embedder, photos: Path) -> dict[str, np.ndarray]:
    """Index `photos` into a collection of vectors projected to 8 dims; its stored vectors by path."""
    with ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, dims=8, progress=False) as e:
        e.index_folder(photos)
        return {r.path: r.vector for r in e.store.records([path_id(stored_path(p)) for p in photos.iterdir()], True)}


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_full_length_query_vectors_are_projected_as_inserted_ones(
    backend: str, collection_name: str, embedder, photos: Path
) -> None:
    stored = _indexed(backend, collection_name, embedder, photos)
    query = sorted(photos.iterdir())[5]
    full = embedder.embed_batch(decode_for_model(query, embedder.image_size)[None])[0]  # the model's 2048-d vector
    with ImageSearchEngine(backend, collection_name=collection_name, embedder=embedder, progress=False) as e:
        results = e.search(full, top_k=3)  # projected with the collection's projection, as insert_vectors does
        assert results.iloc[0]["path"] == stored_path(query) and results.iloc[0]["distance"] < 1e-4
        both = e.search([full, stored[stored_path(query)]], top_k=1)  # full and projected vectors mixed
        assert both["path"].tolist() == [stored_path(query)] * 2
        refused = re.escape(f"query vectors have dimension 5, collection {collection_name!r} holds 8")
        with pytest.raises(ValueError, match=f"^{refused}$"):
            e.search(np.ones(5, np.float32))
        e.drop()


def test_embed_image_and_folder_give_the_stored_vectors_unless_asked_for_full_ones(
    backend: str, collection_name: str, embedder, photos: Path, tmp_path: Path
) -> None:
    options = {"collection_name": collection_name, "embedder": embedder, "progress": False}
    query = sorted(photos.iterdir())[5]
    few = tmp_path / "few"
    few.mkdir()
    for photo in sorted(photos.iterdir())[:3]:
        shutil.copy2(photo, few / photo.name)
    with ImageSearchEngine(backend, dims=8, **options) as e:
        assert e.embed_image(query).shape == (2048,)  # no collection, so no projection yet: the model's vectors
    stored = _indexed(backend, collection_name, embedder, photos)[stored_path(query)]
    for open_first in (False, True):  # the same whether or not the engine has opened the collection yet
        with ImageSearchEngine(backend, **options) as e:
            if open_first:
                e.open_existing()
            projected = e.embed_image(query)
            assert projected.shape == (8,) and _cosine(projected, stored) > 0.9999
            assert e.embed_image(query, projected=False).shape == (2048,)
            assert e.embed_folder(few).vectors.shape == (3, 8)
            assert e.embed_folder(few, projected=False).vectors.shape == (3, 2048)
            if open_first:
                e.drop()
