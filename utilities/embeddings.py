"""Models that turn batches of images into vectors.

Any object with the `Embedder` interface works with the rest of the package: an
`image_size`, a `dimension`, and `embed_batch(uint8 images) -> float32 vectors`.
`ResNet50Embedder` is the default; `KerasEmbedder` wraps any Keras model.

The model is fed uint8 batches; the cast and the ImageNet preprocessing run
inside the compiled model (Keras ops, so it works on the TensorFlow, JAX and
PyTorch backends), which keeps the host-to-device copy small.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from utilities.errors import WeightsError
from utilities.images.decoding import DEFAULT_IMAGE_SIZE
from utilities.quiet import import_keras

logger = logging.getLogger(__name__)

RESNET50_DIMENSION = 2048
"""Length of a ResNet50 average-pool embedding."""

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
"""Per-channel means `keras.applications.resnet50.preprocess_input` subtracts (BGR)."""


@runtime_checkable
class Embedder(Protocol):
    """What the pipeline needs from a model.

    Attributes:
        image_size: Side of the square uint8 images `embed_batch` expects.
        dimension: Length of each output vector.
    """

    image_size: int
    dimension: int

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        """Embed `(n, image_size, image_size, 3)` uint8 images into `(n, dimension)` float32."""
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length (rows of zeros stay zero).

    Example:
        >>> l2_normalize(np.array([[3.0, 4.0]], dtype=np.float32)).tolist()
        [[0.6000000238418579, 0.800000011920929]]
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


def _bucket(n: int, limit: int) -> int:
    """Smallest power of two >= n, capped at `limit`: few distinct compiled shapes."""
    size = 1
    while size < n:
        size *= 2
    return min(size, max(limit, n))


class KerasEmbedder:
    """Wrap any Keras model that maps uint8 images to vectors.

    Batches are padded to a power of two (up to `batch_size`) so that the compiled
    predict function sees only a few input shapes; padding rows are dropped.

    Args:
        model: A Keras model taking `(n, image_size, image_size, 3)` uint8 input and
            returning `(n, dimension)` (or `(n, ..., dimension)`, which is flattened).
        image_size: Input side length.
        batch_size: Largest batch sent to the model at once.
        normalize: L2-normalise the output vectors (recommended for cosine search).

    Example:
        >>> embedder = KerasEmbedder(my_model, image_size=224)  # doctest: +SKIP
        >>> embedder.embed_batch(np.zeros((2, 224, 224, 3), np.uint8)).shape  # doctest: +SKIP
        (2, 2048)
    """

    def __init__(
        self, model: Any, image_size: int = DEFAULT_IMAGE_SIZE, batch_size: int = 32, normalize: bool = True
    ) -> None:
        self.model = model
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.normalize = normalize
        self.dimension = int(np.prod(model.output_shape[1:]))

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        """Embed a batch of uint8 images.

        Args:
            images: `(n, image_size, image_size, 3)` uint8 array.

        Returns:
            `(n, dimension)` float32 array, L2-normalised if `normalize` is set.

        Raises:
            ValueError: If the array does not have the expected shape.
        """
        images = np.asarray(images)
        expected = (self.image_size, self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape (n, {expected[0]}, {expected[1]}, 3), got {images.shape}")
        images = images.astype(np.uint8, copy=False)
        outputs = [
            self._embed_chunk(images[start : start + self.batch_size])
            for start in range(0, len(images), self.batch_size)
        ]
        if not outputs:
            return np.zeros((0, self.dimension), dtype=np.float32)
        vectors = np.concatenate(outputs).reshape(len(images), self.dimension).astype(np.float32)
        return l2_normalize(vectors) if self.normalize else vectors

    def _embed_chunk(self, chunk: np.ndarray) -> np.ndarray:
        count = len(chunk)
        size = _bucket(count, self.batch_size)
        if size > count:
            padding = np.zeros((size - count, *chunk.shape[1:]), dtype=chunk.dtype)
            chunk = np.concatenate([chunk, padding])
        return np.asarray(self.model.predict_on_batch(chunk), dtype=np.float32)[:count]


def _caffe_preprocess_layer() -> Any:
    """A Keras layer doing `resnet50.preprocess_input` on uint8 RGB input, in-graph."""
    keras = import_keras()

    class CaffePreprocess(keras.layers.Layer):
        """Cast to float32, RGB to BGR, subtract the ImageNet channel means."""

        def call(self, inputs: Any) -> Any:
            values = keras.ops.cast(inputs, "float32")
            bgr = keras.ops.flip(values, axis=-1)
            return bgr - keras.ops.convert_to_tensor(CAFFE_MEAN_BGR, dtype="float32")

    return CaffePreprocess(name="caffe_preprocess")


def build_resnet50(
    weights: str | os.PathLike | None = "imagenet", image_size: int = DEFAULT_IMAGE_SIZE, seed: int = 0
) -> Any:
    """Build ResNet50 (no top, average pooling) behind an in-graph preprocessing layer.

    Args:
        weights: `"imagenet"` (Keras downloads and caches them on first use), `None`
            for random initialisation (seeded: see `seed_kernels`), or the path to a weights file for ResNet50
            without its top (for example Keras' cached
            `resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5`).
        image_size: Input side length.
        seed: Seed of the random kernels when `weights` is None.

    Returns:
        A Keras model from `(n, image_size, image_size, 3)` uint8 to `(n, 2048)` float32.

    Raises:
        WeightsError: The weights file is missing or does not fit ResNet50, or the
            ImageNet weights could not be downloaded.
    """
    keras = import_keras()

    chosen = _weights_argument(weights)
    inputs = keras.Input(shape=(image_size, image_size, 3), dtype="uint8", name="image")
    try:
        base = keras.applications.ResNet50(
            include_top=False, weights=chosen, pooling="avg", input_shape=(image_size, image_size, 3)
        )
    except Exception as error:  # noqa: BLE001 - Keras raises many kinds here
        raise WeightsError(
            f"cannot load ResNet50 weights {chosen!r}: {error}. Pass weights=None "
            "for random weights, or a path to a downloaded weights file."
        ) from error
    if chosen is None:
        seed_kernels(base, seed)
    outputs = base(_caffe_preprocess_layer()(inputs))
    return keras.Model(inputs, outputs, name="resnet50_embedder")


def seed_kernels(model: Any, seed: int = 0) -> None:
    """Redraw every kernel (Glorot-uniform, Keras' default) from a seeded generator.

    Biases and batch-norm variables start as constants already, so afterwards the
    random model is the same in every process: vectors indexed by one run can be
    searched by another. Nothing global (NumPy's or Keras' seed) is touched.
    """
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        if len(shape) < 2:
            continue
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(np.float32))


def _weights_argument(weights: str | os.PathLike | None) -> str | None:
    if weights is None or (isinstance(weights, str) and weights.lower() in ("none", "random")):
        return None
    if isinstance(weights, str) and weights.lower() == "imagenet":
        return "imagenet"
    path = os.fspath(weights)
    if not os.path.isfile(path):
        raise WeightsError(
            f"weights file {path!r} does not exist; pass 'imagenet', None or an existing .h5 / .weights.h5 file"
        )
    return path


class ResNet50Embedder(KerasEmbedder):
    """ResNet50 ImageNet features: 2048-d average-pool vectors.

    The model is built on first use, not at construction, so creating an embedder
    is instant.

    Args:
        weights: `"imagenet"`, `None` (random) or a weights file path; see
            `build_resnet50`.
        image_size: Input side length (224 is what the ImageNet weights expect).
        batch_size: Largest batch sent to the model at once.
        normalize: L2-normalise the vectors (the default, for cosine search).

    Example:
        >>> embedder = ResNet50Embedder(weights=None)
        >>> embedder.dimension
        2048
    """

    def __init__(
        self,
        weights: str | os.PathLike | None = "imagenet",
        image_size: int = DEFAULT_IMAGE_SIZE,
        batch_size: int = 32,
        normalize: bool = True,
    ) -> None:
        self.weights = weights
        self.image_size = int(image_size)
        self.batch_size = int(batch_size)
        self.normalize = normalize
        self.dimension = RESNET50_DIMENSION
        self._model: Any = None

    @property
    def model(self) -> Any:  # type: ignore[override]
        """The Keras model, built on first access."""
        if self._model is None:
            logger.info("building ResNet50 (weights=%s)", self.weights)
            self._model = build_resnet50(self.weights, self.image_size)
        return self._model

    @model.setter
    def model(self, value: Any) -> None:
        self._model = value

    def __getstate__(self) -> dict[str, Any]:
        """Pickle the settings, not the model: a copy (in a Ray actor, say) builds its own on first use.

        The weights must then be reachable there too: `"imagenet"`, None (seeded, so the same
        everywhere) or a file at the same path.
        """
        return {**self.__dict__, "_model": None}

    @property
    def weights_label(self) -> str:
        """Short description of the model and weights, for figure titles and reports."""
        if self.weights is None or str(self.weights).lower() in ("none", "random"):
            return "ResNet50, random weights (seed 0)"
        if str(self.weights).lower() == "imagenet":
            return "ResNet50, ImageNet weights"
        return f"ResNet50, weights from {Path(self.weights).name}"


def embedder_from_callable(
    function: Callable[[np.ndarray], np.ndarray], dimension: int, image_size: int = DEFAULT_IMAGE_SIZE
) -> Embedder:
    """Make an `Embedder` from a plain function of a uint8 batch (any framework).

    Args:
        function: Maps `(n, image_size, image_size, 3)` uint8 to `(n, dimension)`.
        dimension: Output vector length.
        image_size: Input side length.

    Returns:
        An object with the `Embedder` interface.

    Example:
        >>> colour = embedder_from_callable(lambda b: b.mean(axis=(1, 2)), dimension=3)
        >>> colour.embed_batch(np.zeros((1, 224, 224, 3), np.uint8)).shape
        (1, 3)
    """

    class _FunctionEmbedder:
        def __init__(self) -> None:
            self.image_size = image_size
            self.dimension = dimension

        def embed_batch(self, images: np.ndarray) -> np.ndarray:
            return np.asarray(function(images), dtype=np.float32).reshape(len(images), dimension)

    return _FunctionEmbedder()
