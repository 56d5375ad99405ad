"""Everything that talks to Milvus: connecting, the collection schema, inserts,
counts, indexes and raw searches.

One collection holds one row per image: an INT64 id derived from the path, the
path itself (VARCHAR), the embedding (FLOAT_VECTOR), the file's size and
modification time (so a re-run can tell changed files) and a hash of its content
(so a moved file keeps its vector instead of being embedded again). Collections are created
with Strong consistency, so a count or a search right after an insert sees it.

The same code serves Milvus Lite (a local `.db` file) and a Milvus server
(`http://host:19530`, standalone or distributed).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utilities.config import DEFAULT_COLLECTION, MilvusTarget, resolve_target
from utilities.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    ImageSearchError,
    MilvusUnavailableError,
)
from utilities.ids import path_id
from utilities.lite_import import import_milvus_lite
from utilities.retry import RetryPolicy, call_with_retry, is_transient

logger = logging.getLogger(__name__)

ID_FIELD = "id"
PATH_FIELD = "path"
VECTOR_FIELD = "vector"
SIZE_FIELD = "file_size"
MTIME_FIELD = "mtime_ns"
HASH_FIELD = "content_hash"
HASH_MAX_LENGTH = 64
PATH_MAX_BYTES = 4096
"""Longest path (in UTF-8 bytes) the `path` field holds."""

MAX_REQUEST_BYTES = 2 * 1024 * 1024
"""Upper bound on one insert request to Milvus Lite (~250 rows of 2048-d vectors).

Milvus Lite slows down sharply above about 4 MB a request: on a 2-core machine 10,000
rows of 2048-d went in at ~2,400 rows/s in 250-row requests against ~140 rows/s in
1,000-row ones (benchmarks/results/insert.md).
"""

SERVER_MAX_REQUEST_BYTES = 8 * 1024 * 1024
"""Upper bound on one insert request to a server (~1,000 rows of 2048-d vectors).

A server rejects messages over 64 MB; within that, larger requests are faster: 3,351
rows/s at 1,000 rows a request against 2,910 at 250 (benchmarks/results/insert.md).
"""

SEARCH_CONSISTENCY = "Session"
"""Consistency of searches: this client always sees its own writes, without waiting.

Counts and existence checks use Strong consistency (exact across processes). Strong
searches on a Milvus 2.3 server wait for the next time tick: measured p50 200 ms per
query against a few ms with Session (see benchmarks/results/search.md).
"""

DEFAULT_METRIC = "COSINE"
METRICS = ("COSINE", "IP", "L2")
LITE_INDEX_TYPES = ("FLAT", "IVF_FLAT", "AUTOINDEX")
SERVER_INDEX_TYPES = ("FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW", "AUTOINDEX")
DEFAULT_INDEX_PARAMS: dict[str, dict[str, int]] = {
    "FLAT": {},
    "AUTOINDEX": {},
    "IVF_FLAT": {"nlist": 128},
    "IVF_SQ8": {"nlist": 128},
    "HNSW": {"M": 16, "efConstruction": 200},
}
DEFAULT_SEARCH_PARAMS: dict[str, dict[str, int]] = {
    "IVF_FLAT": {"nprobe": 32},
    "IVF_SQ8": {"nprobe": 32},
    "HNSW": {"ef": 128},
}
"""Search parameters used unless the caller passes others.

Chosen from benchmarks/results/search*.md: HNSW (M=16, efConstruction=200) searched with
ef=128 reached recall@10 0.992 (p50 11 ms on the server) on 30,000 2048-d vectors in
overlapping clusters, where ef=64 gave 0.966; on 100,000 vectors in tight clusters ef=64
already gave 1.000. IVF's recall depends on the data: nprobe=32 of nlist=1024 found
everything in tight clusters but only 0.53 of the true top 10 (nprobe=32 of 692) in
overlapping ones; check yours with `evaluation.evaluate(index_type="IVF_FLAT")`.
"""


LITE_BUSY_WAIT_SECONDS = 5.0
"""How long `connect` waits for a Milvus Lite file held by another process. A process
killed with SIGKILL leaves its Lite server running for a moment (1.7 s measured) before
it notices and lets go of the file."""


def connect(
    uri: str | os.PathLike | None = None,
    token: str | None = None,
    timeout: float = 10.0,
    lite_busy_wait: float = LITE_BUSY_WAIT_SECONDS,
) -> tuple[Any, MilvusTarget]:
    """Open a pymilvus `MilvusClient` on a Lite file or a server.

    Args:
        uri: A Lite file path ending in `.db` (its folder is created), or a server
            URI such as `http://localhost:19530`. Defaults to `$MILVUS_URI`, then
            `db/milvus.db`.
        token: `user:password` or an API key; defaults to `$MILVUS_TOKEN`.
        timeout: Seconds to wait for a server to answer.
        lite_busy_wait: Seconds to keep trying a Lite file that another process holds.

    Returns:
        The client and the resolved target.

    Raises:
        MilvusUnavailableError: The server did not answer, refused the token, or the
            Lite file could not be opened. The message names the URI.

    Example:
        >>> client, target = connect("db/milvus.db")  # doctest: +SKIP
    """
    target = resolve_target(uri, token)
    if target.is_lite:
        import_milvus_lite()  # before pymilvus tries: its own error would only say "milvus-lite is required"
    from pymilvus import MilvusClient

    if target.is_lite:
        if not target.uri.endswith(".db"):
            raise MilvusUnavailableError(
                f"Milvus Lite file name {target.uri!r} must end in '.db' (for example db/milvus.db); "
                "for a server pass a URI such as http://localhost:19530"
            )
        Path(target.uri).expanduser().absolute().parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    owner = _lock_lite_file(target, lite_busy_wait) if target.is_lite else None
    while True:
        try:
            client = MilvusClient(uri=target.uri, token=target.token, timeout=timeout)
            break
        except Exception as error:  # noqa: BLE001 - pymilvus raises several unrelated types here
            # The Lite server of a process killed a moment ago can hold the database for a
            # second or two after that process' lock is gone ("database is locked"): wait for it.
            if owner is not None and time.monotonic() - started < lite_busy_wait:
                time.sleep(0.25)
                continue
            if owner is not None:
                owner.close()
            raise MilvusUnavailableError(_unavailable_message(target, error)) from error
    client._image_search_owner_lock = owner  # released by ImageCollection.close (or when the client goes)
    return client, target


def _lock_lite_file(target: MilvusTarget, wait: float) -> Any:
    """Take this process's lock on a Lite file, waiting up to `wait` s for another process to let go.

    Milvus Lite locks the file itself, but a refused second opener deletes that lock file on its
    way out (milvus-lite 2.5.1), after which a third process could open the file too. This lock
    lives in a file of its own that is never deleted (`.<name>.owner.lock` beside the database),
    so two processes using this package can never both hold the file. POSIX record locks
    (`lockf`) belong to the process: several collections of one process share the file, as
    Milvus Lite does. Where `fcntl` does not exist (Windows) only Milvus Lite's own lock applies.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return None
    database = Path(target.uri).expanduser().absolute()
    handle = open(database.with_name(f".{database.name}.owner.lock"), "a")  # noqa: SIM115 - held while open
    started = time.monotonic()
    while True:
        try:
            fcntl.lockf(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            if time.monotonic() - started >= wait:
                handle.close()
                raise MilvusUnavailableError(
                    f"cannot open Milvus Lite file {target.uri!r}: another process has it open (waited "
                    f"{wait:.0f} s). Milvus Lite serves one process at a time: close it there "
                    "(ImageCollection.close(), or end that notebook or command), or use a Milvus server "
                    "to share a collection between processes."
                ) from None
            time.sleep(0.25)


def _unavailable_message(target: MilvusTarget, error: Exception) -> str:
    if target.is_lite:
        return (
            f"cannot open Milvus Lite file {target.uri!r}: {error}. Check that its folder is writable, that it "
            "is a Milvus Lite database, and that no program other than this package has it open."
        )
    reason = getattr(error, "message", None) or str(error)
    if _port_answers(target.uri):
        given = "the token given was refused" if target.token else "no token was given"
        return (
            f"the Milvus server at {target.uri} answers but refused the connection ({given}): {reason}. "
            "Pass the right token as user:password (--token, or $MILVUS_TOKEN), and check that this URI "
            "is Milvus' gRPC port (19530 by default), not its HTTP port."
        )
    return (
        f"nothing answers at {target.uri}: {reason}. Start the Milvus server (see conf/ and the README) "
        "or fix the host and port, or use the embedded Lite file (uri='db/milvus.db')."
    )


def _port_answers(uri: str, timeout: float = 2.0) -> bool:
    """Whether something accepts TCP connections at the URI's host and port."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri if "://" in uri else f"http://{uri}")
    try:
        with socket.create_connection((parts.hostname or "localhost", parts.port or 19530), timeout=timeout):
            return True
    except (OSError, ValueError):
        return False


def distance_from_score(scores: np.ndarray, metric: str) -> np.ndarray:
    """Turn Milvus scores into distances where smaller means closer.

    COSINE and IP return similarities (1 is identical): the distance is `1 - score`.
    L2 already is a (squared) distance.

    Example:
        >>> distance_from_score(np.array([1.0, 0.25]), "COSINE").tolist()
        [0.0, 0.75]
    """
    scores = np.asarray(scores, dtype=np.float64)
    return scores if metric == "L2" else np.maximum(1.0 - scores, 0.0)


def quote_string(value: str) -> str:
    r"""A Milvus filter-expression string literal for `value`, with quotes and backslashes escaped.

    User-controlled text (paths, hashes) must only reach a filter through this, so
    that a file named `x" or id > 0 or "` cannot widen a query or a delete.

    Example:
        >>> quote_string('x" or path != "')
        '"x\\" or path != \\""'
    """
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    return f'"{escaped}"'


def _drop_mvcc_warning(record: logging.LogRecord) -> bool:
    return "mvccTs" not in record.getMessage()


def _batches_by_bytes(row_bytes: Sequence[int], limit: int) -> Iterator[slice]:
    start, total = 0, 0
    for index, size in enumerate(row_bytes):
        if index > start and total + size > limit:
            yield slice(start, index)
            start, total = index, 0
        total += size
    if start < len(row_bytes):
        yield slice(start, len(row_bytes))


class ImageCollection:
    """One Milvus collection of image vectors with their paths.

    Use `ImageCollection.open` to connect and create or validate in one call.

    Calls that are safe to repeat (reads, searches, upserts, deletes) are retried with
    backoff while the server is unreachable, reconnecting in between, for up to
    `retry.seconds`; then `MilvusUnavailableError` names the URI.

    Args:
        client: A `pymilvus.MilvusClient`.
        name: Collection name.
        target: Where the client is connected (for messages, backend checks and reconnecting).
        retry: Retry budget and backoff; `RetryPolicy()` (60 s) by default.

    Example:
        >>> store = ImageCollection.open("db/milvus.db", dimension=2048)  # doctest: +SKIP
        >>> store.insert(["/a.jpg"], np.zeros((1, 2048), np.float32))  # doctest: +SKIP
        1
        >>> store.count()  # doctest: +SKIP
        1
    """

    def __init__(
        self,
        client: Any,
        name: str = DEFAULT_COLLECTION,
        target: MilvusTarget | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.target = target or MilvusTarget(uri="?")
        self.retry = retry or RetryPolicy()
        self._index_cache: dict[str, Any] | None = None
        self._dimension_cache: int | None = None
        self.closed = False
        self.search_consistency = SEARCH_CONSISTENCY

    # ----------------------------------------------------------------- opening
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
            uri: Lite file or server URI (see `connect`).
            token: Server token (see `connect`).
            name: Collection name.
            dimension: Vector length. Required to create; checked against an
                existing collection when given.
            metric: `COSINE` (default for new collections), `IP` or `L2`. Checked
                against an existing collection's index when given.
            create: Create the collection if it does not exist.
            reset: Drop and recreate it (its rows are deleted).
            timeout: Seconds to wait for a server.
            retry_seconds: How long later calls keep retrying while the server is
                unreachable (default `retry.DEFAULT_RETRY_SECONDS`; 0 fails at once).

        Returns:
            The opened collection.

        Raises:
            MilvusUnavailableError: Milvus cannot be reached.
            CollectionNotFoundError: It does not exist and `create` is False.
            CollectionMismatchError: It exists with other fields, dimension or metric.
            ValueError: `dimension` is missing for a new collection, or `metric` unknown.
        """
        client, target = connect(uri, token, timeout)
        policy = RetryPolicy() if retry_seconds is None else RetryPolicy(seconds=float(retry_seconds))
        store = cls(client, name, target, policy)
        store.ensure(dimension=dimension, metric=metric, create=create, reset=reset)
        return store

    # ------------------------------------------------------------ calling Milvus
    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method that is safe to repeat, retrying while the server is unreachable."""
        if method != "load_collection":  # loading a large collection may take long: no per-call limit
            kwargs.setdefault("timeout", self.retry.call_timeout)
        return call_with_retry(
            lambda: getattr(self.client, method)(*args, **kwargs),
            self.retry,
            describe=f"{method} on {self.name} at {self.target.uri}",
            reconnect=self._reconnect,
            give_up=lambda error, spent: self._unreachable(method, error, spent),
        )

    def _call_once(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call a client method that must not be repeated blindly; an unreachable server is reported clearly."""
        try:
            return getattr(self.client, method)(*args, **kwargs)
        except Exception as error:
            if is_transient(error):
                raise self._unreachable(method, error, 0.0) from error
            raise

    def _reconnect(self) -> None:
        """Replace the client with a new connection (a restarted server needs one)."""
        from pymilvus import MilvusClient

        old = self.client
        self.client = MilvusClient(uri=self.target.uri, token=self.target.token, timeout=self.retry.call_timeout)
        self.client._image_search_owner_lock = getattr(old, "_image_search_owner_lock", None)
        try:
            old.close()
        except Exception as error:  # noqa: BLE001 - the old connection is already broken
            logger.debug("closing the old client failed: %s", error)
        if not self.target.is_lite:
            self._call_once("load_collection", self.name)  # a restarted server may not have loaded it yet

    def _unreachable(self, method: str, error: BaseException, spent: float) -> MilvusUnavailableError:
        message = getattr(error, "message", None) or str(error)
        waited = f" (retried for {spent:.0f} s)" if spent >= 1 else ""
        return MilvusUnavailableError(
            f"Milvus at {self.target.uri} did not answer during {method} on collection {self.name!r}{waited}: "
            f"{message}. Check that it is running (python -m utilities info --uri {self.target.uri}), then "
            "run the same command again: rows already written are kept and are not written twice."
        )

    def exists(self) -> bool:
        """Whether the collection exists."""
        return bool(self._call("has_collection", self.name))

    def ensure(
        self, dimension: int | None = None, metric: str | None = None, create: bool = True, reset: bool = False
    ) -> None:
        """Create the collection if needed, otherwise validate it (see `open`)."""
        if metric is not None and metric.upper() not in METRICS:
            raise ValueError(f"unknown metric {metric!r}; use one of {', '.join(METRICS)}")
        if reset and self.exists():
            logger.info("dropping collection %s (reset)", self.name)
            self._call_once("drop_collection", self.name)
            self._forget_schema()
        if self.exists():
            self.validate(dimension, metric)
            self._load()
            return
        if not create:
            raise CollectionNotFoundError(
                f"collection {self.name!r} does not exist at {self.target.uri}; index a folder first "
                f"or pick another name (existing: {self._call('list_collections')})"
            )
        if dimension is None:
            raise ValueError("dimension is required to create a new collection")
        self._create(int(dimension), (metric or DEFAULT_METRIC).upper())

    def _create(self, dimension: int, metric: str) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(
            auto_id=False, enable_dynamic_field=False, description="image embeddings and their paths"
        )
        schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
        schema.add_field(PATH_FIELD, DataType.VARCHAR, max_length=PATH_MAX_BYTES)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
        schema.add_field(SIZE_FIELD, DataType.INT64)
        schema.add_field(MTIME_FIELD, DataType.INT64)
        schema.add_field(HASH_FIELD, DataType.VARCHAR, max_length=HASH_MAX_LENGTH)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=VECTOR_FIELD, index_type="FLAT", metric_type=metric)
        self._call_once(
            "create_collection", self.name, schema=schema, index_params=index_params, consistency_level="Strong"
        )
        self._forget_schema()
        logger.info("created collection %s (dim=%d, metric=%s)", self.name, dimension, metric)

    def validate(self, dimension: int | None = None, metric: str | None = None) -> None:
        """Check the existing collection's fields, dimension and metric.

        Raises:
            CollectionMismatchError: With what differs and how to fix it.
        """
        from pymilvus import DataType

        fields = {f["name"]: f for f in self._call("describe_collection", self.name)["fields"]}
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
                f"collection {self.name!r} at {self.target.uri} does not match: {'; '.join(problems)}. "
                "Use another collection name, or reset=True to drop and recreate it (deletes its rows)."
            )

    def _load(self) -> None:
        if self.index_info() is None:
            index_params = self.client.prepare_index_params()
            index_params.add_index(field_name=VECTOR_FIELD, index_type="FLAT", metric_type=DEFAULT_METRIC)
            self._call_once("create_index", self.name, index_params)
            self._index_cache = None
        self._call("load_collection", self.name)

    # -------------------------------------------------------------- properties
    @property
    def dimension(self) -> int:
        """Length of the stored vectors (asked once, then cached: inserts and searches check it)."""
        if self._dimension_cache is None:
            for field in self._call("describe_collection", self.name)["fields"]:
                if field["name"] == VECTOR_FIELD:
                    self._dimension_cache = int(field["params"]["dim"])
                    break
            else:
                raise CollectionMismatchError(f"collection {self.name!r} has no {VECTOR_FIELD!r} field")
        return self._dimension_cache

    def _forget_schema(self) -> None:
        """Drop what was cached about the collection (after it is created or dropped)."""
        self._index_cache = None
        self._dimension_cache = None

    def index_info(self) -> dict[str, Any] | None:
        """The vector index description (type, metric, params), or None."""
        if self._index_cache is None:
            names = self._call("list_indexes", self.name, field_name=VECTOR_FIELD)
            if not names:
                return None
            self._index_cache = self._call("describe_index", self.name, names[0])
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

    # ------------------------------------------------------------------ writes
    def insert(
        self,
        paths: Sequence[str],
        vectors: np.ndarray,
        ids: Sequence[int] | None = None,
        file_sizes: Sequence[int] | None = None,
        mtimes_ns: Sequence[int] | None = None,
        hashes: Sequence[str] | None = None,
        upsert: bool = True,
        max_request_bytes: int | None = None,
    ) -> int:
        """Write rows, split into requests of at most `max_request_bytes`.

        With `upsert=True` (the default) a row whose id already exists replaces it,
        so re-running a failed or interrupted insert never duplicates rows.

        Args:
            paths: Stored path of each row.
            vectors: `(len(paths), dimension)` float32 array.
            ids: Row ids; derived from the paths (`ids.path_id`) if None.
            file_sizes: File sizes in bytes (0 if unknown).
            mtimes_ns: Modification times in ns (0 if unknown).
            hashes: Content hashes (`""` if unknown).
            upsert: Replace rows with the same id instead of adding a second one.
            max_request_bytes: Byte budget of one request; by default `MAX_REQUEST_BYTES`
                for Milvus Lite and `SERVER_MAX_REQUEST_BYTES` for a server.

        Returns:
            The number of rows written.

        Raises:
            ValueError: Lengths or dimension disagree, or a path is too long.
        """
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        count = len(paths)
        if vectors.ndim != 2 or vectors.shape[0] != count:
            raise ValueError(f"expected {count} vectors as a 2-D array, got shape {vectors.shape}")
        if vectors.shape[1] != self.dimension:
            raise ValueError(
                f"vectors have dimension {vectors.shape[1]}, collection {self.name!r} expects {self.dimension}"
            )
        encoded = [p.encode("utf-8") for p in paths]
        too_long = [p for p, e in zip(paths, encoded, strict=True) if len(e) > PATH_MAX_BYTES]
        if too_long:
            raise ValueError(f"path longer than {PATH_MAX_BYTES} bytes: {too_long[0][:80]!r}...")
        row_ids = list(ids) if ids is not None else [path_id(p) for p in paths]
        sizes = list(file_sizes) if file_sizes is not None else [0] * count
        mtimes = list(mtimes_ns) if mtimes_ns is not None else [0] * count
        digests = list(hashes) if hashes is not None else [""] * count
        # An upsert keyed by id can be repeated safely (retried if the server drops out); a
        # plain insert cannot: repeating one that reached the server would add the rows twice.
        write = self._call if upsert else self._call_once
        method = "upsert" if upsert else "insert"
        row_bytes = [vectors.shape[1] * 4 + len(e) + 32 for e in encoded]
        budget = max_request_bytes or (MAX_REQUEST_BYTES if self.target.is_lite else SERVER_MAX_REQUEST_BYTES)
        for part in _batches_by_bytes(row_bytes, budget):
            rows = [
                {
                    ID_FIELD: int(row_ids[i]),
                    PATH_FIELD: paths[i],
                    VECTOR_FIELD: vectors[i],
                    SIZE_FIELD: int(sizes[i]),
                    MTIME_FIELD: int(mtimes[i]),
                    HASH_FIELD: digests[i],
                }
                for i in range(part.start, part.stop)
            ]
            write(method, self.name, rows)
        return count

    def delete(self, ids: Sequence[int]) -> None:
        """Delete rows by id (ids that do not exist are ignored)."""
        for start in range(0, len(ids), 1000):
            self._call("delete", self.name, ids=[int(i) for i in ids[start : start + 1000]])

    def flush(self) -> None:
        """Seal the data written so far into persistent segments (server)."""
        self._call("flush", self.name)

    def close(self) -> None:
        """Close the connection; for Milvus Lite also stop its local server process.

        A Lite file can be open in one process at a time: close it before another
        process (another notebook, the CLI) uses the same file. Other
        `ImageCollection` objects of this process on the same file stop working too.
        """
        try:
            self.client.close()
        except Exception as error:  # noqa: BLE001 - closing a connection to a stopped server
            logger.debug("closing the client failed: %s", error)
        self.closed = True
        if self.target.is_lite:
            from milvus_lite.server_manager import server_manager_instance

            server_manager_instance.release_server(self.target.uri)
            owner = getattr(self.client, "_image_search_owner_lock", None)
            if owner is not None:
                owner.close()  # lets another process open the file

    def drop(self) -> None:
        """Drop the collection and all its rows."""
        self._call_once("drop_collection", self.name)
        self._forget_schema()

    # ------------------------------------------------------------------- reads
    def count(self) -> int:
        """Exact number of rows (Strong consistency: includes the last insert)."""
        result = self._call("query", self.name, filter="", output_fields=["count(*)"], consistency_level="Strong")
        return int(result[0]["count(*)"])

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        """The subset of `ids` already stored."""
        found: set[int] = set()
        for start in range(0, len(ids), 1000):
            chunk = [int(i) for i in ids[start : start + 1000]]
            rows = self._call(
                "query",
                self.name,
                filter=f"{ID_FIELD} in {chunk}",
                output_fields=[ID_FIELD],
                consistency_level="Strong",
            )
            found.update(int(row[ID_FIELD]) for row in rows)
        return found

    def get(self, ids: Sequence[int], fields: Sequence[str] = (ID_FIELD, PATH_FIELD)) -> list[dict]:
        """Rows by id, with the requested fields."""
        rows: list[dict] = []
        for start in range(0, len(ids), 1000):
            rows.extend(
                self._call(
                    "get", self.name, ids=[int(i) for i in ids[start : start + 1000]], output_fields=list(fields)
                )
            )
        return rows

    def rows_by_hash(self, hashes: Sequence[str], fields: Sequence[str] = (ID_FIELD, PATH_FIELD)) -> list[dict]:
        """Rows whose content hash is one of `hashes` (for finding moved files)."""
        rows: list[dict] = []
        unique = sorted(set(hashes) - {""})
        for start in range(0, len(unique), 500):
            literals = ", ".join(quote_string(h) for h in unique[start : start + 500])
            rows.extend(
                self._call(
                    "query",
                    self.name,
                    filter=f"{HASH_FIELD} in [{literals}]",
                    output_fields=list(fields),
                    consistency_level="Strong",
                )
            )
        return rows

    def iter_rows(self, fields: Sequence[str] = (ID_FIELD, PATH_FIELD), batch_size: int = 1000) -> Iterator[list[dict]]:
        """Yield every row in pages of `batch_size` (for the mapping or exports)."""
        # pymilvus warns on every iterator that it falls back to a client-side timestamp;
        # that is expected with Strong consistency, so keep it out of the user's log.
        logging.getLogger("pymilvus.orm.iterator").addFilter(_drop_mvcc_warning)
        iterator = self._call("query_iterator", self.name, batch_size=batch_size, filter="", output_fields=list(fields))
        try:
            while page := iterator.next():
                yield page
        finally:
            iterator.close()

    # ----------------------------------------------------------------- indexes
    def supported_index_types(self) -> tuple[str, ...]:
        """Index types this backend accepts (Milvus Lite has fewer)."""
        return LITE_INDEX_TYPES if self.target.is_lite else SERVER_INDEX_TYPES

    def create_index(self, index_type: str = "HNSW", metric: str | None = None, **params: int) -> dict[str, Any]:
        """Replace the vector index and load the collection again.

        Args:
            index_type: `FLAT` (exact), `IVF_FLAT` (`nlist`), `HNSW` (`M`,
                `efConstruction`; server only), `IVF_SQ8` (server only) or `AUTOINDEX`.
            metric: `COSINE`, `IP` or `L2`; keeps the current one if None.
            **params: Build parameters; defaults from `DEFAULT_INDEX_PARAMS`.

        Returns:
            The new index description.

        Raises:
            ImageSearchError: The backend does not support that index type.

        Example:
            >>> store.create_index("IVF_FLAT", nlist=256)  # doctest: +SKIP
        """
        kind = index_type.upper()
        if kind not in self.supported_index_types():
            backend = "Milvus Lite" if self.target.is_lite else "this Milvus server"
            raise ImageSearchError(
                f"{backend} does not support index type {kind}; choose one of "
                f"{', '.join(self.supported_index_types())}"
                + (" (HNSW needs a Milvus server: see the README)" if self.target.is_lite else "")
            )
        chosen_metric = (metric or self.metric).upper()
        build = {**DEFAULT_INDEX_PARAMS.get(kind, {}), **params}
        self._call("release_collection", self.name)
        for name in self._call("list_indexes", self.name, field_name=VECTOR_FIELD):
            self._call_once("drop_index", self.name, name)
        index_params = self.client.prepare_index_params()
        index_params.add_index(field_name=VECTOR_FIELD, index_type=kind, metric_type=chosen_metric, params=build)
        self._call_once("create_index", self.name, index_params)
        self._index_cache = None
        self._call("load_collection", self.name)
        logger.info("built %s index on %s (%s, %s)", kind, self.name, chosen_metric, build)
        return self.index_info() or {}

    def search_params(self, top_k: int, **overrides: int) -> dict[str, Any]:
        """Search parameters suited to the current index (`ef` >= `top_k` for HNSW, `nprobe` <= `nlist`)."""
        params = {**DEFAULT_SEARCH_PARAMS.get(self.index_type, {}), **overrides}
        if self.index_type == "HNSW":
            params["ef"] = max(int(params["ef"]), top_k)
        if "nprobe" in params and "nlist" in (self.index_info() or {}):
            params["nprobe"] = max(1, min(int(params["nprobe"]), int(self.index_info()["nlist"])))
        return {"metric_type": self.metric, "params": params}

    def search(
        self, vectors: np.ndarray, top_k: int = 10, search_params: dict[str, Any] | None = None
    ) -> list[list[dict]]:
        """Nearest rows for each query vector, as pymilvus returns them.

        Args:
            vectors: `(n, dimension)` float32 queries.
            top_k: Neighbours per query.
            search_params: Overrides `search_params(top_k)`.

        Returns:
            For each query, a list of `{"id", "distance", "entity": {"path"}}` hits.
        """
        vectors = np.ascontiguousarray(np.atleast_2d(vectors), dtype=np.float32)
        if vectors.shape[1] != self.dimension:
            raise ValueError(
                f"query vectors have dimension {vectors.shape[1]}, collection {self.name!r} holds {self.dimension}"
            )
        return self._call(
            "search",
            self.name,
            data=list(vectors),
            limit=int(top_k),
            output_fields=[PATH_FIELD],
            search_params=search_params or self.search_params(top_k),
            anns_field=VECTOR_FIELD,
            consistency_level=self.search_consistency,
        )
