"""Queries: turn paths, images or vectors into vectors, search, return DataFrames."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from utilities.embeddings import Embedder
from utilities.images.decoding import decode_for_model, to_model_input
from utilities.milvus.collection import PATH_FIELD, ImageCollection, distance_from_score
from utilities.projection import Projection, as_stored

Query = str | os.PathLike | Image.Image | np.ndarray
"""One query: an image path, a loaded PIL image, or a vector (or a matrix of vectors)."""

RESULT_COLUMNS = ["rank", "id", "path", "distance", "score"]


def query_vectors(
    queries: Query | Sequence[Query], embedder: Embedder | None, projection: Projection | None = None
) -> tuple[list[str], np.ndarray]:
    """Embed the queries (vectors pass through, projected if they have the model's full length).

    Args:
        queries: One query or a list of them.
        embedder: Needed for paths and images; may be None for vectors only.
        projection: The collection's projection, if it has one: vectors of its source (the model's)
            length are projected with it (`projection.as_stored`), as `insert_vectors` does; images
            are left to the embedder, which should project them itself (`ProjectedEmbedder`).

    Returns:
        A label per query (its path, `image`, or `vector i`) and an `(n, d)` array.

    Raises:
        ImageLoadError: A query file cannot be decoded.
        ValueError: An image query was given without an embedder.
    """
    if isinstance(queries, np.ndarray):
        matrix = as_stored(np.atleast_2d(np.asarray(queries, dtype=np.float32)), projection)
        return [f"vector {i}" for i in range(len(matrix))], matrix
    items = list(queries) if isinstance(queries, (list, tuple)) else [queries]
    labels: list[str] = []
    rows: list[np.ndarray] = []
    images: list[np.ndarray] = []
    image_slots: list[int] = []
    for item in items:
        if isinstance(item, np.ndarray):
            rows.append(as_stored(np.asarray(item, dtype=np.float32).reshape(-1), projection))
            labels.append(f"vector {len(labels)}")
            continue
        if embedder is None:
            raise ValueError("an embedder is needed to search by image")
        size = embedder.image_size
        if isinstance(item, Image.Image):
            images.append(to_model_input(item, size))
            labels.append("image")
        else:
            images.append(decode_for_model(item, size))
            labels.append(Path(item).as_posix())
        image_slots.append(len(rows))
        rows.append(np.empty(0, np.float32))
    if images:
        vectors = embedder.embed_batch(np.stack(images))  # type: ignore[union-attr]
        for slot, vector in zip(image_slots, vectors, strict=True):
            rows[slot] = vector
    return labels, np.stack(rows).astype(np.float32)


def hits_to_frame(hits: list[list[dict[str, Any]]], metric: str, labels: list[str] | None = None) -> pd.DataFrame:
    """Flatten pymilvus search hits into a DataFrame.

    Columns: `rank` (1 = nearest), `id`, `path`, `distance` (smaller is closer: for
    COSINE/IP it is `1 - similarity`), `score` (Milvus' raw value); plus `query`
    (the query label) when `labels` has more than one entry.
    """
    records = []
    for query_index, query_hits in enumerate(hits):
        for rank, hit in enumerate(query_hits, start=1):
            entity = hit.get("entity", {})
            records.append(
                {
                    "query": labels[query_index] if labels else query_index,
                    "rank": rank,
                    "id": int(hit["id"]),
                    "path": entity.get(PATH_FIELD, ""),
                    "score": float(hit["distance"]),
                }
            )
    frame = pd.DataFrame(records, columns=["query", "rank", "id", "path", "score"])
    frame.insert(4, "distance", distance_from_score(frame["score"].to_numpy(), metric))
    if labels is not None and len(labels) <= 1:
        frame = frame.drop(columns="query")
    return frame


def search_images(
    store: ImageCollection,
    queries: Query | Sequence[Query],
    embedder: Embedder | None = None,
    top_k: int = 10,
    search_params: dict[str, Any] | None = None,
    projection: Projection | None = None,
) -> pd.DataFrame:
    """Find the stored images nearest to each query.

    Args:
        store: The collection to search.
        queries: An image path, a PIL image, a vector, a `(n, d)` matrix, or a list of these.
        embedder: The model used to index the collection (needed unless the queries are vectors).
        top_k: Neighbours per query.
        search_params: Overrides the index's default search parameters
            (for example `{"params": {"ef": 128}}`).
        projection: The collection's projection (`dims`), if it has one: query vectors of the model's
            full length are projected with it; vectors of the collection's length are searched as
            they are.

    Returns:
        A DataFrame with `rank`, `id`, `path`, `distance`, `score`; with a `query`
        column first when there are several queries.

    Raises:
        ValueError: `top_k` is not positive, or a query vector has neither the collection's length nor
            (with `projection`) the model's.
        ImageLoadError: A query image cannot be decoded.

    Example:
        >>> search_images(store, "query.jpg", embedder, top_k=3)  # doctest: +SKIP
           rank                   id              path  distance     score
        0     1  4611686018427387904  /data/a/cat.jpg  0.000000  1.000000
    """
    if top_k < 1:
        raise ValueError(f"top_k must be at least 1, got {top_k}")
    labels, vectors = query_vectors(queries, embedder, projection)
    hits = store.search(vectors, top_k=top_k, search_params=search_params)
    return hits_to_frame(hits, store.metric, labels)
