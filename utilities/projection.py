"""Fewer bytes per image: a centred PCA projection of the model's vectors, fitted once per collection.

A 2048-d float32 vector is 8 KB. Projected on its first 256 principal components (the vectors
centred on their mean first) it is 1 KB, and on pretrained features it keeps the neighbours: on
Imagenette with EfficientNet-Lite0, leave-one-out P@10 was 0.9656 at full dimension and 0.9703
with a centred PCA to 256 (measured when the issue was filed; `benchmarks/reduced_dims.py`
measures it again). Whitening (dividing by each component's spread) lost quality (0.934), so the
projection does not whiten.

The projection is fitted on a sample of the first run's vectors (`FIT_SAMPLE`) and stored in
Milvus beside the collection (`milvus.projection_store`), so that every client and machine that
opens the collection applies the same one: `ProjectedEmbedder` wraps the model for indexing and
queries alike, and `as_stored` projects precomputed full vectors, inserted or searched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from utilities.embeddings import Embedder

FIT_SAMPLE = 4096
"""Most images the projection is fitted on (a random sample of the first run)."""

FEW_FOR_A_FIT = 1000
"""Below this many images a fit is allowed (there must be more images than `dims`) but warned about."""


@dataclass(frozen=True)
class Projection:
    """A centred PCA projection from the model's dimension to `dims`.

    Attributes:
        mean: `(source_dimension,)` mean of the vectors it was fitted on.
        components: `(dims, source_dimension)` principal axes, largest variance first.
        fitted_on: How many vectors it was fitted on.
        explained: Share of the variance the kept components hold (0-1).
    """

    mean: np.ndarray
    components: np.ndarray
    fitted_on: int
    explained: float

    @property
    def dims(self) -> int:
        """Length of a projected vector."""
        return int(self.components.shape[0])

    @property
    def source_dimension(self) -> int:
        """Length of the model's vectors."""
        return int(self.components.shape[1])

    @classmethod
    def fit(cls, vectors: np.ndarray, dims: int) -> Projection:
        """Fit the projection on `(n, source_dimension)` vectors, `n > dims`.

        Raises:
            ValueError: `dims` is not between 1 and the vectors' dimension, or there are not more
                vectors than `dims`.

        Example:
            >>> rng = np.random.default_rng(0)
            >>> data = rng.standard_normal((50, 3)) * [10.0, 1.0, 0.1]
            >>> projection = Projection.fit(data, 1)
            >>> projection.dims, round(abs(float(projection.components[0, 0])), 2)
            (1, 1.0)
        """
        vectors = np.asarray(vectors, dtype=np.float64)
        count, source = vectors.shape
        if not 1 <= dims < source:
            raise ValueError(f"dims must be between 1 and {source - 1} (the model's vectors have {source}), got {dims}")
        if count <= dims:
            raise ValueError(
                f"fitting a projection to {dims} dims needs more than {dims} images, got {count}: index more images "
                "in the first run, or choose a smaller dims"
            )
        mean = vectors.mean(axis=0)
        _, singular, axes = np.linalg.svd(vectors - mean, full_matrices=False)
        variance = singular**2
        explained = float(variance[:dims].sum() / max(variance.sum(), 1e-30))
        return cls(mean.astype(np.float32), axes[:dims].astype(np.float32), count, explained)

    def apply(self, vectors: np.ndarray) -> np.ndarray:
        """Project `(n, source_dimension)` vectors to `(n, dims)` float32.

        Raises:
            ValueError: The vectors have another dimension than the projection was fitted on.
        """
        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape[-1] != self.source_dimension:
            raise ValueError(
                f"the projection takes {self.source_dimension}-d vectors, got {vectors.shape[-1]}-d: the collection "
                "was indexed with another model; use that model, or index into another collection"
            )
        return np.ascontiguousarray((vectors - self.mean) @ self.components.T, dtype=np.float32)


def as_stored(vectors: np.ndarray, projection: Projection | None) -> np.ndarray:
    """Vectors as a collection with this projection stores and searches them: the model's full-length
    ones projected (`Projection.apply`), any other length unchanged, for the collection to check.

    `ImageSearchEngine.insert_vectors` and searches by vector both go through it, so a precomputed
    full vector is stored and searched alike.

    Example:
        >>> projection = Projection.fit(np.random.default_rng(0).standard_normal((20, 4)), 2)
        >>> as_stored(np.ones((3, 4)), projection).shape, as_stored(np.ones((3, 2)), projection).shape
        ((3, 2), (3, 2))
        >>> as_stored(np.ones(4), None).shape
        (4,)
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    if projection is None or vectors.shape[-1] != projection.source_dimension:
        return vectors
    return projection.apply(vectors)


class ProjectedEmbedder:
    """A model whose vectors are projected (`Projection.apply`) before they are stored or searched.

    Picklable when the model is, so Ray's actors apply the same projection.

    Args:
        model: The `Embedder` that makes the full vectors.
        projection: The collection's projection.
    """

    def __init__(self, model: Embedder, projection: Projection) -> None:
        if model.dimension != projection.source_dimension:
            raise ValueError(
                f"the collection's projection takes {projection.source_dimension}-d vectors but the model makes "
                f"{model.dimension}-d ones: use the model the collection was indexed with"
            )
        self.model = model
        self.projection = projection
        self.image_size = model.image_size
        self.dimension = projection.dims

    @property
    def weights_label(self) -> str:
        """The model's label, and the projection."""
        label = getattr(self.model, "weights_label", type(self.model).__name__)
        return f"{label}, PCA to {self.dimension} dims"

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        """The model's vectors of `images`, projected."""
        return self.projection.apply(self.model.embed_batch(images))
