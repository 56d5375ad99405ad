"""Re-running a duplicate search on what changed since the last one, with the same result as a full run.

A full run searches every stored vector. Each row's list of candidates (`candidates.Candidates.found_by`:
the rows its search found at or above the threshold) depends only on its vector and on the rows
near it, so after files were added, changed, moved or removed only some lists can differ:

- the lists of **new and changed rows** (searched again);
- the lists of rows that held a **removed or changed row** (searched again: a freed place can let
  another pair in);
- the lists of rows **within the threshold of a new or changed row** (`rows_near_changes`; those
  within `SCORE_MARGIN` below it too): only such a row can enter another row's list, whose pairs are
  kept on their exact cosine at the threshold (a row that comes in below it only pushes out rows that
  were below it too). How they are found depends on the index (`searches_exactly`):

  - **exact search** (Milvus Lite, whatever its index, or a server's FLAT index, which `AUTO` builds up
    to 20,000 rows, `vector_index.FLAT_UP_TO_ROWS`): each new or changed row is searched for everything
    at the threshold, with a limit that grows until the last hit falls below it. Exact search is
    symmetric: a row whose own search would find the new row is found by the new row's search.
  - **approximate search** (any other index: HNSW or SCANN, which `AUTO` builds on a server above
    20,000 rows, the IVF family, AUTOINDEX), or under exact search a new row with more rows near it
    than one search returns (`MAX_SEARCH_LIMIT`): a search from the new row can miss a row whose own
    search finds it (approximate search is not symmetric), so every stored vector is read, in pages,
    and scored exactly against the new and changed rows on the client
    (`rows_within_threshold_exactly`). This reads every vector once, as a full run does, but searches
    only the rows found: at 25,000 2048-d rows under HNSW (2 cores, the server on the same machine)
    a re-run after 26 rows were added took 21.2 s, 16.8 s of it the scan, against 92.9 s for a full
    run, and found the same 5,648 pairs.

A **moved** file (a row gone and a new row with its content hash: the indexing run keeps its vector)
keeps its lists under its new id, and so its group. Keypoint checks are kept by the content hashes of
the two files, so a pair of files that did not change is not checked again.

The last run's lists and checks come from its saved state (`state.DuplicateState`, beside the report),
used only when it was made on this collection with these settings (`state.state_applies`) and a few
saved cosines between candidates still hold (`_cosines_still_hold`); otherwise the run is a full one.
`candidates` searches the rows; `finder` runs the whole search and saves the state for the next run.

**When the result is a full run's.** The rows searched again get their lists as a full run makes them
(the same Milvus searches, the same exact scores); the others keep theirs from the last run. Under
exact search a row's list depends only on the vectors: the pairs, groups and checks are a full run's.
Under an approximate index a row's search also depends on the state of the index, which does not hold
still between two full runs either: Milvus leaves a sealed segment's index as it is, but it searches
new rows without it until their segment is sealed and indexed, an HNSW search steps over deleted rows
(which changes its path), a compaction indexes the rows it merges again, and for a few seconds after a
load or an insert the same search can return other rows (seen on Milvus 2.3.5 under a sparse HNSW
index). The result is then a full run's as far as the searches of the rows not searched again give
what they gave in the last run; a row whose own search could find a new or changed row at the
threshold is always searched again, whatever the index.

Rows not searched again keep their best cosine from the earlier run in the histogram, where a full
run could find a closer new row below the threshold: only the histogram can differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from utilities.duplicates.candidates import (
    LITE_PAGE_ROWS_WITH_VECTORS,
    PAGE_ROWS_WITH_VECTORS,
    SCAN_SCORES_AT_ONCE,
    SCORE_MARGIN,
    Candidates,
    exact_groups,
    milvus_cosines,
    read_vectors,
    search_rows,
    unit_vectors,
)
from utilities.duplicates.state import DuplicateState
from utilities.milvus.collection import ImageCollection
from utilities.milvus.vector_index import MAX_SEARCH_LIMIT
from utilities.records import ID_FIELD, VECTOR_FIELD, ImageRecord

logger = logging.getLogger(__name__)

CHECKED_ROWS = 8
"""Rows whose recorded cosines are compared with their stored vectors before the state is trusted."""


@dataclass
class Changes:
    """How the rows differ from those of the saved state.

    Attributes:
        new: Rows added (moved files excluded).
        changed: Rows whose content hash differs (the file was edited and indexed again).
        removed: Rows gone (moved files excluded).
        moved: Old id to new id, for rows gone whose content came back under another path.
    """

    new: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    moved: dict[int, int] = field(default_factory=dict)

    @property
    def count(self) -> int:
        """Rows added, changed, removed or moved."""
        return len(self.new) + len(self.changed) + len(self.removed) + len(self.moved)


def changes_since(hashes: dict[int, str], records: dict[int, ImageRecord]) -> Changes:
    """Compare the saved content hashes with the current rows.

    Example:
        >>> now = {1: ImageRecord(1, "/a", content_hash="h1"), 3: ImageRecord(3, "/moved", content_hash="h2"),
        ...        4: ImageRecord(4, "/new", content_hash="h4")}
        >>> changes_since({1: "h1", 2: "h2", 5: "h5"}, now)
        Changes(new=[4], changed=[], removed=[5], moved={2: 3})
    """
    changes = Changes()
    gone_by_hash: dict[str, list[int]] = {}
    for row in sorted(set(hashes) - set(records)):
        gone_by_hash.setdefault(hashes[row], []).append(row)
    for row in sorted(set(records) - set(hashes)):
        content = records[row].content_hash
        if content and gone_by_hash.get(content):
            changes.moved[gone_by_hash[content].pop(0)] = row
        else:
            changes.new.append(row)
    changes.removed = sorted(row for rows in gone_by_hash.values() for row in rows)
    changes.changed = sorted(row for row in set(records) & set(hashes) if records[row].content_hash != hashes[row])
    return changes


def searches_exactly(store: ImageCollection) -> bool:
    """Whether the collection's searches are exact k-NN: on Milvus Lite (which scans, whatever the index) or
    under a server's FLAT index. Every other index (HNSW, SCANN, the IVF family, AUTOINDEX) is approximate."""
    return store.target.is_lite or store.index_type == "FLAT"


def rows_within_threshold(
    store: ImageCollection, ids: list[int], known: dict[int, np.ndarray], threshold: float, neighbours: int
) -> set[int] | None:
    """Every row whose Milvus score to one of `ids` is within `SCORE_MARGIN` of the threshold, searching from
    `ids` (all of them only where searches are exact: `searches_exactly`).

    Each row is searched with `neighbours + 1` hits first, then with four times as many while its
    last hit still reaches the threshold.

    Returns:
        The rows (`ids` left out), or None when a row still had hits within the margin at
        `MAX_SEARCH_LIMIT`, the most one search returns: the search cannot list them all.
    """
    near: set[int] = set()
    read_vectors(store, ids, known)
    pending, limit = [row for row in ids if row in known], neighbours + 1
    while pending:
        hits = store.search(np.stack([known[row] for row in pending]), top_k=limit, refine=1)
        again = []
        for row, row_hits in zip(pending, hits, strict=True):
            if not row_hits:
                continue
            cosines = milvus_cosines(store, row_hits)
            near.update(
                int(hit["id"]) for hit, c in zip(row_hits, cosines, strict=True) if c >= threshold - SCORE_MARGIN
            )
            if len(row_hits) == limit and cosines[-1] >= threshold - SCORE_MARGIN:
                if limit >= MAX_SEARCH_LIMIT:
                    return None
                again.append(row)
        pending, limit = again, min(limit * 4, MAX_SEARCH_LIMIT)
    return near - set(ids)


def rows_within_threshold_exactly(
    store: ImageCollection,
    ids: list[int],
    known: dict[int, np.ndarray],
    threshold: float,
    on_progress: Callable[[int], None] | None = None,
) -> set[int]:
    """Every row whose exact cosine to one of `ids` is within `SCORE_MARGIN` of the threshold, by a scan
    of every stored vector.

    The vectors are read in pages (`PAGE_ROWS_WITH_VECTORS` rows; `LITE_PAGE_ROWS_WITH_VECTORS` on
    Milvus Lite) and scored against those of `ids` at most `SCAN_SCORES_AT_ONCE` scores at a time:
    the client holds one page, the vectors of `ids`, and those of the rows found (added to `known`,
    for their search).

    Args:
        store: The collection.
        ids: The rows searched from (new and changed rows).
        known: Unit vectors already read, by id; completed with those of `ids` and of the rows found.
        threshold: Cosine a pair must reach.
        on_progress: Called with the number of rows read after each page.

    Returns:
        The rows, `ids` left out.
    """
    read_vectors(store, ids, known)
    present = [row for row in ids if row in known]  # rows deleted meanwhile have no vector
    if not present:
        return set()
    queries = np.stack([known[row] for row in present])
    page_rows = LITE_PAGE_ROWS_WITH_VECTORS if store.target.is_lite else PAGE_ROWS_WITH_VECTORS
    step = max(1, SCAN_SCORES_AT_ONCE // page_rows)
    near: set[int] = set()
    for page in store.iter_rows((ID_FIELD, VECTOR_FIELD), batch_size=page_rows):
        vectors = unit_vectors(np.asarray([row[VECTOR_FIELD] for row in page], dtype=np.float32))
        best = np.full(len(page), -np.inf, dtype=np.float32)
        for start in range(0, len(queries), step):
            best = np.maximum(best, (vectors @ queries[start : start + step].T).max(axis=1))
        for n in np.flatnonzero(best >= threshold - SCORE_MARGIN).tolist():
            row = int(page[n][ID_FIELD])
            near.add(row)
            known.setdefault(row, vectors[n].copy())  # a copy: a view would keep the whole page
        if on_progress is not None:
            on_progress(len(page))
    return near - set(ids)


def rows_near_changes(
    store: ImageCollection,
    dirty: list[int],
    known: dict[int, np.ndarray],
    threshold: float,
    neighbours: int,
    on_progress: Callable[[int], None] | None = None,
) -> set[int]:
    """The rows whose lists a new or changed row (`dirty`) may enter: those within `SCORE_MARGIN` of the
    threshold of one, by Milvus searches from `dirty` where searches are exact, else (or when a search
    cannot list them all) by an exact scan of every stored vector (the module's notes)."""
    if not dirty:
        return set()
    if searches_exactly(store):
        near = rows_within_threshold(store, dirty, known, threshold, neighbours)
        if near is not None:
            return near
        logger.info("more rows than one search returns are near a new row: scanning every stored vector")
    else:
        logger.info("%s has an approximate %s index: scanning every stored vector", store.name, store.index_type)
    return rows_within_threshold_exactly(store, dirty, known, threshold, on_progress)


def _renamed(state: DuplicateState, changes: Changes, records: dict[int, ImageRecord]) -> Candidates:
    """The saved lists and best cosines under the current ids, without rows removed or changed."""
    rename, dropped = changes.moved, set(changes.removed) | set(changes.changed)
    found = Candidates(records=records)
    for source, others in state.found_by.items():
        source = rename.get(source, source)
        if source in records and source not in dropped:
            found.found_by[source] = {rename.get(other, other): cosine for other, cosine in others.items()}
    for source, cosine in state.nearest.items():
        source = rename.get(source, source)
        if source in records and source not in dropped:
            found.nearest[source] = cosine
    return found


def _cosines_still_hold(
    store: ImageCollection, found: Candidates, dropped: set[int], known: dict[int, np.ndarray]
) -> bool:
    """Whether a few saved cosines between unchanged rows are still those of the stored vectors (the
    collection was not indexed again with another model)."""
    sample = [
        (source, {other: cosine for other, cosine in others.items() if other not in dropped})
        for source, others in sorted(found.found_by.items())
    ]
    sample = [(source, others) for source, others in sample if others][:CHECKED_ROWS]
    read_vectors(store, {row for source, others in sample for row in (source, *others)}, known)
    for source, others in sample:
        for other, cosine in others.items():
            if source in known and other in known and abs(float(known[source] @ known[other]) - cosine) > 1e-4:
                return False
    return True


def update_candidates(
    store: ImageCollection,
    records: dict[int, ImageRecord],
    state: DuplicateState,
    threshold: float,
    neighbours: int,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[Candidates, Changes, int] | None:
    """The candidates a full run would find, searching only the rows whose lists may have changed.

    Args:
        store: The collection.
        records: Every current row (without vectors), by id.
        state: What the last run saved (same collection, threshold, neighbours and metric).
        threshold: Cosine a pair must reach.
        neighbours: Nearest rows searched for each row.
        on_progress: Called with the number of rows read by the exact scan after each page (under an
            approximate index: `rows_near_changes`), then with the number of rows searched.

    Returns:
        The candidates, the changes, and how many rows were searched; None when the saved cosines
        no longer match the stored vectors (the collection was indexed again with another model).
    """
    changes = changes_since(state.hashes, records)
    found = _renamed(state, changes, records)
    known: dict[int, np.ndarray] = {}
    dropped = set(changes.removed) | set(changes.changed)
    if not _cosines_still_hold(store, found, dropped, known):
        logger.info("the stored vectors of %s changed since the last duplicate search: a full run", store.name)
        return None
    dirty = sorted(set(changes.new) | set(changes.changed))
    affected = {source for source, others in found.found_by.items() if dropped & set(others)}
    affected |= rows_near_changes(store, dirty, known, threshold, neighbours, on_progress)
    searched = sorted((set(dirty) | affected) & set(records))
    search_rows(store, searched, known, threshold, neighbours, found)
    if on_progress is not None:
        on_progress(len(searched))
    found.exact = exact_groups(records.values())
    return found, changes, len(searched)
