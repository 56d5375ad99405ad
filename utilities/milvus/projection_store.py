"""A collection's projection (`projection.Projection`), stored in Milvus beside it.

It lives in a small companion collection, `<collection>__projection`, on the same Milvus Lite file
or server: row 0 holds the mean and, in its `note`, what the projection was fitted on; rows 1 to
`dims` hold the principal axes. Every client that opens the collection reads it from there, so
all of them project alike; dropping the collection drops it too (`ImageCollection.drop` calls
`drop_projection`). It needs only what every part of a collection has (`milvus.base.CollectionBase`),
so `milvus.collection` stands above it and the imports read one way.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from utilities.milvus.base import CollectionBase
from utilities.milvus.vector_index import vector_index_params
from utilities.projection import Projection

logger = logging.getLogger(__name__)

SUFFIX = "__projection"
"""What the companion collection's name adds to the collection's."""

NOTE_MAX_LENGTH = 1024


def projection_name(collection: str) -> str:
    """The companion collection's name.

    Example:
        >>> projection_name("images")
        'images__projection'
    """
    return collection + SUFFIX


def has_projection(store: CollectionBase) -> bool:
    """Whether the collection has a stored projection."""
    name = projection_name(store.name)
    return bool(store.connection.retrying("has_collection", lambda client: client.has_collection(name)))


def load_projection(store: CollectionBase) -> Projection | None:
    """The collection's projection, or None if it stores full vectors."""
    if not has_projection(store):
        return None
    name = projection_name(store.name)
    connection = store.connection
    connection.retrying("load_collection", lambda client: client.load_collection(name))
    rows = connection.retrying(
        "query",
        lambda client: client.query(
            name, filter="id >= 0", output_fields=["id", "vector", "note"], consistency_level="Strong", limit=16_384
        ),
    )
    by_id = {int(row["id"]): row for row in rows}
    if 0 not in by_id:
        return None  # made but never written (a run that stopped while fitting): fitted again
    note = json.loads(by_id[0]["note"])
    dims = int(note["dims"])
    if sorted(by_id) != list(range(dims + 1)):
        return None
    components = np.stack([np.asarray(by_id[n]["vector"], dtype=np.float32) for n in range(1, dims + 1)])
    mean = np.asarray(by_id[0]["vector"], dtype=np.float32)
    return Projection(mean, components, int(note["fitted_on"]), float(note["explained"]))


def save_projection(store: CollectionBase, projection: Projection) -> None:
    """Store the projection for the collection (replacing one that was never completely written)."""
    from pymilvus import DataType, MilvusClient

    name = projection_name(store.name)
    connection = store.connection
    if has_projection(store):
        connection.once("drop_collection", lambda client: client.drop_collection(name))
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="PCA projection")
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=projection.source_dimension)
    schema.add_field("note", DataType.VARCHAR, max_length=NOTE_MAX_LENGTH)
    index = vector_index_params(store.client, metric="L2", field="vector")
    connection.once(
        "create_collection",
        lambda client: client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong"),
    )
    note = json.dumps({"dims": projection.dims, "fitted_on": projection.fitted_on, "explained": projection.explained})
    rows = [{"id": 0, "vector": projection.mean.tolist(), "note": note}]
    rows += [{"id": n + 1, "vector": axis.tolist(), "note": ""} for n, axis in enumerate(projection.components)]
    for start in range(0, len(rows), 64):  # 64 rows of 2048-d float32 is 512 KB a request
        part = rows[start : start + 64]
        connection.retrying("upsert", lambda client, part=part: client.upsert(name, part))
    logger.info(
        "stored the projection of %s to %d dims (fitted on %d images, %.1f%% of the variance)",
        store.name,
        projection.dims,
        projection.fitted_on,
        100 * projection.explained,
    )


def drop_projection(store: CollectionBase) -> None:
    """Drop the collection's projection, if it has one."""
    if has_projection(store):
        name = projection_name(store.name)
        store.connection.once("drop_collection", lambda client: client.drop_collection(name))
