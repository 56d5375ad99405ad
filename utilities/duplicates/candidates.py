"""Duplicate candidates from what the collection already holds: content hashes and stored vectors.

No image is decoded and no model runs here.

- **Exact copies** share a content hash (`hashing.file_hash`, stored with every row).
- **Near copies**: every stored vector is searched against the collection through Milvus, in
  requests of `QUERIES_PER_REQUEST` (within Milvus' 16,384), for its `neighbours` nearest rows.
  Milvus' scores only choose the candidates (approximate indexes and range searches can miss
  or misjudge hits): every candidate pair is scored again, exactly, as the cosine of the two
  stored vectors, and kept when it reaches the threshold. The candidates' own best scores make
  the nearest-neighbour histogram that helps choose a threshold.

On Milvus Lite, whose searches are exact scans one query at a time, the same exact k-NN is computed
here instead, as matrix products over blocks of rows (`scan_hits`), when the vectors fit in
`SCAN_MAX_BYTES`: at 10,000 1280-d vectors a run took 30 s through Lite's searches.

Each searched row keeps its own list of candidates (`Candidates.found_by`): a row's list depends
only on its vector and the rows near it, so a later run can search again just the rows whose lists
may have changed (`duplicates.incremental`) and get what a full run would.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import VECTORS_PER_REQUEST
from utilities.milvus.vector_index import distance_from_score
from utilities.records import HASH_FIELD, ID_FIELD, MTIME_FIELD, PATH_FIELD, SIZE_FIELD, VECTOR_FIELD, ImageRecord

QUERIES_PER_REQUEST = 1_000
"""Stored vectors searched in one request (8 MB of 2048-d float32; Milvus takes up to 16,384)."""

SCAN_MAX_BYTES = 2 * 2**30
"""Largest matrix of unit vectors (rows x dims x 4 bytes) that a Milvus Lite run holds to scan it itself."""

SCORE_MARGIN = 0.05
"""How far below the threshold a Milvus score may be and its pair still be scored exactly (an
approximate index's score can be a little off)."""


@dataclass
class Candidates:
    """Rows of the collection and the pairs that may be copies.

    Attributes:
        records: Every row (without its vector), by id.
        exact: Groups of row ids with the same content hash (2 or more each).
        found_by: For each searched row, the rows its search found at or above the threshold, with
            the exact cosine of the two stored vectors.
        nearest: Each searched row's best cosine to another row (Milvus' score), for a histogram.
    """

    records: dict[int, ImageRecord] = field(default_factory=dict)
    exact: list[list[int]] = field(default_factory=list)
    found_by: dict[int, dict[int, float]] = field(default_factory=dict)
    nearest: dict[int, float] = field(default_factory=dict)

    @property
    def near(self) -> dict[tuple[int, int], float]:
        """Exact cosine of each candidate pair `(smaller id, larger id)`, whichever row's search found it."""
        pairs: dict[tuple[int, int], float] = {}
        for source, others in self.found_by.items():
            for other, cosine in others.items():
                pairs[(min(source, other), max(source, other))] = cosine
        return pairs


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


def unit_vectors(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero)."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
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
    rows = store.count() if not exact_only and store.target.is_lite else 0
    if rows and rows * store.dimension * 4 <= SCAN_MAX_BYTES:
        _scan_every_row(store, rows, fields, threshold, neighbours, found, on_progress)
    else:
        page_rows = PAGE_ROWS_WITH_VECTORS if not exact_only else 10_000
        for page in store.iter_rows(fields, batch_size=page_rows):
            records = [ImageRecord.from_row(row) for row in page]
            found.records.update((record.id, replace(record, vector=None)) for record in records)  # vectors not kept
            if not exact_only:
                vectors = {record.id: unit_vectors(record.vector) for record in records}
                search_rows(store, [record.id for record in records], vectors, threshold, neighbours, found)
            if on_progress is not None:
                on_progress(len(records))
    found.exact = exact_groups(found.records.values())
    return found


def _scan_every_row(
    store: ImageCollection,
    rows: int,
    fields: tuple[str, ...],
    threshold: float,
    neighbours: int,
    found: Candidates,
    on_progress: Callable[[int], None] | None,
) -> None:
    """Read every row with its vector (Milvus Lite: pages of `LITE_PAGE_ROWS_WITH_VECTORS`), then find each
    row's candidates by `scan_hits` over all of them, a block of `QUERIES_PER_REQUEST` rows at a time.
    `rows` is the count read before: the matrix grows if rows were written since."""
    matrix = np.empty((rows, store.dimension), dtype=np.float32)  # filled in place: no second copy
    filled = 0
    for page in store.iter_rows(fields, batch_size=LITE_PAGE_ROWS_WITH_VECTORS):
        records = [ImageRecord.from_row(row) for row in page]
        if filled + len(records) > len(matrix):  # rows written meanwhile
            spare = np.empty((max(len(records), len(matrix) // 8), store.dimension), dtype=np.float32)
            matrix = np.concatenate([matrix, spare])
        matrix[filled : filled + len(records)] = unit_vectors(np.stack([record.vector for record in records]))
        filled += len(records)
        found.records.update((record.id, replace(record, vector=None)) for record in records)  # vectors not kept
    matrix = matrix[:filled]
    ids = np.fromiter(found.records, dtype=np.int64, count=len(found.records))
    known = dict(zip(ids.tolist(), matrix, strict=True))
    for start in range(0, len(ids), QUERIES_PER_REQUEST):
        part = ids[start : start + QUERIES_PER_REQUEST].tolist()
        search_rows(store, part, known, threshold, neighbours, found, (ids, matrix))
        if on_progress is not None:
            on_progress(len(part))


PAGE_ROWS_WITH_VECTORS = QUERIES_PER_REQUEST
"""Rows read at a time with their vectors: one search request's worth."""

LITE_PAGE_ROWS_WITH_VECTORS = 128
"""Rows read at a time with their vectors from Milvus Lite, whose query time grows faster than its page:
10,000 1280-d rows took 0.86 s in pages of 128, 1.74 s in pages of 256 and 6.8 s in pages of 1,000."""


def milvus_cosines(store: ImageCollection, hits: list[dict]) -> np.ndarray:
    """The cosine each hit's Milvus score stands for (between unit vectors, cosine = 1 - L2² / 2)."""
    distances = distance_from_score(np.array([hit["distance"] for hit in hits]), store.metric)
    return 1.0 - (distances / 2 if store.metric == "L2" else distances)


def read_vectors(store: ImageCollection, ids: Iterable[int], known: dict[int, np.ndarray]) -> None:
    """Add to `known` the unit stored vectors of those `ids` it lacks (rows deleted meanwhile stay out)."""
    missing = sorted({row for row in ids if row not in known})  # not a set of all `known`: a scan knows every row
    for start in range(0, len(missing), VECTORS_PER_REQUEST):
        for record in store.records(missing[start : start + VECTORS_PER_REQUEST], with_vectors=True):
            known[record.id] = unit_vectors(record.vector)


def scan_hits(queries: np.ndarray, ids: np.ndarray, matrix: np.ndarray, top_k: int) -> list[list[tuple[int, float]]]:
    """Each query's `top_k` nearest rows of `matrix` (unit vectors, one per id) by cosine: `(id, cosine)`, nearest
    first. Exact, as Milvus' FLAT search, but in matrix products, over as many queries at a time as keep
    the scores within `SCAN_SCORES_AT_ONCE`.

    Example:
        >>> matrix = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], dtype=np.float32)
        >>> scan_hits(np.array([[1.0, 0.0]], dtype=np.float32), np.array([7, 8, 9]), matrix, 2)
        [[(7, 1.0), (9, 0.6000000238418579)]]
    """
    if not len(ids):
        return [[] for _ in queries]
    rows = len(ids)
    k = min(top_k, rows)
    step = max(1, SCAN_SCORES_AT_ONCE // rows)
    hits: list[list[tuple[int, float]]] = []
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ matrix.T
        nearest = np.argpartition(scores, rows - k, axis=1)[:, rows - k :]  # the k largest, in no order
        best = np.take_along_axis(scores, nearest, axis=1)
        del scores
        order = np.argsort(-best, axis=1, kind="stable")
        nearest, best = np.take_along_axis(nearest, order, axis=1), np.take_along_axis(best, order, axis=1)
        hits += [
            [(int(ids[j]), float(c)) for j, c in zip(row_ids, row_scores, strict=True)]
            for row_ids, row_scores in zip(nearest, best, strict=True)
        ]
    return hits


SCAN_SCORES_AT_ONCE = 2**24
"""Scores `scan_hits` computes at a time (queries x rows): 64 MB of float32, and 128 MB of int64 while
the nearest are picked. At 100,000 rows a block of 1,000 queries took 1.2 GB."""


def search_rows(
    store: ImageCollection,
    ids: Sequence[int],
    known: dict[int, np.ndarray],
    threshold: float,
    neighbours: int,
    found: Candidates,
    scan: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    """Search the stored vectors of `ids` (unit vectors in `known`, or read) and set their `found_by` lists and
    `nearest`.

    Hits come from Milvus, or with `scan` (every row's id and unit vector) from `scan_hits`; each pair
    whose score is within `SCORE_MARGIN` of the threshold is scored again as the exact cosine of the
    stored vectors, and kept at the threshold.
    """
    read_vectors(store, ids, known)
    searched = [row for row in ids if row in known]
    for start in range(0, len(searched), QUERIES_PER_REQUEST):
        part = searched[start : start + QUERIES_PER_REQUEST]
        queries = np.stack([known[row] for row in part])
        if scan is not None:
            scored = scan_hits(queries, scan[0], scan[1], neighbours + 1)
        else:
            hits = store.search(queries, top_k=neighbours + 1, refine=1)
            scored = [
                [(int(hit["id"]), float(c)) for hit, c in zip(row_hits, milvus_cosines(store, row_hits), strict=True)]
                for row_hits in hits
            ]
        wanted: dict[int, list[int]] = {}
        for row, row_hits in zip(part, scored, strict=True):
            others = [(other, c) for other, c in row_hits if other != row]
            found.found_by[row] = {}
            if not others:
                found.nearest.pop(row, None)
                continue
            found.nearest[row] = max(c for _, c in others)
            wanted[row] = [other for other, c in others if c >= threshold - SCORE_MARGIN]
        read_vectors(store, (other for others in wanted.values() for other in others), known)
        for row, others in wanted.items():
            for other in others:
                if other in known:  # a row deleted meanwhile has no vector: no pair
                    cosine = float(np.dot(known[row], known[other]))
                    if cosine >= threshold:
                        found.found_by[row][other] = min(cosine, 1.0)
