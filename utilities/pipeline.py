"""Indexing a folder end to end: find, decode, embed and insert, in streaming batches.

Memory stays bounded by the batch size. Runs are idempotent and resumable: ids
come from the paths, files already in the collection are skipped before any
decoding, and every batch is written (upserted) as soon as it is embedded, so an
interrupted run loses at most the batch in flight and a re-run finishes the rest.
Embedding the next batch overlaps with writing the previous one.
"""

from __future__ import annotations

import csv
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from utilities.embeddings import Embedder
from utilities.errors import CollectionMismatchError
from utilities.ids import path_id, stored_path
from utilities.images import find_images
from utilities.milvus_store import ImageCollection
from utilities.reader import LoadFailure, iter_decoded_batches

logger = logging.getLogger(__name__)


@dataclass
class IndexReport:
    """What an indexing run did.

    Attributes:
        indexed: Images embedded and written in this run.
        already_present: Images skipped because their id was already stored.
        failed: Files that could not be used, with reasons.
        seconds: Wall time of the run.
        collection: Collection name.
    """

    indexed: int = 0
    already_present: int = 0
    failed: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0
    collection: str = ""

    @property
    def total(self) -> int:
        """Files considered: indexed + already present + failed."""
        return self.indexed + self.already_present + len(self.failed)

    def __str__(self) -> str:
        lines = [
            f"{self.collection}: indexed {self.indexed}, already present {self.already_present}, "
            f"failed {len(self.failed)} ({self.seconds:.1f} s)"
        ]
        lines += [f"  failed: {f.path}: {f.reason}" for f in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more (see the failure report)")
        return "\n".join(lines)

    def write_failures(self, path: str | os.PathLike) -> Path:
        """Write the failed files and reasons to a CSV file (`path`, `reason`)."""
        destination = Path(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows((f.path, f.reason) for f in self.failed)
        return destination


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
) -> EmbeddedImages:
    """Embed many files in memory (no Milvus), with parallel decoding and a progress bar.

    Args:
        paths: Image files.
        embedder: Any `Embedder`.
        batch_size: Images per model call.
        workers: Decoding threads.
        progress: Show a tqdm bar.

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
        for batch in iter_decoded_batches(paths, batch_size, embedder.image_size, workers):
            if len(batch.paths):
                parts.append(embedder.embed_batch(batch.images))
                kept.extend(stored_path(p) for p in batch.paths)
            failures.extend(batch.failures)
            bar.update(len(batch.paths) + len(batch.failures))
    vectors = np.concatenate(parts) if parts else np.zeros((0, embedder.dimension), np.float32)
    return EmbeddedImages(paths=kept, vectors=vectors, failures=failures)


def index_paths(
    paths: Sequence[str | os.PathLike],
    store: ImageCollection,
    embedder: Embedder,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
) -> IndexReport:
    """Embed and insert the given files that are not stored yet.

    Args:
        paths: Image files (duplicates are ignored).
        store: The target collection; its dimension must equal `embedder.dimension`.
        embedder: Any `Embedder`.
        batch_size: Images per model call and per write.
        workers: Decoding threads.
        progress: Show a tqdm bar.

    Returns:
        An `IndexReport`.

    Raises:
        CollectionMismatchError: The embedder's dimension differs from the collection's.
    """
    started = time.perf_counter()
    if embedder.dimension != store.dimension:
        raise CollectionMismatchError(
            f"embedder makes {embedder.dimension}-d vectors but collection {store.name!r} holds "
            f"{store.dimension}-d vectors; use another collection name or reset it"
        )
    unique = list(dict.fromkeys(stored_path(p) for p in paths))
    present = store.existing_ids([path_id(p) for p in unique])
    todo = [p for p in unique if path_id(p) not in present]
    report = IndexReport(already_present=len(unique) - len(todo), collection=store.name)
    logger.info("%d files, %d already stored, %d to index", len(unique), report.already_present, len(todo))
    with (
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="milvus-write") as writer,
        tqdm(total=len(todo), desc="indexing", unit="img", disable=not progress) as bar,
    ):
        pending: Future | None = None
        for batch in iter_decoded_batches(todo, batch_size, embedder.image_size, workers):
            report.failed.extend(batch.failures)
            if len(batch.paths):
                vectors = embedder.embed_batch(batch.images)
                if pending is not None:
                    report.indexed += pending.result()
                pending = writer.submit(_write_batch, store, [p.as_posix() for p in batch.paths], vectors)
            bar.update(len(batch.paths) + len(batch.failures))
        if pending is not None:
            report.indexed += pending.result()
    if report.indexed:
        store.flush()
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


def _write_batch(store: ImageCollection, paths: list[str], vectors: np.ndarray) -> int:
    stats = [_file_stats(p) for p in paths]
    return store.insert(paths, vectors, file_sizes=[s[0] for s in stats], mtimes_ns=[s[1] for s in stats], upsert=True)


def index_folder(
    folder: str | os.PathLike,
    store: ImageCollection,
    embedder: Embedder,
    batch_size: int = 32,
    workers: int | None = None,
    progress: bool = True,
) -> IndexReport:
    """Index every image under a folder (recursively) that is not stored yet.

    Args:
        folder: The folder of images.
        store: The target collection.
        embedder: Any `Embedder`.
        batch_size: Images per model call and per write.
        workers: Decoding threads.
        progress: Show a tqdm bar.

    Returns:
        An `IndexReport` (indexed, already present, failed with reasons).

    Raises:
        NotADirectoryError: The folder does not exist.
        CollectionMismatchError: The embedder's dimension differs from the collection's.

    Example:
        >>> report = index_folder("photos", store, ResNet50Embedder())  # doctest: +SKIP
        >>> print(report)  # doctest: +SKIP
        imagenet_collection: indexed 120, already present 0, failed 1 (14.2 s)
    """
    return index_paths(find_images(folder), store, embedder, batch_size, workers, progress)
