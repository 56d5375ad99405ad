"""What a saved duplicate search was made on, to tell whether it still describes the collection.

A saved state (`state.DuplicateState`) or report belongs to one database, one collection,
one incarnation of it, and vectors made one way. `Source` records all four:

- `database`: the Milvus Lite file (its absolute path) or the server's address (credentials left out);
- `collection`: the collection's name;
- `identity`: the incarnation (`milvus.base.CollectionBase.identity`): on a server, the collection's
  id and creation time; on Milvus Lite, which reports neither, the creation stamp the package writes
  into the collection's description (a collection made before that stamp has none: "");
- `vectors`: what the collection records of what made its vectors: their dimension, and a fingerprint
  of its projection (`milvus.projection_store`) when it stores projected ones.

The collection does not record the model, and a collection can be indexed again in place with another
one (its rows deleted and the same files indexed again: the same ids and content hashes). So a state
also keeps a **probe**: the cosines of a few rows' stored vectors (`PROBE_ROWS`, spread over the ids)
to a fixed random vector, recorded by every run, whatever it found. A later run trusts the state only
when the rows of the probe still there with the same content give the same cosines, and at least one
of them is there (`probe_holds`).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from utilities.config import masked_uri

if TYPE_CHECKING:
    from utilities.milvus.collection import ImageCollection
    from utilities.records import ImageRecord

logger = logging.getLogger(__name__)

PROBE_ROWS = 16
"""Rows whose stored vectors' cosines to `probe_vector` a state records."""

PROBE_SEED = 33
"""Seed of the probe vector: the same in every run and every version."""

PROBE_TOLERANCE = 1e-4
"""How far a probe cosine may move and still be the same vector (the same file embedded again in another
batch moves it by about 1e-6; another model, by about `1 / sqrt(dimension)`)."""


@dataclass(frozen=True)
class Source:
    """The database, collection, incarnation and kind of vectors a duplicate search was made on.

    Attributes:
        database: The Lite file's absolute path, or the server's URI without credentials.
        collection: The collection's name.
        identity: The collection's incarnation (server id and creation time, or Lite creation stamp).
        vectors: Their dimension, and the fingerprint of the collection's projection if it has one.
    """

    database: str
    collection: str
    identity: str
    vectors: str

    @classmethod
    def of(cls, store: ImageCollection) -> Source:
        """The source of a search of `store` now (reads its description and, if any, its projection)."""
        from utilities.milvus.projection_store import load_projection

        target = store.target
        database = str(Path(target.uri).expanduser().resolve()) if target.is_lite else masked_uri(target.uri)
        vectors = f"{store.dimension}-d"
        projection = load_projection(store)
        if projection is not None:
            digest = hashlib.sha256(projection.mean.tobytes() + projection.components.tobytes()).hexdigest()[:16]
            vectors += f", projected from {projection.source_dimension}-d by PCA {digest}"
        return cls(database, store.name, store.identity(), vectors)

    @classmethod
    def from_dict(cls, data: Any) -> Source | None:
        """The source saved as `asdict`, or None if `data` is not one."""
        if not isinstance(data, dict):
            return None
        try:
            return cls(**{key: str(data[key]) for key in ("database", "collection", "identity", "vectors")})
        except KeyError:
            return None

    def as_dict(self) -> dict[str, str]:
        """The source as JSON-ready data."""
        return asdict(self)

    def differences(self, other: Source) -> list[str]:
        """The names of the fields in which `other` differs (empty if it is the same source).

        Example:
            >>> Source("db/a.db", "c", "1", "8-d").differences(Source("db/a.db", "c", "2", "8-d"))
            ['identity']
        """
        return [name for name, value in self.as_dict().items() if other.as_dict()[name] != value]


def probe_vector(dimension: int) -> np.ndarray:
    """The fixed unit vector the probe's cosines are taken to (float64)."""
    vector = np.random.default_rng(PROBE_SEED).standard_normal(dimension)
    return vector / np.linalg.norm(vector)


def probe_rows(ids: Iterable[int], count: int = PROBE_ROWS) -> list[int]:
    """Up to `count` of `ids`, spread evenly over them in sorted order.

    Example:
        >>> probe_rows(range(10), count=3)
        [0, 4, 9]
    """
    ordered = sorted(ids)
    if len(ordered) <= count:
        return ordered
    return sorted({ordered[int(n)] for n in np.linspace(0, len(ordered) - 1, count).round()})


def _cosine(vector: Any, probe: np.ndarray) -> float:
    """Cosine of a stored vector to the probe (0.0 for a zero vector)."""
    vector = np.asarray(vector, dtype=np.float64)
    norm = float(np.linalg.norm(vector))
    return float(vector @ probe) / norm if norm else 0.0


def probe_cosines(store: ImageCollection, ids: Iterable[int]) -> dict[int, float]:
    """The cosines of the stored vectors of `probe_rows(ids)` to the probe, by id (rows gone are left out)."""
    chosen = probe_rows(ids)
    if not chosen:
        return {}
    probe = probe_vector(store.dimension)
    return {record.id: _cosine(record.vector, probe) for record in store.records(chosen, with_vectors=True)}


def probe_holds(store: ImageCollection, probe: dict[int, float], hashes: dict[int, str]) -> bool:
    """Whether the stored vectors are still those a state recorded (`probe`, with every row's `hashes`).

    A row of the probe is compared when it is still there with the content it had (under its id, or
    under another one if its file moved); a row changed or removed since says nothing. True when every
    row compared gives its recorded cosine and at least one was compared (or the state held no rows).
    """
    if not hashes:
        return True
    if not probe:
        return False
    cosine_by_hash = {hashes[row]: cosine for row, cosine in probe.items() if hashes.get(row)}
    vector_probe = probe_vector(store.dimension)
    compared: list[tuple[ImageRecord, float]] = [
        (record, probe[record.id])
        for record in store.records(sorted(probe), with_vectors=True)
        if record.content_hash == hashes.get(record.id)
    ]
    unmatched = set(cosine_by_hash) - {record.content_hash for record, _ in compared}
    if unmatched:  # a moved file keeps its vector under a new id
        compared += [
            (record, cosine_by_hash[record.content_hash])
            for record in store.records_by_hash(sorted(unmatched), with_vectors=True)
        ]
    for record, recorded in compared:
        if abs(_cosine(record.vector, vector_probe) - recorded) > PROBE_TOLERANCE:
            logger.info("row %d of %s has another stored vector than the last search read", record.id, store.name)
            return False
    if not compared:
        logger.info("no row the last duplicate search probed is left unchanged in %s", store.name)
    return bool(compared)
