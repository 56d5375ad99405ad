"""Images in the wrong class folder, found from the stored vectors (confident learning, as cleanlab does).

1. **Out-of-fold class probabilities**: a softmax regression (a linear model, fitted here in numpy)
   on the stored vectors of up to `FIT_ROWS` labelled rows, in `FOLDS` folds: each sampled row is
   scored by the model that did not see it; every other row by the mean of the fold models (none saw
   it). The vectors are centred and projected on their `FIT_DIMS` principal directions first, so that
   a fit's cost does not grow with their dimension (3,925 1280-d rows, 10 classes: about 5 s on 2 cores).
2. **Confident learning** (Northcutt et al., 2021; cleanlab's `filter_by="confident_learning"`): each
   class's threshold is the mean probability of that class over the sampled rows filed under it; a row
   is listed when the most likely class among those reaching `THRESHOLD_SHARE` of their thresholds is
   not its folder's.
   Its score is 1 minus the probability of its folder's class: how unlikely the folder is.
3. **The suggestion** is the class most of its `neighbours` nearest stored rows are filed under
   (searched through Milvus; the row and its byte copies left out): in #36's measurement the
   neighbours' majority was the true class for 0.97 of the misfiled images. When the neighbours
   side with the folder, the model's class is suggested instead.

The regularisation follows scikit-learn's `LogisticRegression(C=1)` (1 / rows, on features of unit mean
squared length), the model behind cleanlab's 0.83 / 0.82 in #36. Classes with fewer than `FOLDS` rows
are not judged.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

FOLDS = 5
"""Folds of the out-of-fold probabilities (cleanlab's default)."""

FIT_ROWS = 20_000
"""Most labelled rows the models are fitted on (a random sample): 160 MB of 2048-d vectors."""

FIT_DIMS = 256
"""Principal directions the vectors are projected on before the fit."""

SUBSPACE_STEPS = 4
"""Steps of subspace iteration that find the principal directions."""

ITERATIONS = 300
"""Steps of accelerated gradient descent per fold model."""

THRESHOLD_SHARE = 0.9
"""Share of its confident-learning threshold a class's probability must reach for a row to be confidently
of that class. cleanlab's rule (1.0) missed a fifth of the misfiled images in a measurement on real
vectors (EfficientNet-Lite0, Imagenette's 3,925 validation photos, 60 moved to another class folder;
8 draws): precision 0.975-0.980, recall 0.65-0.83. At 0.9: precision 0.945-0.982, recall 0.80-0.92
(0.980-0.981 and 0.80-0.88 on the 4 draws not looked at while choosing it)."""

SEED = 0
"""Seed of the sample and of the folds: the same collection gets the same report."""


@dataclass(frozen=True)
class LinearModel:
    """A softmax regression on centred, projected vectors.

    Attributes:
        mean: The sample's mean vector (subtracted first).
        basis: `(dimension, dims)`: the principal directions, scaled so the projected rows have a mean
            squared length of 1.
        weights: `(dims, classes)`.
        bias: `(classes,)`.
    """

    mean: np.ndarray
    basis: np.ndarray
    weights: np.ndarray
    bias: np.ndarray

    def probabilities(self, vectors: np.ndarray) -> np.ndarray:
        """`(rows, classes)` class probabilities of unit vectors."""
        return softmax(((np.asarray(vectors, dtype=np.float32) - self.mean) @ self.basis) @ self.weights + self.bias)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, computed stably."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def principal_basis(vectors: np.ndarray, dims: int = FIT_DIMS) -> tuple[np.ndarray, np.ndarray]:
    """The mean of `vectors` and their top `dims` principal directions, scaled so that the centred, projected
    rows have a mean squared length of 1 (the scale the step sizes and the regularisation assume)."""
    mean = vectors.mean(axis=0)
    centred = vectors - mean
    dimension = centred.shape[1]
    if dimension > dims:  # a few steps of subspace iteration: 0.3 s where a full eigh of 2048 x 2048 takes 5
        gram = centred.T @ centred
        subspace = np.random.default_rng(SEED).standard_normal((dimension, dims + 16)).astype(np.float32)
        for _ in range(SUBSPACE_STEPS):
            subspace, _ = np.linalg.qr(gram @ subspace)
        _, rotation = np.linalg.eigh(subspace.T @ gram @ subspace)
        basis = (subspace @ rotation[:, ::-1])[:, :dims]
    else:
        basis = np.eye(dimension, dtype=np.float32)
    spread = float(np.sqrt(((centred @ basis) ** 2).sum(axis=1).mean()))
    return mean.astype(np.float32), (basis / max(spread, 1e-12)).astype(np.float32)


def fit_softmax(features: np.ndarray, labels: np.ndarray, classes: int, l2: float) -> tuple[np.ndarray, np.ndarray]:
    """Weights and bias minimising the mean cross-entropy plus `l2 / 2 * |weights|^2`.

    Nesterov's accelerated gradient for `ITERATIONS` steps, with step sizes from the bound of the
    softmax's Hessian (half the features' largest covariance eigenvalue, plus `l2`; for the bias, one
    half: the features are centred); deterministic.

    Args:
        features: `(rows, dims)` centred features.
        labels: `(rows,)` class numbers.
        classes: Number of classes.
        l2: Regularisation strength.

    Returns:
        `(dims, classes)` weights and `(classes,)` bias.
    """
    rows, dims = features.shape
    targets = np.zeros((rows, classes), dtype=np.float32)
    targets[np.arange(rows), labels] = 1.0
    largest = float(np.linalg.eigvalsh(features.T @ features / rows)[-1]) if dims <= 4096 else 1.0
    step_weights, step_bias = 1.0 / (0.5 * largest + l2), 2.0
    weights = np.zeros((dims, classes), dtype=np.float32)
    bias = np.zeros(classes, dtype=np.float32)
    previous_weights, previous_bias = weights, bias
    for step in range(1, ITERATIONS + 1):
        momentum = (step - 1) / (step + 2)
        ahead_weights = weights + momentum * (weights - previous_weights)
        ahead_bias = bias + momentum * (bias - previous_bias)
        error = (softmax(features @ ahead_weights + ahead_bias) - targets) / rows
        previous_weights, previous_bias = weights, bias
        weights = ahead_weights - step_weights * (features.T @ error + l2 * ahead_weights)
        bias = ahead_bias - step_bias * error.sum(axis=0)
    return weights, bias


@dataclass
class FoldModels:
    """The fold models and what they say about the sample they were fitted on.

    Attributes:
        models: One `LinearModel` a fold.
        out_of_fold: Each sampled row's probabilities, from the model that did not see it, by id.
        thresholds: Each class's confident-learning threshold (mean probability of the class over
            the sampled rows filed under it).
    """

    models: list[LinearModel]
    out_of_fold: dict[int, np.ndarray]
    thresholds: np.ndarray

    def probabilities(self, ids: Sequence[int], vectors: np.ndarray) -> np.ndarray:
        """`(rows, classes)` probabilities: out-of-fold for sampled rows, else the mean of the fold models."""
        mean = np.mean([model.probabilities(vectors) for model in self.models], axis=0)
        for row, identifier in enumerate(ids):
            held_out = self.out_of_fold.get(int(identifier))
            if held_out is not None:
                mean[row] = held_out
        return mean


def fold_numbers(labels: np.ndarray, folds: int = FOLDS, seed: int = SEED) -> np.ndarray:
    """A fold number for each row, each class dealt round the folds in a random order (stratified).

    Example:
        >>> sorted(fold_numbers(np.array([0, 0, 1, 1, 1, 0]), folds=3).tolist())
        [0, 0, 1, 1, 2, 2]
    """
    rng = np.random.default_rng(seed)
    numbers = np.empty(len(labels), dtype=np.int64)
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        numbers[members] = np.arange(len(members)) % folds
    return numbers


def fit_folds(ids: np.ndarray, vectors: np.ndarray, labels: np.ndarray, classes: int, folds: int = FOLDS) -> FoldModels:
    """Fit one softmax regression a fold and keep each row's out-of-fold probabilities.

    Args:
        ids: `(rows,)` row ids.
        vectors: `(rows, dimension)` unit vectors.
        labels: `(rows,)` class numbers, each class with at least `folds` rows.
        classes: Number of classes.
        folds: Number of folds.

    Returns:
        The `FoldModels`.
    """
    mean, basis = principal_basis(vectors)
    features = (vectors - mean) @ basis
    numbers = fold_numbers(labels, folds)
    out_of_fold = np.zeros((len(ids), classes), dtype=np.float32)
    models = []
    for fold in range(folds):
        fitted, held = numbers != fold, numbers == fold
        weights, bias = fit_softmax(features[fitted], labels[fitted], classes, l2=1.0 / max(1, int(fitted.sum())))
        model = LinearModel(mean, basis, weights, bias)
        out_of_fold[held] = softmax(features[held] @ weights + bias)
        models.append(model)
    thresholds = confident_thresholds(out_of_fold, labels, classes)
    return FoldModels(models, dict(zip(ids.tolist(), out_of_fold, strict=True)), thresholds)


def confident_thresholds(probabilities: np.ndarray, labels: np.ndarray, classes: int) -> np.ndarray:
    """Each class's mean probability over the rows filed under it (1.0 for a class without rows).

    Example:
        >>> confident_thresholds(np.array([[0.9, 0.1], [0.7, 0.3], [0.2, 0.8]]), np.array([0, 0, 1]), 2).tolist()
        [0.8, 0.8]
    """
    thresholds = np.ones(classes, dtype=np.float64)
    for label in range(classes):
        filed = labels == label
        if filed.any():
            thresholds[label] = float(probabilities[filed, label].mean())
    return thresholds


def confident_classes(probabilities: np.ndarray, thresholds: np.ndarray, share: float = THRESHOLD_SHARE) -> np.ndarray:
    """For each row, the most likely class among those at or above `share` of their threshold (-1 if none is).

    Example:
        >>> confident_classes(np.array([[0.6, 0.4], [0.45, 0.55], [0.9, 0.1]]), np.array([0.7, 0.5]), 1.0).tolist()
        [-1, 1, 0]
    """
    reached = np.where(probabilities >= share * thresholds, probabilities, -1.0)
    best = reached.argmax(axis=1)
    return np.where(reached[np.arange(len(best)), best] >= 0, best, -1)


def neighbour_majority(neighbours: Sequence[int], labels: dict[int, int], excluded: set[int]) -> int:
    """The class most of `neighbours` are filed under (ids in `excluded` and rows without a class left out;
    a tie goes to the class of the nearer row; -1 if none has a class).

    Example:
        >>> neighbour_majority([4, 5, 6, 7], {4: 2, 5: 1, 6: 1, 7: 2}, excluded={7})
        1
    """
    votes = Counter()
    first_seen: dict[int, int] = {}
    for rank, row in enumerate(neighbours):
        label = labels.get(row, -1)
        if row in excluded or label < 0:
            continue
        votes[label] += 1
        first_seen.setdefault(label, rank)
    if not votes:
        return -1
    return max(votes, key=lambda label: (votes[label], -first_seen[label]))
