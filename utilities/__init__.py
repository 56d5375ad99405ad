"""Image similarity search with ResNet50 embeddings and Milvus.

Importing the package is cheap: TensorFlow/Keras and pymilvus are imported only
when a function needs them.

The front door is `ImageSearchEngine`:

Example:
    >>> from utilities import ImageSearchEngine  # doctest: +SKIP
    >>> engine = ImageSearchEngine(uri="db/milvus.db", weights="imagenet")  # doctest: +SKIP
    >>> report = engine.index_folder("my_photos/")  # doctest: +SKIP
    >>> engine.search("query.jpg", top_k=5)  # doctest: +SKIP

Modules, one job each:

- images and models: `images` (find and decode), `reader` (parallel decoding in batches),
  `gpu_decoder` (nvJPEG), `embeddings` (models);
- Milvus: `milvus_connection` (client, Lite owner lock, retries, reconnecting),
  `milvus_store` (`ImageCollection`: open, create, validate, drop), `collection_base`,
  `collection_rows` (writes and reads), `collection_index` (index and searches),
  `records` (`ImageRecord` and the field names), `lite_import`, `retry`, `chunks`;
- indexing and searching: `pipeline` (indexing files), `ray_indexing` (on a Ray cluster),
  `batch_writer`, `index_report`, `hashing`,
  `catalog` (the id-to-path DataFrame), `search` (queries to DataFrames), `plotting`,
  `files` (copying results);
- around them: `engine` (the facade), `evaluation` (retrieval quality), `splits`
  (class-folder splits), `datasets` (downloads), `demo`, `cli`, `ids` (stable ids),
  `config` (URI and token resolution), `locks`, `errors`.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ImageSearchEngine": "utilities.engine",
    "ResNet50Embedder": "utilities.embeddings",
    "KerasEmbedder": "utilities.embeddings",
    "Embedder": "utilities.embeddings",
    "ImageCollection": "utilities.milvus_store",
    "ImageRecord": "utilities.records",
    "MilvusConnection": "utilities.milvus_connection",
    "connect": "utilities.milvus_connection",
    "index_folder": "utilities.pipeline",
    "IndexReport": "utilities.pipeline",
    "RayOptions": "utilities.ray_indexing",
    "search_images": "utilities.search",
    "plot_results": "utilities.plotting",
    "copy_results": "utilities.files",
    "find_images": "utilities.images",
    "load_image": "utilities.images",
    "ImageSearchError": "utilities.errors",
    "ImageLoadError": "utilities.errors",
    "CollectionMismatchError": "utilities.errors",
    "CollectionNotFoundError": "utilities.errors",
    "MilvusUnavailableError": "utilities.errors",
    "WeightsError": "utilities.errors",
}

__all__ = sorted(_EXPORTS)

# The API docs describe each name in its own module; without this, pdoc3 would repeat
# every class and function re-exported here on the package page as well.
__pdoc__ = {name: False for name in _EXPORTS}


def __getattr__(name: str) -> Any:
    """Import public names on first use, keeping `import utilities` fast."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'utilities' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
