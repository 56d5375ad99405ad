"""The benchmarks' model of real features (`benchmarks/feature_model.FittedStream`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks.feature_model import FittedStream


@pytest.fixture
def features(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((3, 24)).astype(np.float32)
    labels = np.repeat(np.array(["a", "b", "c"]), 20)
    vectors = centres[np.repeat(np.arange(3), 20)] + 0.3 * rng.standard_normal((60, 24)).astype(np.float32)
    path = tmp_path / "features.npz"
    np.savez(path, vectors=vectors, labels=labels)
    return path


def test_each_chunk_is_the_same_on_every_pass_and_of_unit_length(features: Path) -> None:
    stream = FittedStream(features, rows=250, chunk=100, dimension=24, noise=0.5)
    first = list(stream.chunks())
    again = list(stream.chunks())
    assert [start for start, _ in first] == [0, 100, 200]
    assert [len(vectors) for _, vectors in first] == [100, 100, 50]
    for (_, one), (_, other) in zip(first, again, strict=True):
        np.testing.assert_array_equal(one, other)
        np.testing.assert_allclose(np.linalg.norm(one, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(first[0][1][:50], first[1][1][:50])


def test_drawn_vectors_stay_near_their_real_features(features: Path) -> None:
    stream = FittedStream(features, rows=400, chunk=400, dimension=24, noise=0.5)
    vectors = next(stream.chunks())[1]
    nearest_seed = np.argmax(vectors @ stream.seeds.T, axis=1)
    classes = stream.labels[nearest_seed]
    class_means = {label: stream.seeds[stream.labels == label].mean(axis=0) for label in "abc"}
    own = np.array([vectors[i] @ class_means[label] for i, label in enumerate(classes)])
    others = np.array(
        [max(vectors[i] @ class_means[o] for o in "abc" if o != label) for i, label in enumerate(classes)]
    )
    assert (own > others).mean() > 0.95


def test_a_larger_dimension_keeps_every_inner_product(features: Path) -> None:
    own = FittedStream(features, rows=80, chunk=80, dimension=24, noise=0.5)
    lifted = FittedStream(features, rows=80, chunk=80, dimension=40, noise=0.5)
    small, large = next(own.chunks())[1], next(lifted.chunks())[1]
    assert large.shape == (80, 40)
    np.testing.assert_allclose(large @ large.T, small @ small.T, atol=1e-5)


def test_a_dimension_below_the_features_is_refused(features: Path) -> None:
    with pytest.raises(ValueError, match="below the features' own 24"):
        FittedStream(features, rows=10, chunk=10, dimension=16, noise=0.5)
