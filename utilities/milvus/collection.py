"""`ImageCollection`: one Milvus collection of image vectors with their paths.

One collection holds one row per image: an INT64 id derived from the path, the
path itself (VARCHAR), the embedding (FLOAT_VECTOR), the file's size and
modification time (so a re-run can tell changed files) and a hash of its content
(so a moved file keeps its vector instead of being embedded again). Collections are created
with Strong consistency, so a count or a search right after an insert sees it.

The class is assembled from one module per job: `milvus.connection` (the client, the Lite
owner lock, retries, reconnecting), `milvus.base` (the name and cached schema facts),
`milvus.rows` (writes and reads of `records.ImageRecord`s), `milvus.vector_index` (the
vector index and searches); this module adds opening, creating, validating and dropping.
The same code serves Milvus Lite (a local `.db` file) and a Milvus server
(`http://host:19530`, standalone or distributed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

from utilities.config import DEFAULT_COLLECTION, MilvusTarget
from utilities.errors import CollectionMismatchError, CollectionNotFoundError
from utilities.milvus.base import CREATED_MARK, DEFAULT_METRIC, creation_stamp
from utilities.milvus.chunks import chunked
from utilities.milvus.connection import LITE_BUSY_WAIT_SECONDS, MilvusConnection, connect
from utilities.milvus.retry import RetryPolicy
from utilities.milvus.rows import (
    MAX_REQUEST_BYTES,
    PATH_MAX_BYTES,
    SERVER_MAX_REQUEST_BYTES,
    CollectionRows,
    quote_string,
)
from utilities.milvus.vector_index import (
    DEFAULT_INDEX_PARAMS,
    DEFAULT_SEARCH_PARAMS,
    LITE_INDEX_TYPES,
    METRICS,
    SEARCH_CONSISTENCY,
    SERVER_INDEX_TYPES,
    CollectionIndex,
    distance_from_score,
    vector_index_params,
)
from utilities.records import HASH_FIELD, ID_FIELD, MTIME_FIELD, PATH_FIELD, SIZE_FIELD, VECTOR_FIELD

logger = logging.getLogger(__name__)

HASH_MAX_LENGTH = 64
INDEX_WAIT_SECONDS = 5.0
"""How long opening a server collection without a vector index waits for the one its creator is adding."""

__all__ = [
    "DEFAULT_INDEX_PARAMS",
    "DEFAULT_METRIC",
    "DEFAULT_SEARCH_PARAMS",
    "HASH_FIELD",
    "HASH_MAX_LENGTH",
    "ID_FIELD",
    "LITE_BUSY_WAIT_SECONDS",
    "LITE_INDEX_TYPES",
    "MAX_REQUEST_BYTES",
    "METRICS",
    "MTIME_FIELD",
    "PATH_FIELD",
    "PATH_MAX_BYTES",
    "SEARCH_CONSISTENCY",
    "SERVER_INDEX_TYPES",
    "SERVER_MAX_REQUEST_BYTES",
    "SIZE_FIELD",
    "VECTOR_FIELD",
    "ImageCollection",
    "connect",
    "distance_from_score",
    "quote_string",
]


def _batches_by_bytes(row_bytes: Sequence[int], limit: int) -> Iterator[slice]:
    """Slices of consecutive rows whose sizes add up to at most `limit` (one oversized row alone)."""
    for part in chunked(range(len(row_bytes)), max_bytes=limit, size_of=lambda i: row_bytes[i]):
        yield slice(part.start, part.stop)


class ImageCollection(CollectionRows, CollectionIndex):
    """One Milvus collection of image vectors with their paths.

    Use `ImageCollection.open` to connect and create or validate in one call.

    Calls that are safe to repeat (reads, searches, upserts, deletes) are retried with
    backoff while the server is unreachable, reconnecting in between, for up to
    `milvus.retry.RetryPolicy.seconds`; then `MilvusUnavailableError` names the URI.

    Args:
        connection: An open `MilvusConnection` (or, for compatibility, a pymilvus client,
            wrapped with `target` and `milvus.retry`).
        name: Collection name.
        target: Where a bare client is connected.
        retry: Retry budget and backoff for a bare client; `RetryPolicy()` (60 s) by default.

    Example:
        >>> store = ImageCollection.open("db/milvus.db", dimension=2048)  # doctest: +SKIP
        >>> store.insert(["/a.jpg"], np.zeros((1, 2048), np.float32))  # doctest: +SKIP
        1
        >>> store.count()  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        connection: MilvusConnection | Any,
        name: str = DEFAULT_COLLECTION,
        target: MilvusTarget | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not isinstance(connection, MilvusConnection):
            connection = MilvusConnection(connection, target or MilvusTarget(uri="?"), retry)
        super().__init__(connection, name)

    @classmethod
    def open(
        cls,
        uri: str | os.PathLike | None = None,
        token: str | None = None,
        name: str = DEFAULT_COLLECTION,
        dimension: int | None = None,
        metric: str | None = None,
        create: bool = True,
        reset: bool = False,
        timeout: float = 10.0,
        retry_seconds: float | None = None,
    ) -> ImageCollection:
        """Connect, then create the collection or check the existing one.

        Args:
            uri: Lite file or server URI (see `MilvusConnection.open`).
            token: Server token (see `MilvusConnection.open`).
            name: Collection name.
            dimension: Vector length. Required to create; checked against an
                existing collection when given.
            metric: `COSINE` (default for new collections), `IP` or `L2`. Checked
                against an existing collection's index when given.
            create: Create the collection if it does not exist.
            reset: Drop and recreate it (its rows are deleted).
            timeout: Seconds to wait for a server.
            retry_seconds: How long later calls keep retrying while the server is
                unreachable (default `milvus.retry.DEFAULT_RETRY_SECONDS`; 0 fails at once).

        Returns:
            The opened collection.

        Raises:
            MilvusUnavailableError: Milvus cannot be reached.
            CollectionNotFoundError: It does not exist and `create` is False.
            CollectionMismatchError: It exists with other fields, dimension or metric.
            ValueError: `dimension` is missing for a new collection, or `metric` unknown.
        """
        store = cls.connect(uri, token, name, timeout, retry_seconds)
        store.ensure(dimension=dimension, metric=metric, create=create, reset=reset)
        return store

    @classmethod
    def connect(
        cls,
        uri: str | os.PathLike | None = None,
        token: str | None = None,
        name: str = DEFAULT_COLLECTION,
        timeout: float = 10.0,
        retry_seconds: float | None = None,
    ) -> ImageCollection:
        """Connect without creating or checking the collection (call `ensure` next); see `open`."""
        policy = RetryPolicy() if retry_seconds is None else RetryPolicy(seconds=float(retry_seconds))
        return cls(MilvusConnection.open(uri, token, timeout, retry=policy), name)

    def ensure(
        self, dimension: int | None = None, metric: str | None = None, create: bool = True, reset: bool = False
    ) -> None:
        """Create the collection if needed, otherwise validate it (see `open`)."""
        if metric is not None and metric.upper() not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if reset and self.exists():
            logger.info("dropping collection %s (reset)", self.name)
            self.drop()
        if self.exists():
            self._use_existing(dimension, metric)
            return
        if not create:
            existing = self._retrying("list_collections", lambda client: client.list_collections())
            raise CollectionNotFoundError(
                f"collection {self.name!r} does not exist at {self.target.shown}; index a folder first "
                f"or pick another name (existing: {existing})"
            )
        if dimension is None:
            raise ValueError("dimension is required to create a new collection")
        try:
            self._create(int(dimension), (metric or DEFAULT_METRIC).upper())
        except Exception:
            if not self.exists():
                raise
            # another process (a second shard, a Ray worker) created it between the check and the create
            logger.info("collection %s was created by another process meanwhile; using it", self.name)
            self._forget_schema()
            self._use_existing(dimension, metric)

    def _use_existing(self, dimension: int | None, metric: str | None) -> None:
        """Validate and load an existing collection.

        On a server, a collection another process has just created may not have its index yet (the client
        creates the collection, then its index, then loads it): wait a little for that index before
        `load` gives it the default one, so both processes agree on the metric.
        """
        if not self.target.is_lite:
            deadline = time.monotonic() + INDEX_WAIT_SECONDS
            while self.index_info() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        self.validate(dimension, metric)
        self.load()

    def _create(self, dimension: int, metric: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(  # the stamp tells this collection from one made again (`identity`)
            auto_id=False,
            enable_dynamic_field=False,
            description=f"image embeddings and their paths{CREATED_MARK}{creation_stamp()}",
        )
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(PATH_FIELD, DataType.VARCHAR, max_length=PATH_MAX_BYTES)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field(SIZE_FIELD, DataType.INT64)
        schema.add_field(MTIME_FIELD, DataType.INT64)
        schema.add_field(HASH_FIELD, DataType.VARCHAR, max_length=HASH_MAX_LENGTH)
        flat = vector_index_params(self.client, metric=metric)
        self._once(
            "create_collection",
            lambda client: client.create_collection(
                self.name, schema=schema, index_params=flat, consistency_level="Strong"
            ),
        )
        self._forget_schema()
        logger.info("created collection %s (dim=%d, metric=%s)", self.name, dimension, metric)

    def validate(self, dimension: int | None = None, metric: str | None = None) -> None:
        """Check the existing collection's fields, dimension and metric.

        Raises:
            CollectionMismatchError: With what differs and how to fix it.
        """
        from pymilvus import DataType

        described = self._retrying(
            "describe_collection", lambda client: client.describe_collection(self.name, timeout=self._timeout)
        )
        fields = {f["name"]: f for f in described["fields"]}
        expected = {
            ID_FIELD: DataType.INT64,
            PATH_FIELD: DataType.VARCHAR,
            VECTOR_FIELD: DataType.FLOAT_VECTOR,
            SIZE_FIELD: DataType.INT64,
            MTIME_FIELD: DataType.INT64,
            HASH_FIELD: DataType.VARCHAR,
        }
        problems = [
            f"field {name!r} should be {kind.name}"
            + (f" but is {fields[name]['type'].name}" if name in fields else " but is missing")
            for name, kind in expected.items()
            if fields.get(name, {}).get("type") != kind
        ]
        if not problems and dimension is not None and self.dimension != int(dimension):
            problems.append(f"vectors have dimension {self.dimension}, not {dimension}")
        if not problems and metric is not None and self.metric != metric.upper():
            problems.append(f"its index uses metric {self.metric}, not {metric.upper()}")
        if problems:
            raise CollectionMismatchError(
                f"collection {self.name!r} at {self.target.shown} does not match: {'; '.join(problems)}. "
                "Use another collection name, or reset=True to drop and recreate it (deletes its rows)."
            )

    def flush(self) -> None:
        """Seal the data written so far into persistent segments; the same as `seal`."""
        self.seal()

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop its local server process.

        A Lite file can be open in one process at a time: close it before another
        process (another notebook, the CLI) uses the same file. Other
        `ImageCollection` objects of this process on the same file stop working too.
        """
        self.connection.close()

    def drop(self) -> None:
        """Drop the collection and all its rows, and its projection if it has one."""
        from utilities.milvus.projection_store import drop_projection

        drop_projection(self)
        self._once("drop_collection", lambda client: client.drop_collection(self.name))
        self._forget_schema()
