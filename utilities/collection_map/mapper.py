"""`map_collection`: a 2-D position for every stored row, from the stored vectors, kept up to date.

1. The rows' ids, paths and content hashes are read (no vectors).
2. If a map of this collection is saved (`saved`) and still holds, its positions are kept for every
   row whose content hash is unchanged; the other rows (new or changed files) are read by id and
   placed by the saved layout (`FittedLayout.place`): nothing else moves.
3. Otherwise (or with `full=True`, or another method than the saved one) the layout is fitted on a
   random sample of at most `sample` rows (read by id, or in the same pass when every row is the
   sample) and every other row is placed by it, page by page.

No model runs: only stored vectors are read, as unit vectors, one page at a time (`audit.vectors`).
The client holds the sample's vectors, one page, and a few numbers a row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from utilities.collection_map.layout import DEFAULT_SAMPLE, FittedLayout, fit_layout, resolve_method
from utilities.collection_map.saved import SavedMap, load_map, map_path, save_map

logger = logging.getLogger(__name__)

SAMPLE_SEED = 0
"""Seed of the choice of the rows a layout is fitted on."""

PLACE_ROWS = 10_000
"""New rows read and placed at a time."""


@dataclass
class CollectionMap:
    """Every mapped row's position and class, in parallel arrays.

    Attributes:
        ids: int64 row ids.
        paths: Each row's stored path.
        x: float32 horizontal positions.
        y: float32 vertical positions.
        classes: Each row's class: its first folder under the indexed root (the second under a split
            folder such as `train/`, as `audit.splits` reads them), "" for none.
        method: `"umap"` or `"pca"`: the layout that placed them.
        fitted_on: Rows the layout was fitted on.
        placed: Rows placed by the saved layout in this call (new or changed since it was fitted).
        refitted: Whether this call fitted the layout (False: it was the saved one).
        saved_to: Where the map is saved (None if it was not).
        created: When the layout was fitted (ISO 8601, UTC).
    """

    ids: np.ndarray
    paths: list[str]
    x: np.ndarray
    y: np.ndarray
    classes: list[str]
    method: str
    fitted_on: int
    placed: int = 0
    refitted: bool = False
    saved_to: Path | None = None
    created: str = ""
    class_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.class_names = sorted({name for name in self.classes if name})

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def class_index(self) -> np.ndarray:
        """Each row's class as an index into `class_names` (int32, -1 for none)."""
        number = {name: n for n, name in enumerate(self.class_names)}
        return np.fromiter((number.get(name, -1) for name in self.classes), dtype=np.int32, count=len(self.classes))

    @classmethod
    def from_saved(cls, saved: SavedMap, **facts: Any) -> CollectionMap:
        """The map of the rows a `SavedMap` holds (their classes read from their paths)."""
        positions = np.asarray(saved.positions, dtype=np.float32)
        return cls(
            ids=np.asarray(saved.ids, dtype=np.int64),
            paths=list(saved.paths),
            x=positions[:, 0].copy(),
            y=positions[:, 1].copy(),
            classes=classes_of(saved.paths),
            method=saved.method,
            fitted_on=saved.fitted_on,
            created=saved.created,
            **facts,
        )

    def as_dict(self, decimals: int = 4) -> dict[str, Any]:
        """Compact JSON-ready form: parallel arrays (ids as decimal strings, classes as indexes) and facts.

        Example:
            >>> small = CollectionMap(np.array([7, 9]), ["/d/a/1.jpg", "/d/b/2.jpg"], np.array([0.5, 1.0]),
            ...                       np.array([2.0, 3.25]), ["a", "b"], "pca", 2)
            >>> small.as_dict()["class"], small.as_dict()["classes"], small.as_dict()["ids"]
            ([0, 1], ['a', 'b'], ['7', '9'])
        """
        return {
            "count": len(self),
            "method": self.method,
            "fitted_on": self.fitted_on,
            "created": self.created,
            "ids": [str(row) for row in self.ids.tolist()],
            "x": np.round(self.x.astype(np.float64), decimals).tolist(),
            "y": np.round(self.y.astype(np.float64), decimals).tolist(),
            "class": self.class_index.tolist(),
            "classes": self.class_names,
        }

    def __str__(self) -> str:
        how = "fitted now" if self.refitted else f"saved layout, {self.placed} rows placed now"
        where = f"; saved to {self.saved_to}" if self.saved_to else ""
        return (
            f"{len(self)} rows mapped by {self.method.upper()} (fitted on {self.fitted_on} rows, {how}), "
            f"{len(self.class_names)} classes{where}"
        )


def classes_of(paths: list[str]) -> list[str]:
    """Each path's class, read as `audit.splits` reads folders ("" for none).

    Example:
        >>> classes_of(["/d/cat/1.jpg", "/d/dog/2.jpg", "/d/3.jpg"])
        ['cat', 'dog', '']
    """
    from utilities.audit.splits import find_layout

    folders = find_layout(paths)
    return [folders.place(path).label or "" for path in paths]


def map_collection(
    source: Any, method: str = "umap", sample: int = DEFAULT_SAMPLE, full: bool = False, progress: bool = True
) -> CollectionMap:
    """A 2-D position for every stored row, fitted once and kept with the collection (see the module).

    Args:
        source: An `ImageSearchEngine` (its collection is opened without the model) or an `ImageCollection`.
        method: `"umap"` (PCA to 50 dims, then UMAP; PCA alone when umap-learn is not installed) or `"pca"`.
        sample: Most rows the layout is fitted on; the others are placed by it.
        full: Fit the layout again on the rows as they are now, even if a saved one holds.
        progress: Show progress bars.

    Returns:
        The `CollectionMap`, also saved beside the collection (`saved.map_path`).

    Raises:
        ValueError: An unknown `method`, or `sample` below 1.

    Example:
        >>> found = map_collection(engine, method="pca")  # doctest: +SKIP
        >>> found.x.shape == found.y.shape == (len(found),)  # doctest: +SKIP
        True
    """
    if sample < 1:
        raise ValueError(f"sample must be at least 1, got {sample}")
    method = resolve_method(method)
    store = _store_of(source)
    from utilities.duplicates.provenance import Source, probe_cosines

    ids, paths, hashes = _read_rows(store, progress)
    path, made_on = map_path(store.target, store.name), Source.of(store)
    saved = None if full else load_map(path, made_on, store)
    if saved is not None and saved.method != method:
        logger.info("the saved map was laid out by %s, not %s: it is made again", saved.method, method)
        saved = None
    if saved is not None and saved.layout is not None:
        layout, created = saved.layout, saved.created
        positions, placed = _update(store, saved, layout, ids, hashes, progress)
    else:
        created = datetime.now(timezone.utc).isoformat(timespec="seconds")
        layout, positions = _fit_all(store, ids, method, sample, progress)
        placed = 0
    found = ~np.isnan(positions[:, 0])  # rows deleted while they were read are left out
    ids, positions = ids[found], positions[found]
    paths = [p for p, keep in zip(paths, found.tolist(), strict=True) if keep]
    hashes = [h for h, keep in zip(hashes, found.tolist(), strict=True) if keep]
    probe = probe_cosines(store, ids.tolist())
    result = SavedMap(ids, paths, hashes, positions, layout, probe, created, layout.method, layout.fitted_on)
    if saved is None or placed or len(ids) != len(saved.ids):
        save_map(result, path, made_on)
    return CollectionMap.from_saved(result, placed=placed, refitted=saved is None, saved_to=path)


def _store_of(source: Any) -> Any:
    """The collection itself, or an engine's, opened without building or checking its model."""
    from utilities.milvus.collection import ImageCollection

    return source if isinstance(source, ImageCollection) else source._opened.stored_rows()


def _read_rows(store: Any, progress: bool) -> tuple[np.ndarray, list[str], list[str]]:
    """Every row's id, path and content hash (no vectors), sorted by id."""
    from utilities.records import HASH_FIELD, ID_FIELD, PATH_FIELD

    rows: list[tuple[int, str, str]] = []
    with tqdm(total=store.count(), desc="reading rows", unit="row", disable=not progress) as bar:
        for page in store.iter_rows((ID_FIELD, PATH_FIELD, HASH_FIELD)):
            rows.extend((int(row[ID_FIELD]), str(row[PATH_FIELD]), str(row.get(HASH_FIELD) or "")) for row in page)
            bar.update(len(page))
    rows.sort()
    ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
    return ids, [row[1] for row in rows], [row[2] for row in rows]


def _read_vectors(store: Any, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The unit vectors of the rows `ids` (those still stored), with their ids, read by id.

    One request's worth (`VECTORS_PER_REQUEST` rows) at a time, each made float32 at once: pymilvus answers
    with Python floats, and a whole 20,000-row sample read at once raised the peak memory of a map of
    100,000 rows by 0.4 GB (`benchmarks/results/collection_map.md`).
    """
    from utilities.duplicates.candidates import unit_vectors
    from utilities.milvus.rows import VECTORS_PER_REQUEST
    from utilities.records import ID_FIELD, VECTOR_FIELD

    found, parts = [], [np.zeros((0, store.dimension), dtype=np.float32)]
    for start in range(0, len(ids), VECTORS_PER_REQUEST):
        rows = store.get(ids[start : start + VECTORS_PER_REQUEST].tolist(), (ID_FIELD, VECTOR_FIELD))
        found += [int(row[ID_FIELD]) for row in rows]
        parts.append(np.asarray([row[VECTOR_FIELD] for row in rows], dtype=np.float32).reshape(-1, store.dimension))
    return np.asarray(found, dtype=np.int64), unit_vectors(np.concatenate(parts))


def _fit_all(store: Any, ids: np.ndarray, method: str, sample: int, progress: bool) -> tuple[FittedLayout, np.ndarray]:
    """Fit the layout on a sample of the rows and place every row: `(layout, (rows, 2) positions)`, NaN
    for rows no longer stored."""
    from utilities.audit.vectors import vector_pages

    positions = np.full((len(ids), 2), np.nan, dtype=np.float32)
    row_of = {row: n for n, row in enumerate(ids.tolist())}
    if len(ids) <= sample:  # one pass: every row is the sample
        pages = list(vector_pages(store, progress, "reading vectors"))
        read = np.concatenate([page for page, _ in pages]) if pages else np.zeros(0, np.int64)
        vectors = np.concatenate([v for _, v in pages]) if pages else np.zeros((0, store.dimension), np.float32)
        logger.info("fitting the %s layout on all %d rows", method, len(read))
        layout, placed = fit_layout(vectors, method)
        _put(positions, row_of, read, placed)
        return layout, positions
    chosen = np.sort(np.random.default_rng(SAMPLE_SEED).choice(ids, size=sample, replace=False))
    read, vectors = _read_vectors(store, chosen)
    logger.info("fitting the %s layout on %d of %d rows", method, len(read), len(ids))
    layout, placed = fit_layout(vectors, method)
    _put(positions, row_of, read, placed)
    in_sample = set(read.tolist())
    for page_ids, page in vector_pages(store, progress, "placing rows"):
        rest = np.fromiter((row not in in_sample for row in page_ids.tolist()), dtype=bool, count=len(page_ids))
        if rest.any():
            _put(positions, row_of, page_ids[rest], layout.place(page[rest]))
    return layout, positions


def _update(
    store: Any, saved: SavedMap, layout: FittedLayout, ids: np.ndarray, hashes: list[str], progress: bool
) -> tuple[np.ndarray, int]:
    """Positions of the rows now: saved ones where the row's content is unchanged, the others placed by
    the saved `layout`; `(positions, rows placed)`, NaN for rows no longer stored."""
    positions = np.full((len(ids), 2), np.nan, dtype=np.float32)
    row_of = {row: n for n, row in enumerate(ids.tolist())}
    before = {row: (n, digest) for n, (row, digest) in enumerate(zip(saved.ids.tolist(), saved.hashes, strict=True))}
    kept = [
        (row_of[row], before[row][0])
        for row, digest in zip(ids.tolist(), hashes, strict=True)
        if before.get(row, (0, None))[1] == digest
    ]
    if kept:
        now, then = np.asarray(kept).T
        positions[now] = saved.positions[then]
    todo = ids[np.isnan(positions[:, 0])]
    if not len(todo):
        return positions, 0
    logger.info("placing %d new or changed rows by the saved %s layout", len(todo), layout.method)
    with tqdm(total=len(todo), desc="placing new rows", unit="row", disable=not progress) as bar:
        for start in range(0, len(todo), PLACE_ROWS):
            read, vectors = _read_vectors(store, todo[start : start + PLACE_ROWS])
            _put(positions, row_of, read, layout.place(vectors))
            bar.update(len(todo[start : start + PLACE_ROWS]))
    return positions, len(todo)


def _put(positions: np.ndarray, row_of: dict[int, int], ids: np.ndarray, placed: np.ndarray) -> None:
    """Write `placed` positions of `ids` into `positions` (ids not among the rows read are left out)."""
    where = [(row_of[row], n) for n, row in enumerate(ids.tolist()) if row in row_of]
    if where:
        into, source = np.asarray(where).T
        positions[into] = placed[source]
