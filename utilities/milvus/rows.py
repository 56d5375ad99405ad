"""Writing and reading an image collection's rows, in requests sized for the backend.

Rows travel as `records.ImageRecord`s; every request goes through `milvus.chunks.chunked`, by
count (filter expressions and id lists) or by bytes (inserts).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

from utilities.ids import path_id
from utilities.milvus.base import CollectionBase
from utilities.milvus.chunks import chunked
from utilities.records import (
    HASH_FIELD,
    ID_FIELD,
    METADATA_FIELDS,
    MTIME_FIELD,
    PATH_FIELD,
    SIZE_FIELD,
    VECTOR_FIELD,
    ImageRecord,
)

logger = logging.getLogger(__name__)

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

IDS_PER_REQUEST = 10_000
"""Ids in one `get`, `delete` or `id in [...]` filter. Each request to a Milvus 2.3 server costs a
round trip whatever its size (measured in benchmarks/results/scale.md), so requests are large."""

HASHES_PER_REQUEST = 10_000
"""Content hashes (32 hex characters each) in one `content_hash in [...]` filter: a Strong read costs
~0.4 s a request on a Milvus 2.3 server whatever its size, so few large ones."""

VECTORS_PER_REQUEST = 1_000
"""Rows read back with their vectors in one request (8 MB of 2048-d float32)."""

PAGE_ROWS = 10_000
"""Rows per page when reading the whole collection (pymilvus allows up to 16,384)."""

FRESH = "Strong"
"""Consistency of reads that must see every write, from any process, made before them: counts
(exact), and the lookup of stored copies (a stale miss would leave the copy's row behind)."""

RECENT = "Session"
"""Consistency of reads where a stale answer costs only redundant work, never a lost or doubled
row: planning (a row written a moment ago by another process looks missing, so its file is
embedded again and upserted under the same id), prune (a row it does not see yet is removed by
the next prune) and the mapping (rebuilt from the collection on demand). This client always sees
its own writes. A Strong read on a Milvus 2.3 server waits for the next time tick (~0.4 s a
request, measured); a Session read does not."""

ROW_OVERHEAD_BYTES = 32
"""What a row costs in a request besides its vector and path (the integer fields, framing)."""


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


class CollectionRows(CollectionBase):
    """Writes (upserts, deletes) and reads (counts, rows by id, by hash, all rows) of image rows."""

    @property
    def max_request_bytes(self) -> int:
        """Byte budget of one insert request on this backend."""
        return MAX_REQUEST_BYTES if self.target.is_lite else SERVER_MAX_REQUEST_BYTES

    def row_bytes(self, record: ImageRecord) -> int:
        """What a record weighs in an insert request (its vector, path and other fields)."""
        return self.dimension * 4 + ROW_OVERHEAD_BYTES + len(record.path.encode("utf-8"))

    # ------------------------------------------------------------------ writes
    def write(self, records: Sequence[ImageRecord], upsert: bool = True, max_request_bytes: int | None = None) -> int:
        """Write records (with their vectors), split into requests of at most `max_request_bytes`.

        With `upsert=True` (the default) a row whose id already exists replaces it, so
        re-running a failed or interrupted write never duplicates rows.

        Returns:
            The number of rows written.

        Raises:
            ValueError: A vector's dimension differs from the collection's, or a path is too long.
        """
        dimension = self.dimension
        for record in records:
            if record.vector is None or record.vector.shape != (dimension,):
                given = None if record.vector is None else record.vector.shape[-1]
                raise ValueError(f"vectors have dimension {given}, collection {self.name!r} expects {dimension}")
            if len(record.path.encode("utf-8")) > PATH_MAX_BYTES:
                raise ValueError(f"path longer than {PATH_MAX_BYTES} bytes: {record.path[:80]!r}...")
        budget = max_request_bytes or self.max_request_bytes
        for part in chunked(records, max_bytes=budget, size_of=self.row_bytes):
            rows = [record.to_row() for record in part]
            # An upsert keyed by id can be repeated safely (retried if the server drops out); a
            # plain insert cannot: repeating one that reached the server would add the rows twice.
            if upsert:
                self._retrying(
                    "upsert", lambda client, rows=rows: client.upsert(self.name, rows, timeout=self._timeout)
                )
            else:
                self._once("insert", lambda client, rows=rows: client.insert(self.name, rows))
        return len(records)

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
        """Write rows given as parallel sequences; see `write`.

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
        records = [
            ImageRecord(
                id=int(ids[i]) if ids is not None else path_id(paths[i]),
                path=paths[i],
                file_size=int(file_sizes[i]) if file_sizes is not None else 0,
                mtime_ns=int(mtimes_ns[i]) if mtimes_ns is not None else 0,
                content_hash=hashes[i] if hashes is not None else "",
                vector=vectors[i],
            )
            for i in range(count)
        ]
        return self.write(records, upsert=upsert, max_request_bytes=max_request_bytes)

    def delete(self, ids: Sequence[int]) -> None:
        """Delete rows by id (ids that do not exist are ignored)."""
        for part in chunked([int(i) for i in ids], IDS_PER_REQUEST):
            self._retrying(
                "delete", lambda client, part=part: client.delete(self.name, ids=list(part), timeout=self._timeout)
            )

    # ------------------------------------------------------------------- reads
    def count(self) -> int:
        """Exact number of rows (Strong consistency: includes the last insert)."""
        result = self._retrying(
            "query",
            lambda client: client.query(
                self.name, filter="", output_fields=["count(*)"], consistency_level="Strong", timeout=self._timeout
            ),
        )
        return int(result[0]["count(*)"])

    def _query(self, filter_expression: str, fields: Sequence[str], consistency: str = FRESH) -> list[dict]:
        """Rows matching a filter (Strong consistency unless told otherwise: exact across processes)."""
        if VECTOR_FIELD in fields:
            self._before_vector_read()
        return self._retrying(
            "query",
            lambda client: client.query(
                self.name,
                filter=filter_expression,
                output_fields=list(fields),
                consistency_level=consistency,
                timeout=self._timeout,
            ),
        )

    def existing_ids(self, ids: Sequence[int]) -> set[int]:
        """The subset of `ids` already stored."""
        found: set[int] = set()
        for part in chunked([int(i) for i in ids], IDS_PER_REQUEST):
            found.update(int(row[ID_FIELD]) for row in self._query(f"{ID_FIELD} in {list(part)}", [ID_FIELD]))
        return found

    def get(
        self, ids: Sequence[int], fields: Sequence[str] = (ID_FIELD, PATH_FIELD), consistency: str = FRESH
    ) -> list[dict]:
        """Rows by id, with the requested fields, as pymilvus returns them."""
        per_request = VECTORS_PER_REQUEST if VECTOR_FIELD in fields else IDS_PER_REQUEST
        rows: list[dict] = []
        for part in chunked([int(i) for i in ids], per_request):
            rows.extend(self._query(f"{ID_FIELD} in {list(part)}", fields, consistency))
        return rows

    def records(self, ids: Sequence[int], with_vectors: bool = False, consistency: str = FRESH) -> list[ImageRecord]:
        """Stored records by id (ids not stored are left out)."""
        fields = METADATA_FIELDS + ((VECTOR_FIELD,) if with_vectors else ())
        return [ImageRecord.from_row(row) for row in self.get(ids, fields, consistency)]

    def file_stats(self, ids: Sequence[int], consistency: str = FRESH) -> dict[int, tuple[int, int]]:
        """`(file_size, mtime_ns)` of the stored rows among `ids`, by id (ids not stored are left out).

        Reads only those two fields and the id: what planning compares. At 100,000 rows on a server this
        took 1.8-1.9 µs of the client's CPU per row, against 2.7-3.2 for every field but the vector.
        """
        fields = (ID_FIELD, SIZE_FIELD, MTIME_FIELD)
        rows = self.get(ids, fields, consistency)
        return {int(row[ID_FIELD]): (int(row[SIZE_FIELD]), int(row[MTIME_FIELD])) for row in rows}

    def rows_by_hash(self, hashes: Sequence[str], fields: Sequence[str] = (ID_FIELD, PATH_FIELD)) -> list[dict]:
        """Rows whose content hash is one of `hashes` (for finding moved files)."""
        rows: list[dict] = []
        for part in chunked(sorted(set(hashes) - {""}), HASHES_PER_REQUEST):
            literals = ", ".join(quote_string(h) for h in part)
            rows.extend(self._query(f"{HASH_FIELD} in [{literals}]", fields))
        return rows

    def records_by_hash(self, hashes: Sequence[str], with_vectors: bool = False) -> list[ImageRecord]:
        """Stored records whose content hash is one of `hashes` (Strong consistency).

        The hashes are looked up without vectors (small answers, large requests); only the rows
        found are read again with their vectors.
        """
        found = [ImageRecord.from_row(row) for row in self.rows_by_hash(hashes, METADATA_FIELDS)]
        if not with_vectors or not found:
            return found
        return self.records([record.id for record in found], with_vectors=True)

    def iter_rows(
        self, fields: Sequence[str] = (ID_FIELD, PATH_FIELD), batch_size: int = PAGE_ROWS
    ) -> Iterator[list[dict]]:
        """Yield every row in pages of `batch_size` (for the mapping, prune or exports; Session consistency)."""
        # pymilvus warns on every iterator that it falls back to a client-side timestamp;
        # that is expected with Strong consistency, so keep it out of the user's log.
        logging.getLogger("pymilvus.orm.iterator").addFilter(_drop_mvcc_warning)
        if VECTOR_FIELD in fields:
            self._before_vector_read()
        iterator = self._retrying(
            "query_iterator",
            lambda client: client.query_iterator(
                self.name,
                batch_size=batch_size,
                filter="",
                output_fields=list(fields),
                consistency_level=RECENT,
                timeout=self._timeout,
            ),
        )
        try:
            while page := iterator.next():
                yield page
        finally:
            iterator.close()

    def iter_records(self, batch_size: int = PAGE_ROWS) -> Iterator[list[ImageRecord]]:
        """Every stored record (without vectors), in pages of `batch_size`."""
        for page in self.iter_rows(METADATA_FIELDS, batch_size):
            yield [ImageRecord.from_row(row) for row in page]
