"""Images that belong to no class: far from every class centroid of the stored vectors.

A row's score is 1 minus its best cosine to a class centroid (the mean of that class's unit vectors,
scaled to length 1); an unlabelled collection has one centroid, the mean of all rows. Nearest-neighbour
distance was not used: off-domain pictures (charts, text pages, patterns) are near each other, and in
#36's measurement the distance to the nearest centroid ranked them far better (AUROC 0.995).

The cut is the modified z-score of Iglewicz and Hoaglin: a row is listed when its score lies more than
`MODIFIED_Z` robust deviations (1.4826 x the median absolute deviation) above the median score.
Centroids are summed page by page: the client holds one page and one vector a class.
"""

from __future__ import annotations

import numpy as np

MODIFIED_Z = 3.5
"""Robust deviations above the median score from which a row is an outlier (Iglewicz and Hoaglin's rule)."""

MAD_TO_STD = 1.4826
"""Median absolute deviation to standard deviation, for normally distributed scores."""


class CentroidSums:
    """Running sums of unit vectors per class, page by page.

    Args:
        classes: Number of classes (0: one centroid of every row).
        dimension: Vector dimension.

    Example:
        >>> sums = CentroidSums(2, 2)
        >>> sums.add(np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([0, 1]))
        >>> sums.centroids().tolist()
        [[1.0, 0.0], [0.0, 1.0]]
    """

    def __init__(self, classes: int, dimension: int) -> None:
        self.sums = np.zeros((max(classes, 1), dimension), dtype=np.float64)
        self.counts = np.zeros(max(classes, 1), dtype=np.int64)
        self.per_class = classes > 0

    def add(self, vectors: np.ndarray, labels: np.ndarray) -> None:
        """Add a page of unit vectors with their class numbers (-1: no class, left out unless unlabelled)."""
        labels = np.asarray(labels) if self.per_class else np.zeros(len(vectors), dtype=np.int64)
        kept = labels >= 0
        np.add.at(self.sums, labels[kept], np.asarray(vectors, dtype=np.float64)[kept])
        self.counts += np.bincount(labels[kept], minlength=len(self.counts))

    def centroids(self) -> np.ndarray:
        """The unit centroid of each class that has rows (classes without rows left out)."""
        present = self.sums[self.counts > 0]
        norms = np.linalg.norm(present, axis=1, keepdims=True)
        return (present / np.maximum(norms, 1e-12)).astype(np.float32)


def centroid_distances(vectors: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """1 minus each unit vector's best cosine to a centroid (0: on a centroid, up to 2).

    Example:
        >>> centroid_distances(np.array([[1.0, 0.0], [0.0, -1.0]]), np.array([[1.0, 0.0]])).tolist()
        [0.0, 1.0]
    """
    if not len(centroids):
        return np.zeros(len(vectors), dtype=np.float32)
    return (1.0 - (np.asarray(vectors, dtype=np.float32) @ centroids.T).max(axis=1)).astype(np.float32)


def outlier_cut(scores: np.ndarray) -> float:
    """The score from which a row is listed: the median plus `MODIFIED_Z` robust deviations.

    Example:
        >>> round(outlier_cut(np.array([0.1, 0.2, 0.2, 0.3, 0.9])), 4)
        0.7189
    """
    if not len(scores):
        return float("inf")
    median = float(np.median(scores))
    deviation = MAD_TO_STD * float(np.median(np.abs(scores - median)))
    return median + MODIFIED_Z * deviation
