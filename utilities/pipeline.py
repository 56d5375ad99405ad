"""Indexing a folder end to end: find, decode, embed and insert, in streaming batches.

Memory stays bounded by the batch size. Runs are idempotent and resumable: ids
come from the paths, files already in the collection are skipped before any
decoding, and embedded rows are written (upserted) within about a second, in requests of
the backend's size (`batch_writer`), so an interrupted run loses a few seconds of work at most
and a re-run finishes the rest. Decoding and embedding overlap with writing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from utilities.batch_writer import BatchWriter
from utilities.chunks import chunked
from utilities.collection_rows import RECENT
from utilities.embeddings import Embedder
from utilities.errors import CollectionMismatchError
from utilities.hashing import file_hash, hash_files
from utilities.ids import path_id, stored_path
from utilities.images import find_images
from utilities.index_report import IndexReport
from utilities.milvus_store import ImageCollection
from utilities.reader import LoadFailure, iter_decoded_batches
from utilities.records import ImageRecord

__all__ = [
    "EmbeddedImages",
    "IndexReport",
    "PreparedRun",
    "embed_paths",
    "finish_run",
    "index_folder",
    "index_paths",
    "prepare_run",
    "shard_paths",
]

logger = logging.getLogger(__name__)

PLAN_FILES_PER_STEP = 10_000
"""Files stat'ed and looked up by id per step of planning (one request to Milvus each)."""

SEAL_AFTER_ROWS = 10_000
"""A run that wrote at least this many rows seals them at its end (`ImageCollection.seal`) and waits
until the collection's index covers them (`wait_for_index`), so that searches use that index.
Smaller runs leave their rows in growing segments, searched with Milvus' interim index until
Milvus seals them by itself: their share of the collection is small, and a seal per small run
would cost seconds (3 s measured) and make small segments. Measured in benchmarks/results/scale-server.md."""


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


def _file_stats(path: str) -> tuple[int, int]:
    try:
        status = os.stat(path)
    except OSError:
        return 0, 0
    return int(status.st_size), int(status.st_mtime_ns)


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
        decoder: `"thread"`, `"process"` or `"gpu"`; see `reader.iter_decoded_batches`.

    Returns:
        The vectors aligned with the paths that decoded, and the failures.

    Example:
        >>> result = embed_paths(find_images("photos"), ResNet50Embedder())  # doctest: +SKIP
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


@dataclass
class Plan:
    """What a run does with each file, decided before any decoding.

    Attributes:
        stats: `(size, mtime_ns)` of every file.
        hashes: Content hashes computed so far (of the new files; each file is read once).
        new: Files with no row yet: embedded, or given the vector of a stored copy.
        changed: Files whose size or modification time differ from their row: embedded again.
        unchanged: How many files match their row: skipped.
        stored_rows: Rows in the collection when the run was planned (an exact count).
    """

    stats: dict[str, tuple[int, int]]
    stored_rows: int = 0
    hashes: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def record(self, path: str, vector: np.ndarray) -> ImageRecord:
        """The row to write for `path` (hashing it now if the plan has not yet)."""
        size, mtime_ns = self.stats.get(path, (0, 0))
        digest = self.hashes.get(path) or file_hash(path)  # changed files were not hashed yet
        return ImageRecord(path_id(path), path, size, mtime_ns, digest, vector)


def plan_run(paths: list[str], store: ImageCollection, progress: bool = False) -> Plan:
    """Sort files into new, changed and unchanged by their rows' size and modification time.

    One exact count comes first (Strong: after a server restart a fresh client's Session read can
    run ahead of the server's replay of its log and see no rows). With no row stored every file
    is new and nothing more is read (a first run into an empty collection); otherwise the files'
    ids are looked up (`plan_by_ids`).

    Reading every row in pages instead was measured slower up to 100,000 rows on the server
    (unchanged re-run 98 and 65 µs/file against 28 by id, `benchmarks/results/scale-server-read-all-rows.md`),
    and about even at 400,000; lookups by id cost 70 µs/file at 1.28 M rows, where the mapping read
    its pages at 20 µs/row (not measured for planning).
    """
    plan = Plan(stats={}, stored_rows=store.count())
    with tqdm(total=len(paths), desc="planning", unit="file", disable=not progress) as bar:
        for part in chunked(paths, PLAN_FILES_PER_STEP):
            plan.stats.update((path, _file_stats(path)) for path in part)
            if plan.stored_rows == 0:
                plan.new.extend(part)
            else:
                plan_by_ids(plan, part, store)
            bar.update(len(part))
    return plan


def plan_by_ids(plan: Plan, paths: Sequence[str], store: ImageCollection) -> None:
    """Sort one step of files (stat'ed already) by looking up their ids in one read.

    Session consistency (`collection_rows.RECENT`): the Strong count of `plan_run` has brought the
    server up to date, and a row written since by another process that looks missing only costs
    an upsert of the same id.
    """
    ids = [path_id(path) for path in paths]
    stored = {record.id: record for record in store.records(ids, consistency=RECENT)}
    for path, file_id in zip(paths, ids, strict=True):
        record = stored.get(file_id)
        if record is None:
            plan.new.append(path)
        elif record.stat == plan.stats[path]:
            plan.unchanged += 1
        else:
            plan.changed.append(path)


def find_stored_copies(plan: Plan, store: ImageCollection, progress: bool = False) -> dict[str, ImageRecord]:
    """For each new file whose content is already stored (under another path), that row, with its vector.

    Hashes the new files in parallel (kept in `plan.hashes` for the write). Reads only.
    When the collection is empty (`plan.stored_rows == 0`), no copy can exist: nothing is hashed
    here, and each file is hashed as its row is written, in a writer thread, beside the model
    (`Plan.record`), instead of in a pass before the first batch.
    """
    if not plan.new or plan.stored_rows == 0:
        return {}
    plan.hashes.update(hash_files(plan.new, progress=progress))
    by_hash = {record.content_hash: record for record in store.records_by_hash(list(plan.hashes.values()), True)}
    return {path: by_hash[plan.hashes[path]] for path in plan.new if plan.hashes[path] in by_hash}


def reuse_stored_vectors(
    copies: dict[str, ImageRecord], plan: Plan, store: ImageCollection, current: set[int]
) -> tuple[int, int]:
    """Write each new file with its stored copy's vector, and delete the copies whose file is gone.

    Args:
        copies: From `find_stored_copies`.
        plan: The run's plan (sizes, times and hashes of the new files).
        store: The collection.
        current: Ids of every file of this run (never deleted).

    Returns:
        `(added, moved)`: files that got a copy's vector, and among them those whose copy was
        deleted because its file is gone (a moved or renamed file).
    """
    if not copies:
        return 0, 0
    store.write([plan.record(path, copy.vector) for path, copy in copies.items()])
    gone = {copy.id for copy in copies.values() if not os.path.exists(copy.path)} - current
    store.delete(sorted(gone))
    moved = sum(1 for copy in copies.values() if copy.id in gone)
    return len(copies) - moved, moved


def prune_missing(store: ImageCollection, root: str | os.PathLike, current: set[int], progress: bool = False) -> int:
    """Delete rows under `root` whose file no longer exists; return how many."""
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
    return len(stale)


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

    Args:
        paths: Image files (duplicates are ignored).
        store: The target collection; its dimension must equal `embedder.dimension`.
        embedder: Any `Embedder`.
        batch_size: Images per model call and per write.
        workers: Decoding workers.
        progress: Show a tqdm bar.
        prune_root: Delete rows under this folder whose files no longer exist.
        decoder: `"thread"`, `"process"` or `"gpu"`; see `reader.iter_decoded_batches`.

    Returns:
        An `IndexReport` (added, updated, moved, unchanged, removed, failed).

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    started = time.perf_counter()
    run = prepare_run(paths, store, embedder, progress)
    report = run.report
    with (
        BatchWriter(store, run.plan.record) as writer,
        tqdm(total=len(run.to_embed), desc="indexing", unit="img", disable=not progress) as bar,
    ):
        for batch in iter_decoded_batches(
            run.to_embed, batch_size, embedder.image_size, workers, decoder=decoder, reuse_buffers=True
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
    """An indexing run after planning, before any decoding: what is left to embed.

    Attributes:
        plan: The `Plan` (sizes, times and hashes of the files).
        report: The run's report so far (unchanged, and the files given a stored copy's vector).
        to_embed: Files to decode and embed (new ones without a stored copy, then changed ones).
        current: Ids of every file of the run (never pruned).
    """

    plan: Plan
    report: IndexReport
    to_embed: list[str]
    current: set[int]

    def __post_init__(self) -> None:
        self._changed = set(self.plan.changed)  # built once, not per batch

    def count_written(self, paths: Sequence[str]) -> None:
        """Count written files in the report: changed ones as updated, the others as added."""
        updated = sum(1 for path in paths if path in self._changed)
        self.report.updated += updated
        self.report.added += len(paths) - updated


def prepare_run(
    paths: Sequence[str | os.PathLike], store: ImageCollection, embedder: Embedder, progress: bool = True
) -> PreparedRun:
    """Check the collection, plan the run and give new files the vectors of stored copies.

    The first half of `index_paths`, shared with `ray_indexing` (the second is `finish_run`).

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    if embedder.dimension != store.dimension:
        raise CollectionMismatchError(
            f"embedder makes {embedder.dimension}-d vectors but collection {store.name!r} holds "
            f"{store.dimension}-d vectors; use another collection name or reset it"
        )
    unique = list(dict.fromkeys(stored_path(p) for p in paths))
    current = {path_id(p) for p in unique}
    plan = plan_run(unique, store, progress)
    report = IndexReport(unchanged=plan.unchanged, collection=store.name)
    copies = find_stored_copies(plan, store, progress)
    report.added, report.moved = reuse_stored_vectors(copies, plan, store, current)
    to_embed = [path for path in plan.new if path not in copies] + plan.changed
    logger.info("%d files: %d unchanged, %d to embed", len(unique), plan.unchanged, len(to_embed))
    return PreparedRun(plan, report, to_embed, current)


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
        report.removed = prune_missing(store, prune_root, run.current, progress)
    if report.indexed >= SEAL_AFTER_ROWS:
        # Rows are durable in Milvus' write-ahead log and visible to reads at once, but searched
        # with Milvus' interim index until sealed and indexed; a seal costs a few seconds and makes
        # a segment, so small runs leave it to Milvus (see SEAL_AFTER_ROWS).
        store.seal()
        store.wait_for_index(progress=progress)
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
        find_images(folder), store, embedder, batch_size, workers, progress, prune_root=folder if prune else None
    )
