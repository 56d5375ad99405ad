"""What every part of `ImageCollection` stands on: its connection, its name, and what it knows of its schema.

`milvus.collection.ImageCollection` combines this with `milvus.rows.CollectionRows` (writes and
reads of rows) and `milvus.vector_index.CollectionIndex` (the vector index and searches).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from utilities.config import MilvusTarget
from utilities.errors import CollectionMismatchError
from utilities.milvus.connection import MilvusConnection
from utilities.milvus.retry import RetryPolicy
from utilities.records import VECTOR_FIELD

T = TypeVar("T")

DEFAULT_METRIC = "COSINE"

CREATED_MARK = "; created "
"""What precedes the creation stamp in a collection's description (`creation_stamp`)."""


def creation_stamp() -> str:
    """A stamp no other collection gets: the time in nanoseconds and a random part."""
    import time
    import uuid

    return f"{time.time_ns()}-{uuid.uuid4().hex[:12]}"


class CollectionBase:
    """A named collection on a connection, with cached facts about its schema and index.

    Args:
        connection: The open connection.
        name: Collection name.
    """

    def __init__(self, connection: MilvusConnection, name: str) -> None:
        self.connection = connection
        self.name = name
        self._index_cache: dict[str, Any] | None = None
        self._dimension_cache: int | None = None

    # ------------------------------------------------------------ the connection
    @property
    def client(self) -> Any:
        """The current pymilvus client (a new one after a reconnect)."""
        return self.connection.client

    @property
    def target(self) -> MilvusTarget:
        """Where the collection lives."""
        return self.connection.target

    @property
    def retry(self) -> RetryPolicy:
        """Retry budget and backoff of calls that are safe to repeat."""
        return self.connection.retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self.connection.retry = policy

    @property
    def closed(self) -> bool:
        """Whether `close` was called."""
        return self.connection.closed

    @property
    def _timeout(self) -> float:
        """Seconds one attempt of a call may take (`milvus.retry.RetryPolicy.call_timeout`)."""
        return self.retry.call_timeout

    def _retrying(self, what: str, call: Callable[[Any], T]) -> T:
        """A call that is safe to repeat, retried while the server is unreachable.

        After a reconnect the collection is loaded again: a restarted server may not have
        loaded it yet.
        """
        return self.connection.retrying(what, call, collection=self.name, after_reconnect=self._reload_after_reconnect)

    def _once(self, what: str, call: Callable[[Any], T]) -> T:
        """A call that must not be repeated blindly (plain inserts, index and collection changes)."""
        return self.connection.once(what, call, collection=self.name)

    def _before_vector_read(self) -> None:
        """Called before stored vectors are read; `milvus.vector_index.CollectionIndex` checks there that the
        server keeps them (`milvus.storage_probe`)."""

    def _reload_after_reconnect(self) -> None:
        if not self.target.is_lite:
            self._once("load_collection", lambda client: client.load_collection(self.name))

    # ------------------------------------------------------------- the schema
    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(
            self._retrying("has_collection", lambda client: client.has_collection(self.name, timeout=self._timeout))
        )

    @property
    def dimension(self) -> int:
        """Length of the stored vectors (asked once, then cached: inserts and searches check it)."""
        if self._dimension_cache is None:
            described = self._retrying(
                "describe_collection", lambda client: client.describe_collection(self.name, timeout=self._timeout)
            )
            for field in described["fields"]:
                if field["name"] == VECTOR_FIELD:
                    self._dimension_cache = int(field["params"]["dim"])
                    break
            else:
                raise CollectionMismatchError(f"collection {self.name!r} has no {VECTOR_FIELD!r} field")
        return self._dimension_cache

    def identity(self) -> str:
        """What tells this collection apart from one dropped and made again under the same name: the
        server's id and creation time of it; on Milvus Lite, which reports neither, the creation stamp
        written into its description (`CREATED_MARK`; "" for a collection made before the package
        wrote one)."""
        described = self._retrying(
            "describe_collection", lambda client: client.describe_collection(self.name, timeout=self._timeout)
        )
        identity = f"{described.get('collection_id', 0)}:{described.get('created_timestamp', 0)}"
        if identity != "0:0":
            return identity
        _, marked, stamp = str(described.get("description", "")).rpartition(CREATED_MARK)
        return f"created {stamp.strip()}" if marked and stamp.strip() else ""

    def _forget_schema(self) -> None:
        """Drop what was cached about the collection (after it is created or dropped)."""
        self._index_cache = None
        self._dimension_cache = None

    def index_info(self) -> dict[str, Any] | None:
        """The vector index description (type, metric, params), or None."""
        if self._index_cache is None:
            names = self._retrying(
                "list_indexes",
                lambda client: client.list_indexes(self.name, field_name=VECTOR_FIELD, timeout=self._timeout),
            )
            if not names:
                return None
            self._index_cache = self._retrying(
                "describe_index", lambda client: client.describe_index(self.name, names[0], timeout=self._timeout)
            )
        return self._index_cache

    @property
    def metric(self) -> str:
        """Metric of the vector index (`COSINE`, `IP` or `L2`)."""
        info = self.index_info()
        return str(info["metric_type"]).upper() if info else DEFAULT_METRIC

    @property
    def index_type(self) -> str:
        """Type of the vector index, for example `FLAT` or `HNSW`."""
        info = self.index_info()
        return str(info["index_type"]).upper() if info else "NONE"
