"""Image similarity search with ResNet50 embeddings and Milvus.

Importing the package is cheap: TensorFlow/Keras and pymilvus are imported only
when a function needs them.

The front door is `ImageSearchEngine`:

Example:
    >>> from utilities import ImageSearchEngine  # doctest: +SKIP
    >>> engine = ImageSearchEngine(uri="db/milvus.db", weights="imagenet")  # doctest: +SKIP
    >>> report = engine.index_folder("my_photos/")  # doctest: +SKIP
    >>> engine.search("query.jpg", top_k=5)  # doctest: +SKIP

Subpackages by job (imports only run downward, from the front doors to the helpers):

- `images`: find image files, decode them into model inputs, in parallel batches, thumbnails;
- `milvus`: the connection (Lite or a server, retries) and `ImageCollection` with its parts;
- `indexing`: an indexing run (planning, background writes, the report, Ray);
- `duplicates`: exact and edited copies among the stored images (`engine.ImageSearchEngine.find_duplicates`);
- `web`: the search web page and its JSON API;
- `engine_parts`: what the verbs of `ImageSearchEngine` do (opening a collection, an indexing run, a
  duplicate run), so that the engine stays a list of thin verbs.

At the top: the front doors `engine` (`ImageSearchEngine`), `cli`, `search`, `catalog` (the
id-to-path DataFrame), `evaluation`, `demo`; `embeddings` (models), `projection` (reduced vectors,
`dims`), `plotting`, `files` (copying results), `datasets`, `splits`; and the shared helpers
`config`, `errors`, `ids`, `records`, `locks`, `hashing`, `atomic` (files replaced in one step) and
`quiet` (TensorFlow's start-up noise kept off the terminal).
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
    "ImageCollection": "utilities.milvus.collection",
    "ImageRecord": "utilities.records",
    "MilvusConnection": "utilities.milvus.connection",
    "connect": "utilities.milvus.connection",
    "index_folder": "utilities.indexing.pipeline",
    "IndexReport": "utilities.indexing.pipeline",
    "RayOptions": "utilities.indexing.on_ray",
    "search_images": "utilities.search",
    "find_duplicates": "utilities.duplicates.finder",
    "DuplicateReport": "utilities.duplicates.report",
    "plot_results": "utilities.plotting",
    "copy_results": "utilities.files",
    "find_images": "utilities.images.finding",
    "load_image": "utilities.images.decoding",
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
