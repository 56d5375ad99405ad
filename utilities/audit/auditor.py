"""`audit_collection`: the whole audit of a stored collection, from its rows, vectors and files.

1. One read and k-NN search of the collection, as `duplicates` makes it
   (`duplicates.candidates.find_candidates`): every row's path and content hash, and its near pairs.
2. Each row's split and class from its folders (`splits`); copies across splits (`leaks`).
3. A first pass over the stored vectors: class centroids (`outliers`) and the sample the label
   models are fitted on (`labels`); a second pass scores every row against both, and searches the
   neighbours of the rows whose folder looks wrong, for a suggestion.
4. The pixel measures of every file (`quality`), computed on demand.

No model runs, and nothing is moved, deleted or relabelled. The client holds one page of vectors,
the label sample (at most `labels.FIT_ROWS` rows), one centroid a class and a few numbers a row:
never a rows x rows matrix (on Milvus Lite, step 1 holds every vector, as `duplicates` does there).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from utilities.audit import labels, outliers, quality
from utilities.audit.leaks import find_leaks
from utilities.audit.report import AuditReport, LabelError, Outlier, QualityIssue
from utilities.audit.splits import Layout, Place, find_layout
from utilities.audit.vectors import vector_pages
from utilities.duplicates.candidates import Candidates, find_candidates
from utilities.duplicates.finder import DEFAULT_NEIGHBOURS, DEFAULT_THRESHOLD
from utilities.duplicates.verification import check_rule, require_opencv
from utilities.ids import stored_path
from utilities.milvus.collection import ImageCollection


@dataclass
class _Rows:
    """What the audit knows of every row: its record and place, and class numbers.

    Attributes:
        candidates: `find_candidates`' answer (records by id, exact groups, near pairs).
        layout: How the paths were read.
        places: Each row's split and class, by id.
        class_names: The classes, sorted; a row's class number indexes this list.
        class_of: Each labelled row's class number, by id.
        judged: Class numbers with at least `labels.FOLDS` rows (the only ones judged).
    """

    candidates: Candidates
    layout: Layout
    places: dict[int, Place]
    class_names: list[str] = field(default_factory=list)
    class_of: dict[int, int] = field(default_factory=dict)
    judged: set[int] = field(default_factory=set)
    _groups: dict[int, list[int]] | None = field(default=None, repr=False)

    def class_numbers(self, ids: np.ndarray) -> np.ndarray:
        """Each row's class number (-1 without one)."""
        return np.fromiter((self.class_of.get(int(row), -1) for row in ids), dtype=np.int64, count=len(ids))

    def copies(self, row: int) -> set[int]:
        """The row and its exact copies (same content hash)."""
        if self._groups is None:
            self._groups = {member: group for group in self.candidates.exact for member in group}
        return set(self._groups.get(row, ())) | {row}


def _store_of(source: Any) -> ImageCollection:
    """The collection itself, or an `ImageSearchEngine`'s, opened as its `find_duplicates` opens it: existing,
    without building or checking the model (the stored vectors may come from another one)."""
    return source if isinstance(source, ImageCollection) else source._opened.stored_rows()


def _read_rows(
    store: ImageCollection, splits: Sequence[str] | None, root: str | None, threshold: float, neighbours: int, bar: bool
) -> _Rows:
    """Step 1 and the places: `find_candidates` and each row's split and class."""
    with tqdm(total=store.count(), desc="reading and searching", unit="row", disable=not bar) as progress:
        candidates = find_candidates(store, threshold, neighbours, on_progress=progress.update)
    records = candidates.records
    layout = find_layout([record.path for record in records.values()], splits, root)
    rows = _Rows(candidates, layout, {row: layout.place(record.path) for row, record in records.items()})
    rows.class_names = sorted({place.label for place in rows.places.values() if place.label is not None})
    number = {name: n for n, name in enumerate(rows.class_names)}
    rows.class_of = {row: number[place.label] for row, place in rows.places.items() if place.label is not None}
    counts = np.bincount(list(rows.class_of.values()), minlength=len(rows.class_names))
    rows.judged = {n for n, count in enumerate(counts.tolist()) if count >= labels.FOLDS}
    return rows


def _fit(store: ImageCollection, rows: _Rows, fit_rows: int, bar: bool) -> tuple[np.ndarray, labels.FoldModels | None]:
    """The first pass over the vectors: the class centroids, and the label models fitted on a sample."""
    eligible = sorted(row for row, number in rows.class_of.items() if number in rows.judged and len(rows.judged) > 1)
    rng = np.random.default_rng(labels.SEED)
    sample = sorted(rng.choice(eligible, fit_rows, replace=False).tolist()) if len(eligible) > fit_rows else eligible
    position = {row: n for n, row in enumerate(sample)}
    vectors = np.zeros((len(sample), store.dimension), dtype=np.float32)
    sums = outliers.CentroidSums(len(rows.class_names), store.dimension)
    for ids, page in vector_pages(store, bar, "class centroids, label sample"):
        sums.add(page, rows.class_numbers(ids))
        for n, row in enumerate(ids.tolist()):
            if row in position:
                vectors[position[row]] = page[n]
    if len(rows.judged) < 2:
        return sums.centroids(), None
    ids = np.array(sample, dtype=np.int64)
    return sums.centroids(), labels.fit_folds(ids, vectors, rows.class_numbers(ids), len(rows.class_names))


@dataclass
class _Scores:
    """The second pass's findings: every row's outlier score, and the rows whose folder looks wrong."""

    ids: list[np.ndarray] = field(default_factory=list)
    distances: list[np.ndarray] = field(default_factory=list)
    label_errors: list[LabelError] = field(default_factory=list)


def _score(
    store: ImageCollection,
    rows: _Rows,
    centroids: np.ndarray,
    models: labels.FoldModels | None,
    neighbours: int,
    bar: bool,
) -> _Scores:
    """The second pass over the vectors: outlier scores, label probabilities, and suggestions for the misfiled."""
    scores = _Scores()
    for ids, page in vector_pages(store, bar, "scoring rows"):
        scores.ids.append(ids)
        scores.distances.append(outliers.centroid_distances(page, centroids))
        if models is not None:
            scores.label_errors += _misfiled(store, rows, ids, page, models, neighbours)
    scores.label_errors.sort(key=lambda error: (-error.score, error.path))
    return scores


def _misfiled(
    store: ImageCollection,
    rows: _Rows,
    ids: np.ndarray,
    page: np.ndarray,
    models: labels.FoldModels,
    neighbours: int,
) -> list[LabelError]:
    """The rows of one page whose confident class is not their folder's, each with its suggestion."""
    filed = rows.class_numbers(ids)
    judged = np.isin(filed, sorted(rows.judged))
    if not judged.any():
        return []
    probabilities = models.probabilities(ids[judged], page[judged])
    confident = labels.confident_classes(probabilities, models.thresholds)
    given = filed[judged]
    wrong = np.flatnonzero((confident >= 0) & (confident != given))
    if not len(wrong):
        return []
    suspects = ids[judged][wrong].tolist()
    hits = store.search(page[judged][wrong], top_k=neighbours + 1, refine=1)
    found = []
    for n, row, row_hits in zip(wrong.tolist(), suspects, hits, strict=True):
        majority = labels.neighbour_majority([int(hit["id"]) for hit in row_hits], rows.class_of, rows.copies(row))
        suggested = majority if majority not in (-1, given[n]) else int(confident[n])
        found.append(
            LabelError(
                path=rows.candidates.records[row].path,
                folder=rows.class_names[given[n]],
                suggested=rows.class_names[suggested],
                score=round(1.0 - float(probabilities[n, given[n]]), 4),
            )
        )
    return found


def _outliers(rows: _Rows, scores: _Scores) -> tuple[list[Outlier], dict[str, Any]]:
    """The rows past the outlier cut, farthest first, and the cut."""
    ids = np.concatenate(scores.ids) if scores.ids else np.zeros(0, dtype=np.int64)
    distances = np.concatenate(scores.distances) if scores.distances else np.zeros(0, dtype=np.float32)
    cut = outliers.outlier_cut(distances)
    records = rows.candidates.records
    listed = [
        Outlier(records[int(row)].path, round(float(distance), 4))
        for row, distance in zip(ids, distances, strict=True)
        if distance > cut and int(row) in records  # a row written since the audit began is not listed
    ]
    listed.sort(key=lambda outlier: (-outlier.score, outlier.path))
    rule = f"score > median + {outliers.MODIFIED_Z} x {outliers.MAD_TO_STD} x MAD (modified z-score)"
    median = float(np.median(distances)) if len(distances) else 0.0
    return listed, {"rule": rule, "score_cut": round(cut, 6), "median": round(median, 6)}


def _quality(paths: list[str], workers: int | None, bar: bool) -> tuple[list[QualityIssue], dict[str, str]]:
    """The files' pixel issues, worst first, and the files that could not be read."""
    with tqdm(total=len(paths), desc="measuring pixels", unit="file", disable=not bar) as progress:
        measured, unreadable = quality.measure_files(paths, workers, on_progress=progress.update)
    found = []
    for path, scores in measured.items():
        severities = scores.severities()
        if severities:
            issues = [issue for issue in quality.ISSUES if issue in severities]
            found.append(QualityIssue(path, issues, scores.as_dict(), max(severities.values())))
    found.sort(key=lambda issue: (-issue.score, issue.path))
    return found, unreadable


QUALITY_THRESHOLDS = {
    "dark": f"95th percentile of grey levels < {quality.DARK_LEVEL:g}",
    "light": f"5th percentile of grey levels > {quality.LIGHT_LEVEL:g}",
    "blurry": f"std(Laplacian) / std(grey) < {quality.BLURRY_RATIO:g}",
    "low_information": f"std at {quality.STRUCTURE_SIDE}x{quality.STRUCTURE_SIDE} < {quality.LOW_INFORMATION_LEVELS:g}",
    "tiny": f"shorter side < {quality.TINY_SIDE} px",
    "odd_aspect": f"longer / shorter side > {quality.ODD_ASPECT:g}",
}
"""The quality cuts as the report states them."""


def audit_collection(
    engine: Any,
    splits: Sequence[str] | None = None,
    top: int | None = None,
    root: str | os.PathLike | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: bool = True,
    check_quality: bool = True,
    workers: int | None = None,
    fit_rows: int = labels.FIT_ROWS,
    progress: bool | None = None,
) -> AuditReport:
    """Audit a stored collection: leaks between splits, label errors, outliers and bad images.

    Args:
        engine: An `ImageSearchEngine` (its model is not built) or an `ImageCollection`.
        splits: Split folder names, the first level under `root`; None: found from the folders
            (`splits.SPLIT_NAMES`), else a `<class>/...` layout without splits.
        top: Items of each list the report prints (`AuditReport.top`); everything is computed.
        root: The indexed folder; None: the deepest folder holding every stored file.
        threshold: Cosine a near copy across splits must reach to be checked (`duplicates`' default).
        neighbours: Nearest rows searched for each row (copies; the suggestion of a misfiled image).
        verify: Check near copies with keypoints (OpenCV); False lists them unchecked.
        check_quality: Measure the pixels of every file (reads each file once).
        workers: Processes for the keypoint check and threads for the pixels (default: one a core).
        fit_rows: Most labelled rows the label models are fitted on.
        progress: Show progress bars (default: the engine's setting; False for a collection).

    Returns:
        The `AuditReport`.

    Raises:
        CollectionNotFoundError: The collection does not exist; index a folder first.
        ValueError: `threshold` is not a cosine, or `neighbours` or `fit_rows` is below 1.
        ImageSearchError: OpenCV is missing and the check or the pixel measures need it.

    Example:
        >>> from utilities import ImageSearchEngine  # doctest: +SKIP
        >>> report = audit_collection(ImageSearchEngine(), splits=["train", "test"])  # doctest: +SKIP
        >>> [item["path"] for item in report.as_dict()["label_errors"][:3]]  # doctest: +SKIP
    """
    import time

    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine similarity between -1 and 1 (e.g. 0.65)")
    if neighbours < 1 or fit_rows < 1:
        raise ValueError(f"neighbours ({neighbours}) and fit_rows ({fit_rows}) must be at least 1")
    if verify or check_quality:
        require_opencv()
    started = time.perf_counter()
    store = _store_of(engine)
    bar = bool(getattr(engine, "progress", False)) if progress is None else progress
    rows = _read_rows(store, splits, None if root is None else stored_path(root), threshold, neighbours, bar)
    report = AuditReport(store.name, len(rows.places), rows.layout.root, top=top, classes=len(rows.class_names))
    for place in rows.places.values():
        if place.split is not None:
            report.splits[place.split] = report.splits.get(place.split, 0) + 1
    _add_leaks(report, rows, verify, workers, bar, threshold, neighbours)
    centroids, models = _fit(store, rows, fit_rows, bar)
    scores = _score(store, rows, centroids, models, neighbours, bar)
    _add_labels(report, rows, models, scores, min(fit_rows, len(rows.class_of)))
    report.outliers, report.cuts["outliers"] = _outliers(rows, scores)
    if check_quality:
        paths = sorted(record.path for record in rows.candidates.records.values() if "://" not in record.path)
        report.quality, unreadable = _quality(paths, workers, bar)
        report.unreadable.update(unreadable)
        report.cuts["quality"] = {"rule": "a measure past its threshold", "thresholds": QUALITY_THRESHOLDS}
    else:
        report.notes.append("pixel measures not taken (check_quality=False): the quality list is empty")
    report.seconds = time.perf_counter() - started
    return report


def _add_leaks(
    report: AuditReport, rows: _Rows, verify: bool, workers: int | None, bar: bool, threshold: float, neighbours: int
) -> None:
    """Find the leaks, or say why there are none to find."""
    if len(report.splits) < 2:
        report.notes.append(
            f"leaks not checked: the rows under {report.root} are in {len(report.splits)} split(s) "
            f"(found: {', '.join(report.splits) or 'none'}); name them with splits=[...] / --splits, or give root"
        )
        return
    search = find_leaks(rows.candidates, rows.places, verify, workers, bar)
    report.leaks, report.unreadable = search.leaks, {**report.unreadable, **search.unreadable}
    checked = "checked by keypoints" if verify else "not checked"
    report.cuts["leaks"] = {
        "rule": f"exact: same bytes; near: cosine >= {threshold:g} among {neighbours} nearest, {checked}",
        "cosine": threshold,
        "neighbours": neighbours,
        "verified": verify,
        "check": check_rule() if verify else None,
        "rejected": search.rejected,
        "splits": sorted(report.splits),
    }


def _add_labels(
    report: AuditReport, rows: _Rows, models: labels.FoldModels | None, scores: _Scores, fitted: int
) -> None:
    """Put the label errors and their cut in the report, or say why there are none."""
    unjudged = sorted(rows.class_names[n] for n in range(len(rows.class_names)) if n not in rows.judged)
    if models is None:
        report.notes.append(
            f"label errors not checked: {len(rows.judged)} class folder(s) with {labels.FOLDS} or more images (need 2)"
        )
        return
    report.label_errors = scores.label_errors
    report.cuts["label_errors"] = {
        "rule": f"confident learning: the most likely class at or above {labels.THRESHOLD_SHARE:g} x its threshold "
        "is not the folder's",
        "thresholds": {rows.class_names[n]: round(float(t), 4) for n, t in enumerate(models.thresholds)},
        "threshold_share": labels.THRESHOLD_SHARE,
        "folds": labels.FOLDS,
        "fitted_rows": fitted,
        "unjudged_classes": unjudged,
    }
