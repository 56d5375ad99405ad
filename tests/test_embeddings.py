from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import class_photos
from utilities.embeddings import (
    ResNet50Embedder,
    _bucket,
    build_resnet50,
    embedder_from_callable,
    l2_normalize,
)
from utilities.errors import WeightsError
from utilities.images.decoding import decode_for_model


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    return np.stack([decode_for_model(p) for p in class_photos(1)])


def test_in_graph_preprocessing_matches_keras_preprocess_input(embedder, photos: np.ndarray) -> None:
    import keras

    layer = embedder.model.get_layer("caffe_preprocess")
    ours = np.asarray(layer(photos[:2]))
    reference = keras.applications.resnet50.preprocess_input(photos[:2].astype("float32"))
    np.testing.assert_allclose(ours, reference, atol=1e-4)


def test_vectors_are_2048_float32_unit_length(embedder, photos: np.ndarray) -> None:
    vectors = embedder.embed_batch(photos[:3])
    assert vectors.shape == (3, 2048) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_single_image_equals_its_row_in_a_batch(embedder, photos: np.ndarray) -> None:
    batch = embedder.embed_batch(photos)  # 10 images: chunks of 8 and 2 (padded)
    for index in (0, 5, 9):
        alone = embedder.embed_batch(photos[index : index + 1])[0]
        np.testing.assert_allclose(alone, batch[index], atol=1e-5)


def test_different_photos_give_different_vectors(embedder, photos: np.ndarray) -> None:
    vectors = embedder.embed_batch(photos)
    assert np.abs(vectors[0] - vectors[1]).max() > 1e-4


def test_wrong_input_shape_is_rejected(embedder) -> None:
    with pytest.raises(ValueError, match="224, 224, 3"):
        embedder.embed_batch(np.zeros((1, 100, 100, 3), np.uint8))


def test_weights_file_round_trip(embedder, photos: np.ndarray, tmp_path: Path) -> None:
    weights = tmp_path / "resnet50_notop.weights.h5"
    embedder.model.get_layer("resnet50").save_weights(weights)
    reloaded = ResNet50Embedder(weights=weights, batch_size=8)
    np.testing.assert_allclose(reloaded.embed_batch(photos[:2]), embedder.embed_batch(photos[:2]), atol=1e-5)


def test_missing_weights_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="nothing.h5"):
        build_resnet50(tmp_path / "nothing.h5")


def test_embedder_is_lazy() -> None:
    lazy = ResNet50Embedder(weights=None)
    assert lazy._model is None and lazy.dimension == 2048


def test_bucket_sizes_are_powers_of_two_capped() -> None:
    assert [_bucket(n, 32) for n in (1, 2, 3, 9, 32, 40)] == [1, 2, 4, 16, 32, 40]


def test_l2_normalize_keeps_zero_rows() -> None:
    out = l2_normalize(np.array([[0.0, 0.0], [0.0, 2.0]]))
    assert out.tolist() == [[0.0, 0.0], [0.0, 1.0]]


def test_callable_embedder_has_the_interface() -> None:
    mean_colour = embedder_from_callable(lambda batch: batch.mean(axis=(1, 2)), dimension=3)
    out = mean_colour.embed_batch(np.full((2, 224, 224, 3), 7, np.uint8))
    assert out.tolist() == [[7.0, 7.0, 7.0]] * 2


def test_random_weights_are_the_same_in_every_build(embedder, photos: np.ndarray) -> None:
    other = ResNet50Embedder(weights=None, batch_size=8)
    np.testing.assert_allclose(other.embed_batch(photos[:2]), embedder.embed_batch(photos[:2]), atol=1e-5)
