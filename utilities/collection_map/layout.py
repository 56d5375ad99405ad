"""Two-dimensional positions from stored vectors: a centred PCA to at most `PCA_DIMS` dims, then UMAP.

The PCA (a `projection.Projection`, the class of the collection's own projection) is fitted on a sample
of the unit vectors, at most `DEFAULT_SAMPLE` rows; UMAP (umap-learn, the `[map]` extra) is fitted on
the same sample's PCA coordinates and their exact nearest neighbours (`nearest_neighbours`), and every
other row is placed from its nearest sample rows (`FittedLayout.place`), so rows added later are placed
the same way without moving the others. Without umap-learn, or with `method="pca"`, a row's position is
its first two principal coordinates.

The UMAP constants are umap-learn's own defaults; `benchmarks/results/collection_map.md` measures them
on real pretrained vectors (quality) and on 100,000 rows (time).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

from utilities.projection import Projection

logger = logging.getLogger(__name__)

METHODS = ("umap", "pca")
"""The layouts: UMAP on the PCA coordinates, or the first two principal coordinates."""

PCA_DIMS = 50
"""Most principal components UMAP sees (fewer when the vectors or the sample are smaller)."""

DEFAULT_SAMPLE = 20_000
"""Most rows the PCA and UMAP are fitted on; the rest are placed by the fitted layout (`FittedLayout.place`)."""

UMAP_NEIGHBOURS = 15
"""UMAP's `n_neighbors` (its default): how local the layout is."""

UMAP_MIN_DIST = 0.1
"""UMAP's `min_dist` (its default): how tightly points of one island pack."""

MIN_UMAP_ROWS = 10
"""Below this many rows in the sample, UMAP has too few neighbours to lay out: PCA is used."""

INSTALL_UMAP = "pip install '.[map]'  (or: pip install 'umap-learn>=0.5,<0.6')"
"""What to run to get UMAP."""

PLACE_NEIGHBOURS = 10
"""Sample rows whose positions place another row (`FittedLayout.place`)."""

PLACE_BLOCK = 1024
"""Rows placed at a time (a block's distances to a 20,000-row sample take 80 MB)."""


def umap_installed() -> bool:
    """Whether umap-learn can be imported (without importing it)."""
    from importlib.util import find_spec

    return find_spec("umap") is not None


def import_umap() -> Any:
    """umap-learn, imported without its `ParametricUMAP`, which would import TensorFlow (unused; 15 s against 2 s here).

    Raises:
        ImportError: umap-learn is not installed.
    """
    import sys
    import warnings

    if "umap" in sys.modules:
        return sys.modules["umap"]
    blocked = "tensorflow" not in sys.modules and "umap.parametric_umap" not in sys.modules
    if blocked:
        sys.modules["umap.parametric_umap"] = None  # type: ignore[assignment]  # umap then skips it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ImportWarning)
            import umap
    finally:
        if blocked:
            del sys.modules["umap.parametric_umap"]
    return umap


def resolve_method(method: str) -> str:
    """The layout that will be used for `method`: `"pca"` when UMAP was asked for and is not installed.

    Raises:
        ValueError: `method` is not one of `METHODS`.

    Example:
        >>> resolve_method("pca")
        'pca'
    """
    if method not in METHODS:
        raise ValueError(f"unknown map method {method!r}; use one of {', '.join(METHODS)}")
    if method == "umap" and not umap_installed():
        logger.warning("umap-learn is not installed: the map is laid out by PCA. For UMAP: %s", INSTALL_UMAP)
        return "pca"
    return method


@dataclass
class FittedLayout:
    """A layout fitted on a sample, which places any unit vector of the same dimension.

    A row outside the sample is placed where its `PLACE_NEIGHBOURS` nearest sample rows (in the PCA
    coordinates) are, weighted by closeness, much as `UMAP.transform` starts (a weighted mean of the
    neighbours' positions), without its further optimisation, whose numba compilation took 49 s in each
    new process on this 2-core machine. So the saved layout is plain arrays (no pickled model), and
    placing needs no umap-learn.

    Attributes:
        method: `"umap"` or `"pca"` (what was really fitted).
        pca: The centred PCA of the sample (None when the sample had fewer than 2 rows: all at the origin).
        anchors: `(sample, dims)` float32 PCA coordinates of the sample (UMAP only; else empty).
        anchor_positions: `(sample, 2)` float32 positions UMAP gave the sample (UMAP only; else empty).
        fitted_on: Rows in the sample.
    """

    method: str
    pca: Projection | None
    anchors: np.ndarray
    anchor_positions: np.ndarray
    fitted_on: int

    def place(self, vectors: np.ndarray) -> np.ndarray:
        """`(n, 2)` float32 positions of `(n, dimension)` unit vectors."""
        vectors = np.asarray(vectors, dtype=np.float32)
        if self.pca is None or not len(vectors):
            return np.zeros((len(vectors), 2), dtype=np.float32)
        reduced = self.pca.apply(vectors)
        if self.method == "pca":
            return _first_two(reduced)
        return np.concatenate(
            [self._interpolate(reduced[start : start + PLACE_BLOCK]) for start in range(0, len(reduced), PLACE_BLOCK)]
        )

    def _interpolate(self, reduced: np.ndarray) -> np.ndarray:
        """Positions of a block of PCA coordinates from their nearest anchors (inverse-distance weights)."""
        nearest, distance = _nearest(reduced, self.anchors, min(PLACE_NEIGHBOURS, len(self.anchors)))
        weights = 1.0 / (distance + 1e-6)
        weights /= weights.sum(1, keepdims=True)
        return np.einsum("nk,nkd->nd", weights, self.anchor_positions[nearest]).astype(np.float32)


def nearest_neighbours(points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` nearest rows of `points` (itself first), exactly, by Euclidean distance: `(indices, distances)`,
    `(n, k)` int32 and float32, nearest first; what UMAP takes as `precomputed_knn`.

    Exact, in blocks of `PLACE_BLOCK` rows: on a 20,000-row, 50-d sample about 5 s of matrix products,
    where UMAP's own approximate search (pynndescent) took 54 s in a fresh process here, most of it
    numba compiling (`benchmarks/results/collection_map.md`).

    Example:
        >>> indices, distances = nearest_neighbours(np.array([[0.0], [1.0], [3.0]], dtype=np.float32), 2)
        >>> indices.tolist(), distances.tolist()
        ([[0, 1], [1, 0], [2, 1]], [[0.0, 1.0], [0.0, 1.0], [0.0, 2.0]])
    """
    points = np.asarray(points, dtype=np.float32)
    indices = np.empty((len(points), k), dtype=np.int32)
    distances = np.empty((len(points), k), dtype=np.float32)
    for start in range(0, len(points), PLACE_BLOCK):
        block = slice(start, start + PLACE_BLOCK)
        nearest, distance = _nearest(points[block], points, k)
        other = nearest != np.arange(start, start + len(nearest))[:, None]
        order = np.lexsort((other, distance), axis=1)  # by distance, the row itself first among equals
        indices[block] = np.take_along_axis(nearest, order, axis=1)
        distances[block] = np.take_along_axis(distance, order, axis=1)
    own = indices[:, 0] == np.arange(len(points))
    distances[own, 0] = 0.0  # rounding can leave a small distance of a row to itself
    return indices, distances


def _nearest(block: np.ndarray, points: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest `points` of each row of `block` (unordered) and their Euclidean distances."""
    squared = (block**2).sum(1)[:, None] - 2 * block @ points.T + (points**2).sum(1)[None, :]
    nearest = np.argpartition(squared, k - 1, axis=1)[:, :k]
    return nearest, np.sqrt(np.maximum(np.take_along_axis(squared, nearest, axis=1), 0))


def fit_layout(sample: np.ndarray, method: str = "umap") -> tuple[FittedLayout, np.ndarray]:
    """Fit the layout on `(n, dimension)` unit vectors; returns it and the sample's `(n, 2)` positions.

    Args:
        sample: The vectors to fit on (every row, or a random sample of them).
        method: `"umap"` or `"pca"`; UMAP falls back to PCA when umap-learn is missing (logged with how to
            install it) or the sample has fewer than `MIN_UMAP_ROWS` rows.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> layout, positions = fit_layout(rng.standard_normal((30, 8)), method="pca")
        >>> layout.method, positions.shape
        ('pca', (30, 2))
    """
    method = resolve_method(method)
    sample = np.asarray(sample, dtype=np.float32)
    count, dimension = sample.shape
    none = np.zeros((0, 0), dtype=np.float32)
    dims = min(PCA_DIMS, dimension - 1, count - 1)
    if dims < 1:
        return FittedLayout("pca", None, none, none, count), np.zeros((count, 2), dtype=np.float32)
    pca = fit_pca(sample, dims)
    reduced = pca.apply(sample)
    if method == "umap" and count < MIN_UMAP_ROWS:
        logger.info("only %d rows to fit on (UMAP needs %d): the map is laid out by PCA", count, MIN_UMAP_ROWS)
        method = "pca"
    if method == "pca":
        return FittedLayout("pca", pca, none, none, count), _first_two(reduced)
    positions = _umap_positions(reduced)
    return FittedLayout("umap", pca, reduced, positions, count), positions


def _umap_positions(reduced: np.ndarray) -> np.ndarray:
    """UMAP's `(n, 2)` positions of PCA coordinates, on their exact neighbours (`nearest_neighbours`)."""
    import warnings

    umap = import_umap()
    neighbours = min(UMAP_NEIGHBOURS, len(reduced) - 1)
    # no random_state: a seed makes umap-learn single-threaded; positions vary a little from run to run
    fitted = umap.UMAP(
        n_neighbors=neighbours, min_dist=UMAP_MIN_DIST, precomputed_knn=nearest_neighbours(reduced, neighbours)
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="precomputed_knn")  # no search index: its transform is not used
        return np.asarray(fitted.fit_transform(reduced), dtype=np.float32)


def fit_pca(vectors: np.ndarray, dims: int) -> Projection:
    """A centred PCA of `(n, dimension)` vectors to `dims` dims, from the eigenvectors of their covariance.

    The same projection as `Projection.fit` (up to each axis' sign), computed from the `dimension`-square
    covariance instead of an SVD of the vectors: on 20,000 2048-d vectors on this 2-core machine, 13 s against 100 s.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> pca = fit_pca(rng.standard_normal((50, 3)) * [10.0, 1.0, 0.1], 1)
        >>> pca.dims, round(abs(float(pca.components[0, 0])), 2)
        (1, 1.0)
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    mean = vectors.mean(axis=0, dtype=np.float64)
    centred = vectors - mean.astype(np.float32)
    covariance = (centred.T @ centred).astype(np.float64)
    variance, axes = np.linalg.eigh(covariance)  # ascending
    order = np.argsort(variance)[::-1][:dims]
    explained = float(variance[order].sum() / max(variance.clip(min=0).sum(), 1e-30))
    return Projection(mean.astype(np.float32), axes[:, order].T.astype(np.float32), len(vectors), explained)


def _first_two(reduced: np.ndarray) -> np.ndarray:
    """The first two columns, padded with zeros when there are fewer."""
    positions = np.zeros((len(reduced), 2), dtype=np.float32)
    positions[:, : min(2, reduced.shape[1])] = reduced[:, :2]
    return positions
