"""Indexing a folder end to end: find, decode, embed and insert, in streaming batches.

Memory stays bounded by the batch size. Runs are idempotent and resumable: ids
come from the paths, files already in the collection are skipped before any
decoding, and embedded rows are written (upserted) within about a second, in requests of
the backend's size (`indexing.batch_writer`), so an interrupted run loses a few seconds of work at most
and a re-run finishes the rest. Planning (`indexing.planning`) runs in a thread a few steps ahead of
decoding, and decoding and embedding overlap with writing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from utilities.embeddings import Embedder
from utilities.errors import CollectionMismatchError
from utilities.ids import path_id, stored_path
from utilities.images.finding import find_image_files
from utilities.images.reader import LoadFailure, iter_decoded_batches
from utilities.indexing.background import iter_in_background
from utilities.indexing.batch_writer import BatchWriter
from utilities.indexing.planning import Plan, PlannedStep, iter_planned_steps
from utilities.indexing.report import IndexReport
from utilities.milvus.collection import ImageCollection

__all__ = [
    "EmbeddedImages",
    "IndexReport",
    "PreparedRun",
    "embed_paths",
    "finish_run",
    "index_folder",
    "index_paths",
    "prepare_run",
    "seal_for_search",
    "shard_paths",
    "start_run",
]

logger = logging.getLogger(__name__)

PLANNED_STEPS_AHEAD = 2
"""Steps of planning (`indexing.planning.PLAN_FILES_PER_STEP` files each) that may wait, planned, for the decoder."""

SEAL_AFTER_ROWS = 10_000
"""A run that wrote at least this many rows seals them at its end (`ImageCollection.seal`) and waits
until the collection's index covers them (`wait_for_index`), so that searches use that index.
Smaller runs into a FLAT collection leave their rows in growing segments, searched exactly until Milvus
seals them by itself: a seal per small run would cost seconds (3 s measured) and make small segments.
Under an approximate index every run that wrote rows seals them (`approximate_interim`); so does
`ImageSearchEngine.insert_vectors` (`seal_for_search`). Measured in
benchmarks/results/scale-server.md."""


@dataclass
class EmbeddedImages:
    """Vectors of many images, aligned with their paths.

    Attributes:
        paths: Stored paths of the images that were embedded.
        vectors: `(len(paths), dimension)` float32 array.
        failures: Files that could not be decoded.
    """

    paths: list[str]
    vectors: np.ndarray
    failures: list[LoadFailure] = field(default_factory=list)


def embed_paths(
    paths: Sequence[str | os.PathLike],
    embedder: Embedder,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    decoder: str | None = None,
) -> EmbeddedImages:
    """Embed many files in memory (no Milvus), with parallel decoding and a progress bar.

    Args:
        paths: Image files.
        embedder: Any `Embedder`.
        batch_size: Images per model call.
        workers: Decoding workers.
        progress: Show a tqdm bar.
        decoder: `"thread"`, `"process"` or `"gpu"`; see `images.reader.iter_decoded_batches`.

    Returns:
        The vectors aligned with the paths that decoded, and the failures.

    Example:
        >>> result = embed_paths(find_image_files("photos"), ResNet50Embedder())  # doctest: +SKIP
        >>> result.vectors.shape  # doctest: +SKIP
        (120, 2048)
    """
    kept: list[str] = []
    parts: list[np.ndarray] = []
    failures: list[LoadFailure] = []
    with tqdm(total=len(paths), desc="embedding", unit="img", disable=not progress) as bar:
        for batch in iter_decoded_batches(
            paths, batch_size, embedder.image_size, workers, decoder=decoder, reuse_buffers=True
        ):
            if len(batch.paths):
                parts.append(embedder.embed_batch(batch.images))
                kept.extend(stored_path(p) for p in batch.paths)
            failures.extend(batch.failures)
            bar.update(len(batch.paths) + len(batch.failures))
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)
    return EmbeddedImages(paths=kept, vectors=vectors, failures=failures)


def prune_missing(
    store: ImageCollection, root: str | os.PathLike, current: set[int], progress: bool = False
) -> list[int]:
    """Delete rows under `root` whose file no longer exists; return their ids."""
    prefix = stored_path(root).rstrip("/") + "/"
    stale: list[int] = []
    with tqdm(desc="prune", unit="row", disable=not progress) as bar:
        for page in store.iter_records():
            stale += [
                record.id
                for record in page
                if record.path.startswith(prefix) and record.id not in current and not os.path.lexists(record.path)
            ]
            bar.update(len(page))
    store.delete(stale)
    return stale


def index_paths(
    paths: Sequence[str | os.PathLike],
    store: ImageCollection,
    embedder: Embedder,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    prune_root: str | os.PathLike | None = None,
    decoder: str | None = None,
) -> IndexReport:
    """Bring the collection up to date with the given files.

    New files are embedded and added; files whose size or modification time changed
    are embedded again and their row replaced (same id, never a second row); files
    whose content is already stored under another path reuse that vector (a moved
    folder is not embedded again); unchanged files are skipped. With `prune_root`,
    rows under that folder whose file is gone are deleted.

    Planning runs in a thread ahead of decoding (`indexing.planning.iter_planned_steps`): the first
    files are decoded once the first step of 10,000 is planned, while Milvus answers the
    lookups of the next steps.

    Args:
        paths: Image files (duplicates are ignored).
        store: The target collection; its dimension must equal `embedder.dimension`.
        embedder: Any `Embedder`.
        batch_size: Images per model call and per write.
        workers: Decoding workers.
        progress: Show a tqdm bar (over every file: skipped ones count as they are planned).
        prune_root: Delete rows under this folder whose files no longer exist.
        decoder: `"thread"`, `"process"` or `"gpu"`; see `images.reader.iter_decoded_batches`.

    Returns:
        An `IndexReport` (added, updated, moved, unchanged, removed, failed).

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    started = time.perf_counter()
    run, steps = start_run(paths, store, embedder)
    report = run.report
    with (
        BatchWriter(store, run.plan.record) as writer,
        tqdm(total=run.files, desc="indexing", unit="file", disable=not progress) as bar,
    ):

        def files_to_embed() -> Iterator[str]:
            for step in iter_in_background(steps, PLANNED_STEPS_AHEAD, name="planning"):
                run.settle(step)
                bar.update(step.settled)
                bar.set_postfix(planned=f"{run.planned:,}/{run.files:,}", refresh=False)
                yield from step.to_embed

        for batch in iter_decoded_batches(
            files_to_embed(), batch_size, embedder.image_size, workers, decoder=decoder, reuse_buffers=True
        ):
            report.failed.extend(batch.failures)
            if len(batch.paths):
                names = [p.as_posix() for p in batch.paths]
                writer.add(names, embedder.embed_batch(batch.images))
                run.count_written(names)
            bar.update(len(batch.paths) + len(batch.failures))
    return finish_run(run, store, prune_root, progress, started)


@dataclass
class PreparedRun:
    """An indexing run being planned: its plan, its report so far, and what it leaves to embed.

    Attributes:
        plan: The `Plan` (sizes, times and hashes of the files).
        report: The run's report so far (unchanged, and the files given a stored copy's vector).
        current: Ids of every file of the run (never pruned).
        files: How many files the run covers.
        to_embed: Files to decode and embed, once `prepare_run` has planned them all.
        changed: The changed files planned so far (their rows are replaced: counted as updated).
        planned: Files planned so far.
    """

    plan: Plan
    report: IndexReport
    current: set[int]
    files: int
    to_embed: list[str] = field(default_factory=list)
    changed: set[str] = field(default_factory=set)
    planned: int = 0

    def settle(self, step: PlannedStep) -> None:
        """Count a planned step: its skipped files and copies in the report, its changed files."""
        self.report.unchanged += step.unchanged
        self.report.added += step.added
        self.report.moved += step.moved
        self.report.deleted_ids += step.deleted
        self._note_written(step.copied)
        self.changed.update(step.changed)
        self.planned += step.files

    def count_written(self, paths: Sequence[str]) -> None:
        """Count written files in the report: changed ones as updated, the others as added."""
        updated = sum(1 for path in paths if path in self.changed)
        self.report.updated += updated
        self.report.added += len(paths) - updated
        self._note_written(paths)

    def _note_written(self, paths: Sequence[str]) -> None:
        stats = self.plan.stats
        self.report.written_rows += [(path_id(path), path, *stats.get(path, (0, 0))) for path in paths]


def start_run(
    paths: Sequence[str | os.PathLike], store: ImageCollection, embedder: Embedder
) -> tuple[PreparedRun, Iterator[PlannedStep]]:
    """Check the collection, count its rows, and return the run with its steps of planning, not started.

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    if embedder.dimension != store.dimension:
        raise CollectionMismatchError(
            f"embedder makes {embedder.dimension}-d vectors but collection {store.name!r} holds "
            f"{store.dimension}-d vectors; use another collection name or reset it"
        )
    unique = list(dict.fromkeys(stored_path(p) for p in paths))
    ids = [path_id(p) for p in unique]
    current = set(ids)
    # One exact count first (Strong: after a server restart a fresh client's Session read can run
    # ahead of the server's replay of its log and see no rows); 0 rows: nothing more is read.
    plan = Plan(stats={}, stored_rows=store.count())
    run = PreparedRun(plan, IndexReport(collection=store.name), current, len(unique))
    return run, iter_planned_steps(plan, unique, ids, store, current)


def prepare_run(
    paths: Sequence[str | os.PathLike], store: ImageCollection, embedder: Embedder, progress: bool = True
) -> PreparedRun:
    """Plan the whole run before any decoding (for `indexing.on_ray`, which needs every file up front).

    The first half of a run, with `finish_run` the second; `index_paths` plans in a thread instead,
    while it decodes.

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    run, steps = start_run(paths, store, embedder)
    with tqdm(total=run.files, desc="planning", unit="file", disable=not progress) as bar:
        for step in steps:
            run.settle(step)
            run.to_embed.extend(step.to_embed)
            bar.update(step.files)
    logger.info("%d files: %d unchanged, %d to embed", run.files, run.report.unchanged, len(run.to_embed))
    return run


def approximate_interim(store: ImageCollection) -> bool:
    """Whether rows left in growing segments would be searched less well than by the collection's index.

    A server searches growing segments with an interim index of its own once the collection has an
    approximate index: with HNSW, searches right after a 9,469-photo run found 0.975 of the exact top 10,
    while with FLAT they stayed exact (1.000). Milvus Lite has no such stage.
    """
    return not store.target.is_lite and store.index_type not in ("FLAT", "NONE")


def seal_for_search(store: ImageCollection, written: int, progress: bool = False) -> bool:
    """Seal the rows just written and wait until the index covers them, where searches right after need it.

    The rule of every write that ends a run (`finish_run`, `ImageSearchEngine.insert_vectors`): at least
    `SEAL_AFTER_ROWS` rows, or any rows under an approximate index on a server (`approximate_interim`).
    Rows are durable in Milvus' write-ahead log and visible to reads at once, but searched with Milvus'
    interim index until sealed and indexed; a seal costs a few seconds and makes a segment, so small
    writes leave it to Milvus while the index is FLAT.

    Args:
        store: The collection written to.
        written: Rows the write wrote.
        progress: Show a progress bar while the index is built.

    Returns:
        Whether it sealed.
    """
    if not (written >= SEAL_AFTER_ROWS or (written and approximate_interim(store))):
        return False
    store.seal()
    store.wait_for_index(progress=progress)
    return True


def finish_run(
    run: PreparedRun,
    store: ImageCollection,
    prune_root: str | os.PathLike | None,
    progress: bool,
    started: float,
) -> IndexReport:
    """Prune, seal a large run so that searches use the index, and complete the report."""
    report = run.report
    if prune_root is not None:
        removed = prune_missing(store, prune_root, run.current, progress)
        report.removed = len(removed)
        report.deleted_ids += removed
    seal_for_search(store, report.indexed, progress)
    report.seconds = time.perf_counter() - started
    for failure in report.failed:
        logger.warning("skipped %s: %s", failure.path, failure.reason)
    return report


def shard_paths(paths: Sequence[str | os.PathLike], index: int, count: int) -> list[Path]:
    """The files of shard `index` (1-based) out of `count` disjoint shards.

    A file belongs to the shard given by its id (`path_id(stored_path(p)) % count`),
    so the split does not depend on the order or number of files listed, the shards
    never overlap, and together they cover every file exactly once. N machines can
    each index one shard of a shared folder into one Milvus server.

    Raises:
        ValueError: Unless `1 <= index <= count`.

    Example:
        >>> shard_paths(["/a.jpg", "/b.jpg", "/c.jpg"], 1, 1)
        [PosixPath('/a.jpg'), PosixPath('/b.jpg'), PosixPath('/c.jpg')]
    """
    if not 1 <= index <= count:
        raise ValueError(f"shard {index}/{count} is out of range: use I/N with 1 <= I <= N")
    return [Path(p) for p in paths if path_id(stored_path(p)) % count == index - 1]


def index_folder(
    folder: str | os.PathLike,
    store: ImageCollection,
    embedder: Embedder,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
    prune: bool = False,
) -> IndexReport:
    """Bring the collection up to date with every image under a folder (recursively).

    Args:
        folder: The folder of images.
        store: The target collection.
        embedder: Any `Embedder`.
        batch_size: Images per model call and per write.
        workers: Decoding threads.
        progress: Show a tqdm bar.
        prune: Also delete rows under this folder whose files are gone.

    Returns:
        An `IndexReport` (added, updated, moved, unchanged, removed, failed with reasons).

    Raises:
        NotADirectoryError: The folder does not exist.
        CollectionMismatchError: The embedder's dimension differs from the collection's.

    Example:
        >>> report = index_folder("photos", store, ResNet50Embedder())  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        imagenet_collection: indexed 120, already present 0, failed 1 (14.2 s)
    """
    return index_paths(
        find_image_files(folder), store, embedder, batch_size, workers, progress, prune_root=folder if prune else None
    )
