"""The map's layout (`collection_map.layout`): UMAP fitted on the exact neighbours of the sample, and the
sample read a request at a time (`collection_map.mapper`)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from utilities.collection_map import layout as map_layout
from utilities.collection_map import mapper
from utilities.milvus.rows import VECTORS_PER_REQUEST
from utilities.records import ID_FIELD, VECTOR_FIELD


def _brute_force(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` nearest rows by Euclidean distance, from the full distance matrix."""
    distances = np.sqrt(((points[:, None, :].astype(np.float64) - points[None, :, :]) ** 2).sum(-1))
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)


def test_nearest_neighbours_are_exact_with_each_row_first() -> None:
    points = np.random.default_rng(3).standard_normal((2_500, 6)).astype(np.float32)  # more than one block
    indices, distances = map_layout.nearest_neighbours(points, 7)
    expected, expected_distances = _brute_force(points, 7)
    assert (indices[:, 0] == np.arange(len(points))).all() and (distances[:, 0] == 0).all()
    assert (indices == expected).mean() > 0.999  # ties in float32 may swap two equal neighbours
    assert np.allclose(distances, expected_distances, atol=1e-4)


def test_umap_is_fitted_on_the_exact_neighbours_of_the_sample(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    class Recording:
        """Stands for `umap.UMAP`: records its arguments, lays every row out at its first two coordinates."""

        def __init__(self, **options: Any) -> None:
            seen.update(options)

        def fit_transform(self, reduced: np.ndarray) -> np.ndarray:
            seen["rows"] = len(reduced)
            return reduced[:, :2]

    monkeypatch.setattr(map_layout, "import_umap", lambda: type("umap", (), {"UMAP": Recording}))
    monkeypatch.setattr(map_layout, "umap_installed", lambda: True)
    vectors = np.random.default_rng(4).standard_normal((300, 32)).astype(np.float32)
    fitted, positions = map_layout.fit_layout(vectors, "umap")
    indices, distances = seen["precomputed_knn"]
    expected, _ = _brute_force(fitted.anchors, map_layout.UMAP_NEIGHBOURS)
    assert (fitted.method, seen["rows"], seen["n_neighbors"]) == ("umap", 300, map_layout.UMAP_NEIGHBOURS)
    assert indices.shape == distances.shape == (300, map_layout.UMAP_NEIGHBOURS)
    assert (indices == expected).mean() > 0.999
    assert positions.shape == (300, 2)


def test_the_sample_is_read_a_request_at_a_time() -> None:
    class Store:
        """Answers `get` as pymilvus does (Python floats), leaving out row 5 (deleted meanwhile)."""

        dimension = 3

        def __init__(self) -> None:
            self.asked: list[int] = []

        def get(self, ids: list[int], fields: tuple[str, ...]) -> list[dict]:
            self.asked.append(len(ids))
            return [{ID_FIELD: row, VECTOR_FIELD: [3.0, 4.0, 0.0]} for row in ids if row != 5]

    store = Store()
    found, vectors = mapper._read_vectors(store, np.arange(2 * VECTORS_PER_REQUEST + 7, dtype=np.int64))
    assert store.asked == [VECTORS_PER_REQUEST, VECTORS_PER_REQUEST, 7]
    assert len(found) == 2 * VECTORS_PER_REQUEST + 6 and 5 not in found.tolist()
    assert vectors.shape == (len(found), 3) and np.allclose(vectors, [0.6, 0.8, 0.0])
