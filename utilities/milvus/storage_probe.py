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
writes a small scratch collection, reads its vectors under IVF_SQ8, loads it again and reads them again.
Servers that do not report `-lite` (a Docker standalone, a cluster, both on MinIO or S3 by default) are
not probed; this package's tests run the PyPI server only.
"""

from __future__ import annotations

import logging
import uuid
from typing import TYPE_CHECKING

import numpy as np

from utilities.errors import ImageSearchError
from utilities.records import ID_FIELD, VECTOR_FIELD

if TYPE_CHECKING:
    from utilities.milvus.collection import ImageCollection
    from utilities.milvus.connection import MilvusConnection

logger = logging.getLogger(__name__)

INDEXES_WITHOUT_VECTORS = ("IVF_SQ8", "IVF_PQ")
"""Server index types that keep codes instead of the float vectors: reading vectors goes to storage."""

PROBE_ROWS = 2_048
"""Rows of the scratch collection: above the 1,024 rows from which a sealed segment gets its index."""

PROBE_DIMENSION = 8

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
    them; the answer is kept on the connection, so each connection asks at most once.

    Raises:
        VectorReadsDestroyVectorsError: The scratch collection's vectors could not be read again after
            being read once and loaded again (its message says what to do).
    """
    if connection.target.is_lite or connection.vector_reads_checked:
        return
    version = str(connection.retrying("get_server_version", lambda client: client.get_server_version()))
    if needs_check(version) and not vectors_survive_reads(connection):
        raise VectorReadsDestroyVectorsError(
            f"the Milvus server at {connection.target.shown} ({version}) deletes stored vectors when they are "
            "read under IVF_SQ8 or IVF_PQ (its localStorage.path is absolute; checked on a scratch collection "
            f"just now): nothing was read. To keep your vectors, {FIX}"
        )
    connection.vector_reads_checked = True


def vectors_survive_reads(connection: MilvusConnection) -> bool:
    """Write a scratch collection, read its vectors under IVF_SQ8, load it again and read them again.

    Returns:
        Whether the second read returned the vectors written. The scratch collection is dropped.
    """
    from utilities.milvus.collection import ImageCollection

    probe = ImageCollection(connection, f"vector_read_probe_{uuid.uuid4().hex[:12]}")
    vectors = np.random.default_rng(0).normal(size=(PROBE_ROWS, PROBE_DIMENSION)).astype(np.float32)
    ids = list(range(PROBE_ROWS))
    try:
        probe.ensure(dimension=PROBE_DIMENSION)
        probe.insert([f"/probe/{i}" for i in ids], vectors, ids=ids, upsert=False)
        probe.build_index("IVF_SQ8", probe.metric, {"nlist": 8})
        probe.wait_for_index()
        read_vectors(probe, ids[:4])
        probe.release()
        probe.load()
        again = read_vectors(probe, ids[:4])
        kept = sorted(again) == ids[:4] and all(np.allclose(again[i], vectors[i], atol=1e-5) for i in again)
    except Exception as error:  # noqa: BLE001 - the damaged server answers with a generic MilvusException
        logger.info("vector read probe failed: %s", str(error).splitlines()[0][:300])
        kept = False
    finally:
        try:
            probe.drop()
        except Exception as error:  # noqa: BLE001 - a scratch collection left behind is only reported
            logger.warning("could not drop the scratch collection %s: %s", probe.name, error)
    logger.info("stored vectors %s a read under IVF_SQ8 on %s", "survive" if kept else "do not survive", probe.name)
    return kept


def read_vectors(probe: ImageCollection, ids: list[int]) -> dict[int, np.ndarray]:
    """The stored vectors of `ids`, read with the client itself (the collection's own reads would check
    first, and this is the check)."""
    rows = probe.connection.retrying(
        "query",
        lambda client: client.query(
            probe.name,
            filter=f"{ID_FIELD} in {ids}",
            output_fields=[ID_FIELD, VECTOR_FIELD],
            consistency_level="Strong",
        ),
    )
    return {int(row[ID_FIELD]): np.asarray(row[VECTOR_FIELD], dtype=np.float32) for row in rows}
