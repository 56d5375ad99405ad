"""An engine's indexing run: the projection fitted on the first run with `dims`, the run in this
process or on Ray (`indexing.pipeline`, `indexing.on_ray`), then the mapping file and the list of
the files that failed.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Union

from utilities import catalog
from utilities.embeddings import Embedder
from utilities.ids import stored_path
from utilities.indexing import pipeline
from utilities.indexing.planning import Plan, file_stats
from utilities.milvus.collection import ImageCollection
from utilities.milvus.projection_store import save_projection
from utilities.projection import FEW_FOR_A_FIT, FIT_SAMPLE, Projection

if TYPE_CHECKING:
    from utilities.indexing.on_ray import RayOptions

logger = logging.getLogger(__name__)

RayChoice = Union[bool, str, "RayOptions", None]  # noqa: UP007 - a runtime alias, with a forward reference
"""How `index_folder` uses Ray: None or False (not at all), True, a cluster address, or `indexing.on_ray.RayOptions`."""

FittedRow = tuple[int, str, int, int]
"""`(id, path, size, mtime_ns)` of a row written while fitting the projection."""


def fit_projection(
    store: ImageCollection,
    paths: Sequence[str | os.PathLike],
    model: Embedder,
    dims: int,
    adopt: Callable[[Projection], None],
    batch_size: int = 32,
    progress: bool = True,
    decoder: str | None = None,
) -> list[FittedRow]:
    """Fit the collection's projection on a sample of `paths`, store it, and write the sample's rows.

    Args:
        store: The collection, which has no projection yet.
        paths: The run's image files; up to `projection.FIT_SAMPLE` of them are embedded.
        model: Makes the full vectors the projection is fitted on.
        dims: The projection's number of dimensions.
        adopt: Called with the projection once it is stored, before the sample's rows are written.
        batch_size, progress, decoder: As in `indexing.pipeline.embed_paths`.

    Returns:
        `(id, path, size, mtime_ns)` of the rows written (the run finds them unchanged).

    Raises:
        ValueError: Too few images for a projection to `dims` dimensions.
    """
    files = [str(path) for path in paths]
    sample = sorted(random.Random(0).sample(files, min(len(files), FIT_SAMPLE)))
    logger.info("fitting the projection to %d dims on %d images", dims, len(sample))
    stats = {stored_path(path): file_stats(path) for path in sample}  # before reading: a change shows later
    embedded = pipeline.embed_paths(sample, model, batch_size, progress=progress, decoder=decoder)
    if len(embedded.paths) < FEW_FOR_A_FIT:
        logger.warning(
            "the projection to %d dims is fitted on only %d images; a first run of thousands fits a better one",
            dims,
            len(embedded.paths),
        )
    try:
        projection = Projection.fit(embedded.vectors, int(dims))
    except ValueError as error:
        raise ValueError(f"collection {store.name!r}: {error}") from error
    save_projection(store, projection)
    adopt(projection)
    plan = Plan(stats=stats)
    records = [
        plan.record(path, vector)
        for path, vector in zip(embedded.paths, projection.apply(embedded.vectors), strict=True)
    ]
    store.write(records)
    return [(record.id, record.path, record.file_size, record.mtime_ns) for record in records]


def index_paths(
    paths: Sequence[str | os.PathLike],
    store: ImageCollection,
    embedder: Embedder,
    ray: RayChoice = None,
    batch_size: int = 32,
    progress: bool = True,
    decoder: str | None = None,
    prune_root: str | os.PathLike | None = None,
    retry_seconds: float | None = None,
) -> pipeline.IndexReport:
    """Run `indexing.pipeline.index_paths`, or with `ray` (not None or False) `indexing.on_ray.index_paths_on_ray`."""
    if ray is None or ray is False:
        return pipeline.index_paths(
            paths, store, embedder, batch_size, progress=progress, prune_root=prune_root, decoder=decoder
        )
    from utilities.indexing import on_ray

    options = on_ray.ray_options(ray)
    return on_ray.index_paths_on_ray(
        paths,
        store,
        embedder,
        options,
        batch_size,
        progress=progress,
        prune_root=prune_root,
        retry_seconds=retry_seconds,
    )


def after_run(
    report: pipeline.IndexReport,
    store: ImageCollection,
    mapping_path: Path | None,
    failures_path: Path,
    fitted: Sequence[FittedRow] = (),
    progress: bool = True,
) -> pipeline.IndexReport:
    """Count the rows written while fitting, update the mapping file, and list the failed files.

    Args:
        report: The run's report, completed here and returned.
        store: The collection.
        mapping_path: The mapping file to update (`catalog.update_mapping`) when the run changed the
            collection or the file is missing; None: leave it.
        failures_path: Where the failed files are listed (CSV); removed after a run without failures.
        fitted: The rows `fit_projection` wrote, which the run found unchanged.
        progress: Show a progress bar while the mapping is read from the collection.
    """
    if fitted:  # the rows written while fitting the projection were found unchanged by the run
        report.added += len(fitted)
        report.unchanged -= len(fitted)
        report.written_rows = [*fitted, *report.written_rows]
    if mapping_path is not None and (report.indexed or report.removed or not mapping_path.exists()):
        # a run that changed nothing leaves the file as it is; one that did patches it with its rows
        catalog.update_mapping(store, mapping_path, report.written_rows, report.deleted_ids, progress=progress)
    if report.failed:
        report.write_failures(failures_path)
        logger.warning("%d files could not be indexed: see %s", len(report.failed), failures_path)
    else:
        failures_path.unlink(missing_ok=True)
    return report
