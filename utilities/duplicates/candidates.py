"""Duplicate candidates from what the collection already holds: content hashes and stored vectors.

No image is decoded and no model runs here.

- **Exact copies** share a content hash (`hashing.file_hash`, stored with every row).
- **Near copies**: every stored vector is searched against the collection through Milvus, in
  requests of `QUERIES_PER_REQUEST` (within Milvus' 16,384), for its `neighbours` nearest rows.
  Milvus' scores only choose the candidates (approximate indexes and range searches can miss
  or misjudge hits): every candidate pair is scored again, exactly, as the cosine of the two
  stored vectors, and kept when it reaches the threshold. The candidates' own best scores make
  the nearest-neighbour histogram that helps choose a threshold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

import numpy as np

from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import VECTORS_PER_REQUEST
from utilities.milvus.vector_index import distance_from_score
from utilities.records import HASH_FIELD, ID_FIELD, MTIME_FIELD, PATH_FIELD, SIZE_FIELD, VECTOR_FIELD, ImageRecord

QUERIES_PER_REQUEST = 1_000
"""Stored vectors searched in one request (8 MB of 2048-d float32; Milvus takes up to 16,384)."""

SCORE_MARGIN = 0.05
"""How far below the threshold a Milvus score may be and its pair still be scored exactly (an
approximate index's score can be a little off)."""


@dataclass
class Candidates:
    """Rows of the collection and the pairs that may be copies.

    Attributes:
        records: Every row (without its vector), by id.
        exact: Groups of row ids with the same content hash (2 or more each).
        near: Exact cosine of each candidate pair `(smaller id, larger id)` at or above the threshold.
        nearest: Each searched row's best cosine to another row (Milvus' score), for a histogram.
    """

    records: dict[int, ImageRecord] = field(default_factory=dict)
    exact: list[list[int]] = field(default_factory=list)
    near: dict[tuple[int, int], float] = field(default_factory=dict)
    nearest: list[float] = field(default_factory=list)


def exact_groups(records: Iterable[ImageRecord]) -> list[list[int]]:
    """Ids of rows with the same (non-empty) content hash, in groups of 2 or more, sorted.

    Example:
        >>> rows = [ImageRecord(1, "/a", content_hash="h"), ImageRecord(2, "/b", content_hash="h"),
        ...         ImageRecord(3, "/c", content_hash="x"), ImageRecord(4, "/d")]
        >>> exact_groups(rows)
        [[1, 2]]
    """
    by_hash: dict[str, list[int]] = defaultdict(list)
    for record in records:
        if record.content_hash:
            by_hash[record.content_hash].append(record.id)
    return sorted(sorted(ids) for ids in by_hash.values() if len(ids) > 1)


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


def find_candidates(
    store: ImageCollection,
    threshold: float,
    neighbours: int = 10,
    exact_only: bool = False,
    on_progress: Callable[[int], None] | None = None,
) -> Candidates:
    """Read the collection once (with vectors unless `exact_only`) and find the candidate pairs.

    Args:
        store: The collection.
        threshold: Cosine similarity (-1 to 1) a pair must reach, scored on the stored vectors.
        neighbours: Nearest rows asked for each row (the row itself is among them).
        exact_only: Only content hashes: no vectors read, no search.
        on_progress: Called with the number of rows done after each page.

    Returns:
        The `Candidates`.
    """
    found = Candidates()
    fields = (ID_FIELD, PATH_FIELD, SIZE_FIELD, MTIME_FIELD, HASH_FIELD) + (() if exact_only else (VECTOR_FIELD,))
    page_rows = PAGE_ROWS_WITH_VECTORS if not exact_only else 10_000
    for page in store.iter_rows(fields, batch_size=page_rows):
        records = [ImageRecord.from_row(row) for row in page]
        found.records.update((record.id, replace(record, vector=None)) for record in records)  # vectors not kept
        if not exact_only:
            _near_in_page(store, records, threshold, neighbours, found)
        if on_progress is not None:
            on_progress(len(records))
    found.exact = exact_groups(found.records.values())
    return found


PAGE_ROWS_WITH_VECTORS = QUERIES_PER_REQUEST
"""Rows read at a time with their vectors: one search request's worth."""


def _near_in_page(
    store: ImageCollection, page: list[ImageRecord], threshold: float, neighbours: int, found: Candidates
) -> None:
    """Search one page of stored vectors, score the candidate pairs exactly, keep those at the threshold."""
    vectors = _unit(np.stack([record.vector for record in page]).astype(np.float32))
    known = {record.id: vectors[row] for row, record in enumerate(page)}
    hits = store.search(vectors, top_k=neighbours + 1)
    wanted: dict[tuple[int, int], float] = {}
    for record, row_hits in zip(page, hits, strict=True):
        others = [hit for hit in row_hits if int(hit["id"]) != record.id]
        if not others:
            continue
        distances = distance_from_score(np.array([hit["distance"] for hit in others]), store.metric)
        # L2 gives squared distances; between unit vectors, cosine = 1 - d / 2
        cosines = 1.0 - (distances / 2 if store.metric == "L2" else distances)
        found.nearest.append(float(cosines.max()))
        for hit, cosine in zip(others, cosines, strict=True):
            if cosine >= threshold - SCORE_MARGIN:
                other = int(hit["id"])
                wanted[(min(record.id, other), max(record.id, other))] = float(cosine)
    missing = sorted({i for pair in wanted for i in pair} - set(known))
    for start in range(0, len(missing), VECTORS_PER_REQUEST):
        for record in store.records(missing[start : start + VECTORS_PER_REQUEST], with_vectors=True):
            known[record.id] = _unit(np.asarray(record.vector, dtype=np.float32)[None])[0]
    for pair in wanted:
        if pair[0] in known and pair[1] in known:  # a row deleted meanwhile has no vector: no pair
            cosine = float(np.dot(known[pair[0]], known[pair[1]]))
            if cosine >= threshold:
                found.near[pair] = min(cosine, 1.0)
