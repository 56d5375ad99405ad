"""One stored image as a record, and the collection's field names.

Every layer passes `ImageRecord`s: the pipeline builds them, `milvus.collection` turns them
into Milvus rows and back. Only this module and `milvus.collection` know the field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ID_FIELD = "id"
PATH_FIELD = "path"
VECTOR_FIELD = "vector"
SIZE_FIELD = "file_size"
MTIME_FIELD = "mtime_ns"
HASH_FIELD = "content_hash"
METADATA_FIELDS = (ID_FIELD, PATH_FIELD, SIZE_FIELD, MTIME_FIELD, HASH_FIELD)
"""Every field but the vector."""


@dataclass(frozen=True)
class ImageRecord:
    """A stored image: its id, path, file facts and, when read or written, its vector.

    Attributes:
        id: INT64 primary key, `ids.path_id(path)`.
        path: The stored path (`ids.stored_path`).
        file_size: Size in bytes (0 if unknown).
        mtime_ns: Modification time in ns (0 if unknown).
        content_hash: `hashing.file_hash` of the bytes (`""` if unknown).
        vector: The embedding, or None when it was not read.

    Example:
        >>> record = ImageRecord.from_row({"id": 7, "path": "/a.jpg", "file_size": 3})
        >>> (record.id, record.path, record.file_size, record.mtime_ns, record.vector)
        (7, '/a.jpg', 3, 0, None)
    """

    id: int
    path: str
    file_size: int = 0
    mtime_ns: int = 0
    content_hash: str = ""
    vector: np.ndarray | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ImageRecord:
        """A record from a row as pymilvus returns it (fields not asked for get their defaults)."""
        vector = row.get(VECTOR_FIELD)
        return cls(
            id=int(row[ID_FIELD]),
            path=str(row.get(PATH_FIELD, "")),
            file_size=int(row.get(SIZE_FIELD, 0)),
            mtime_ns=int(row.get(MTIME_FIELD, 0)),
            content_hash=str(row.get(HASH_FIELD, "")),
            vector=None if vector is None else np.asarray(vector, dtype=np.float32),
        )

    def to_row(self) -> dict[str, Any]:
        """The Milvus row (all fields: a record is written with its vector)."""
        if self.vector is None:
            raise ValueError(f"record {self.path!r} has no vector to write")
        return {
            ID_FIELD: int(self.id),
            PATH_FIELD: self.path,
            VECTOR_FIELD: self.vector,
            SIZE_FIELD: int(self.file_size),
            MTIME_FIELD: int(self.mtime_ns),
            HASH_FIELD: self.content_hash,
        }

    @property
    def stat(self) -> tuple[int, int]:
        """`(file_size, mtime_ns)`: what tells a changed file."""
        return self.file_size, self.mtime_ns
