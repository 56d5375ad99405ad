"""Whether a server keeps its stored vectors when they are read under an index that holds no float vectors.

IVF_SQ8 and IVF_PQ keep compressed codes in memory, not the float vectors; a query that asks for the
vectors makes the server read them from its storage through its chunk cache. The server of the `milvus`
PyPI package (`milvus-server`, which reports a version ending in `-lite`) keeps its segments in a local
folder given by an absolute `localStorage.path`. Measured on its 2.3.5: that read writes the cache's copy
at the vector file's own path and then deletes it, so the vectors are gone once the collection is loaded
again (the server answers `invalid local path`, and the rows can no longer be read or loaded). With a
relative path, `milvus-server --data DIR --extra-config localStorage.path=data` (the same folder, since
the launcher runs the server in `DIR`), the cache writes beside the data and nothing is lost.

The package reads stored vectors for re-ranking, moved files, search by row id and duplicates, so before
the first such read under these indexes on such a server it asks the server itself: `check_vector_reads`
writes a small scratch collection, reads its vectors under IVF_SQ8, loads it again and reads them again
(about 30 s). Servers that do not report `-lite` (a Docker standalone, a cluster, both on MinIO or S3 by
default) are not probed; this package's tests run the PyPI server only.

The answer holds until the server restarts (only a restart can change its `localStorage.path`), so it is
remembered per server start: on the connection, and in `server-checks.json` in `config.cache_dir()`
(`~/.cache/milvus-image-similarity/` unless `$UTILITIES_CACHE_DIR` or `$XDG_CACHE_HOME` says otherwise),
keyed by the server's address and its start time (`milvus.server_start`). Later commands against the
same running server read the answer there; a restarted server is probed again. Where the start time
cannot be asked or the file cannot be written, each new connection probes again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from utilities.atomic import replaced_atomically
from utilities.config import cache_dir
from utilities.errors import ImageSearchError, MilvusUnavailableError
from utilities.milvus.server_start import server_started
from utilities.records import ID_FIELD, VECTOR_FIELD

if TYPE_CHECKING:
    from utilities.milvus.connection import MilvusConnection

logger = logging.getLogger(__name__)

INDEXES_WITHOUT_VECTORS = ("IVF_SQ8", "IVF_PQ")
"""Server index types that keep codes instead of the float vectors: reading vectors goes to storage.
The one list of them: `milvus.vector_index.DEFAULT_REFINE` (searches re-ranked on the float vectors) is
made from it."""

PROBE_ROWS = 2_048
"""Rows of the scratch collection: above the 1,024 rows from which a sealed segment gets its index."""

PROBE_DIMENSION = 8

PROBE_INDEX: tuple[str, dict[str, int]] = ("IVF_SQ8", {"nlist": 8})
"""The index the scratch collection's vectors are read under, and its build parameters."""

PROBE_INDEX_WAIT_SECONDS = 300.0
"""How long the check waits for that index to cover the scratch rows (seconds on a 2-core machine)."""

PROBE_POLL_SECONDS = 0.5

SCRATCH_PREFIX = "vector_read_probe_"
"""How the scratch collection's name begins (a random part follows)."""

VERDICTS_FILE = "server-checks.json"
"""The file in `config.cache_dir()` that remembers each server's answer until it restarts."""

FIX = (
    "start the server with a relative storage path, `milvus-server --data DIR --extra-config "
    "localStorage.path=data` (the same folder: nothing moves), or choose an index that keeps the vectors "
    "(AUTO, SCANN, HNSW or FLAT)"
)


class VectorReadsDestroyVectorsError(ImageSearchError):
    """The server deletes stored vectors when they are read under IVF_SQ8 / IVF_PQ."""


def needs_check(server_version: str) -> bool:
    """Whether a server of this version keeps its data in a local folder the way the probe checks: the
    `milvus` PyPI server reports a version ending in `-lite`.

    Example:
        >>> needs_check("v2.3.5-lite"), needs_check("v2.5.4")
        (True, False)
    """
    return server_version.strip().lower().endswith("-lite")


def check_vector_reads(connection: MilvusConnection) -> None:
    """Raise before the first read of stored vectors under IVF_SQ8 / IVF_PQ on a server that would delete
    them. The answer is kept on the connection and, until the server restarts, in `VERDICTS_FILE` in
    `config.cache_dir()`: a server is probed once per start, not once per command.

    Raises:
        VectorReadsDestroyVectorsError: The scratch collection's vectors could not be read again after
            being read once and loaded again (its message says what to do).
        MilvusUnavailableError: The server stopped answering during the check.
        Exception: Any other failure of the check before that second read (the rights to create a
            collection, say), as it came: it says nothing about the stored vectors.
    """
    if connection.target.is_lite or connection.vector_reads_checked:
        return
    version = str(connection.retrying("get_server_version", lambda client: client.get_server_version()))
    if needs_check(version):
        address = connection.target.shown
        started = server_started(connection)
        known = remembered_verdict(address, started)
        if known is None:
            kept, when = vectors_survive_reads(connection), "just now"
            if started is not None:
                remember_verdict(address, started, kept, version)
        else:
            kept, when = known["vectors_survive_reads"], f"at {known['checked']}, since it last started"
        if not kept:
            raise VectorReadsDestroyVectorsError(
                f"the Milvus server at {address} ({version}) deletes stored vectors when they are read under "
                "IVF_SQ8 or IVF_PQ (its localStorage.path is absolute; checked on a scratch collection "
                f"{when}): nothing was read. To keep your vectors, {FIX}"
            )
    connection.vector_reads_checked = True


def vectors_survive_reads(connection: MilvusConnection) -> bool:
    """Write a scratch collection, read its vectors under IVF_SQ8, load it again and read them again.

    The scratch collection is made with the client itself (an id and a vector field), not as an
    `ImageCollection`: this module stands below `milvus.vector_index`, which calls it.
    Only the second read's failure means the vectors were lost (the damaged server answers
    `invalid local path`); a failure of any step before it is not an answer, and is raised as it came.

    Returns:
        Whether the second read returned the vectors written. The scratch collection is dropped.

    Raises:
        MilvusUnavailableError: The server stopped answering (the scratch collection may be left behind:
            its name is logged).
        Exception: Whatever a step before the second read raised (a refused collection, a timeout).
    """
    name = f"{SCRATCH_PREFIX}{uuid.uuid4().hex[:12]}"
    vectors = np.random.default_rng(0).normal(size=(PROBE_ROWS, PROBE_DIMENSION)).astype(np.float32)
    ids = list(range(PROBE_ROWS))
    failure: BaseException | None = None
    try:
        _write_scratch(connection, name, vectors)
        _index_scratch(connection, name)
        connection.retrying("load_collection", lambda client: client.load_collection(name))
        read_vectors(connection, name, ids[:4])
        connection.retrying("release_collection", lambda client: client.release_collection(name))
        connection.retrying("load_collection", lambda client: client.load_collection(name))
        try:
            again = read_vectors(connection, name, ids[:4])
        except MilvusUnavailableError:
            raise
        except Exception as error:  # noqa: BLE001 - the damaged server answers with a generic MilvusException
            logger.info("the second read of the vector read probe failed: %s", str(error).splitlines()[0][:300])
            kept = False
        else:
            kept = sorted(again) == ids[:4] and all(np.allclose(again[i], vectors[i], atol=1e-5) for i in again)
    except BaseException as error:
        failure = error
        raise
    finally:
        _drop_scratch(connection, name, failure)
    logger.info("stored vectors %s a read under IVF_SQ8 on %s", "survive" if kept else "do not survive", name)
    return kept


def _write_scratch(connection: MilvusConnection, name: str, vectors: np.ndarray) -> None:
    """Create the scratch collection and write `vectors` into one sealed segment (ids 0, 1, ...)."""
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description="vector read probe")
    schema.add_field(ID_FIELD, DataType.INT64, is_primary=True)
    schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=int(vectors.shape[1]))
    connection.once(
        "create_collection",
        lambda client: client.create_collection(name, schema=schema, consistency_level="Strong"),
        collection=name,
    )
    rows = [{ID_FIELD: i, VECTOR_FIELD: vector.tolist()} for i, vector in enumerate(vectors)]
    connection.once("insert", lambda client: client.insert(name, rows), collection=name)
    connection.retrying("flush", lambda client: client.flush(name), collection=name)


def _index_scratch(connection: MilvusConnection, name: str) -> None:
    """Give the scratch collection's vectors `PROBE_INDEX` and wait until it covers every row.

    Raises:
        ImageSearchError: The index did not cover the rows within `PROBE_INDEX_WAIT_SECONDS` (reads
            before that would not go through it, so they could not answer).
    """
    kind, params = PROBE_INDEX

    def create(client: Any) -> None:
        index = client.prepare_index_params()
        index.add_index(field_name=VECTOR_FIELD, index_type=kind, metric_type="COSINE", params=params)
        client.create_index(name, index)

    connection.once("create_index", create, collection=name)
    names = connection.retrying(
        "list_indexes", lambda client: client.list_indexes(name, field_name=VECTOR_FIELD), collection=name
    )
    deadline = time.monotonic() + PROBE_INDEX_WAIT_SECONDS
    while True:
        info = connection.retrying(
            "describe_index", lambda client: client.describe_index(name, names[0]), collection=name
        )
        total, done = int(info.get("total_rows", 0)), int(info.get("indexed_rows", 0))
        if total and done >= total:
            return
        if time.monotonic() > deadline:
            raise ImageSearchError(
                f"the vector read check could not finish: the {kind} index of its scratch collection {name} "
                f"covered {done} of {total} rows after {PROBE_INDEX_WAIT_SECONDS:.0f} s"
            )
        time.sleep(PROBE_POLL_SECONDS)


def _drop_scratch(connection: MilvusConnection, name: str, failure: BaseException | None) -> None:
    """Drop the scratch collection; what stops that is only logged (as a warning unless the probe itself
    failed, whose error tells the story)."""
    if isinstance(failure, MilvusUnavailableError):
        logger.warning("the scratch collection %s may be left on the server: drop it once it is back", name)
        return
    try:
        if connection.retrying("has_collection", lambda client: client.has_collection(name), collection=name):
            connection.once("drop_collection", lambda client: client.drop_collection(name), collection=name)
    except Exception as error:  # noqa: BLE001 - a scratch collection left behind is only reported
        log = logger.debug if failure is not None else logger.warning
        log("could not drop the scratch collection %s: %s", name, str(error).splitlines()[0][:300])


def verdicts_path() -> Path:
    """The file that remembers each server's answer: `VERDICTS_FILE` in `config.cache_dir()`."""
    return cache_dir() / VERDICTS_FILE


def remembered_verdict(address: str, started: str | None) -> dict[str, Any] | None:
    """The answer remembered for the server at `address` if it was given since that server `started`
    (`milvus.server_start.server_started`), else None: `{"vectors_survive_reads": bool, "checked": ...}`."""
    if started is None:
        return None
    try:
        entry = _read_verdicts().get(address)
    except (OSError, ValueError) as error:
        logger.debug("no remembered server checks in %s: %s", verdicts_path(), error)
        return None
    if not isinstance(entry, dict) or entry.get("started") != started:
        return None
    if not isinstance(entry.get("vectors_survive_reads"), bool):
        return None
    logger.info("the server at %s was checked at %s since it started (%s)", address, entry.get("checked"), started)
    return entry


def remember_verdict(address: str, started: str, kept: bool, version: str) -> None:
    """Remember the answer of the server at `address` until it restarts (a failure to write is only logged)."""
    path = verdicts_path()
    try:
        try:
            verdicts = _read_verdicts()
        except (OSError, ValueError):
            verdicts = {}
        verdicts[address] = {
            "started": started,
            "version": version,
            "vectors_survive_reads": kept,
            "checked": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        with replaced_atomically(path) as temporary:
            temporary.write_text(json.dumps(verdicts, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    except OSError as error:
        logger.info("could not remember the server check in %s (the next command checks again): %s", path, error)


def _read_verdicts() -> dict[str, Any]:
    """The remembered answers by server address ({} if there is no file yet)."""
    path = verdicts_path()
    if not path.exists():
        return {}
    verdicts = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(verdicts, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return verdicts


def read_vectors(connection: MilvusConnection, name: str, ids: list[int]) -> dict[int, np.ndarray]:
    """The stored vectors of `ids` in collection `name`, read with the client itself (a collection's own
    reads would check first, and this is the check)."""
    rows = connection.retrying(
        "query",
        lambda client: client.query(
            name,
            filter=f"{ID_FIELD} in {ids}",
            output_fields=[ID_FIELD, VECTOR_FIELD],
            consistency_level="Strong",
        ),
        collection=name,
    )
    return {int(row[ID_FIELD]): np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows}
