"""`ImageSearchEngine`: the one front door the notebook and the CLI both use.

It holds a collection and an embedder (both created lazily) and offers a handful
of verbs: `index_folder`, `search`, `plot`, `copy_results`, `count`, `mapping`,
`create_index`, `insert_vectors`, `drop`, `close`. Writing creates the collection;
reading (`count`, `search`, `mapping`) never does: it says to index a folder first.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
import pandas as pd

from utilities import catalog, files, plotting, search
from utilities.config import DEFAULT_COLLECTION, resolve_target
from utilities.embeddings import Embedder, ResNet50Embedder
from utilities.errors import CollectionNotFoundError
from utilities.ids import path_id, stored_path
from utilities.images.finding import find_image_files, find_images
from utilities.indexing import pipeline
from utilities.milvus.collection import ImageCollection

if TYPE_CHECKING:
    from utilities.duplicates.report import DuplicateReport
    from utilities.indexing.on_ray import RayOptions

logger = logging.getLogger(__name__)

RayChoice = Union[bool, str, "RayOptions", None]  # noqa: UP007 - a runtime alias, with a forward reference
"""How `index_folder` uses Ray: None or False (not at all), True, a cluster address, or `indexing.on_ray.RayOptions`."""


class ImageSearchEngine:
    """Index folders of images into Milvus and find similar images.

    Args:
        uri: Milvus Lite file (`db/milvus.db`, the default) or server URI
            (`http://localhost:19530`); falls back to `$MILVUS_URI`.
        token: Server token; falls back to `$MILVUS_TOKEN`.
        collection_name: Collection to use (created on first write).
        embedder: Any `Embedder`; by default a `ResNet50Embedder(weights)`.
        weights: ResNet50 weights when no embedder is given: `"imagenet"`, None
            (random) or a weights file.
        metric: `COSINE`, `IP` or `L2` for a new collection (None: `COSINE`); when given,
            an existing collection must use it (`CollectionMismatchError` otherwise).
        batch_size: Images per model call.
        progress: Show tqdm progress bars.
        retry_seconds: How long a call keeps retrying while a server is unreachable
            (default 60 s, see `milvus.retry.RetryPolicy`; 0 fails at once).
        decoder: How images are decoded: `"thread"`, `"process"` or `"gpu"` (nvJPEG, needs
            torchvision with CUDA); see `images.reader.iter_decoded_batches`. Default: by core count.

    It is a context manager: leaving the `with` block closes the connection (and lets
    another process open a Milvus Lite file).

    Example:
        >>> with ImageSearchEngine(weights=None) as engine:  # doctest: +SKIP
        ...     print(engine.index_folder("photos"))
        ...     print(engine.search("query.jpg", top_k=5))
    """

    def __init__(
        self,
        uri: str | os.PathLike | None = None,
        token: str | None = None,
        collection_name: str = DEFAULT_COLLECTION,
        embedder: Embedder | None = None,
        weights: str | os.PathLike | None = "imagenet",
        metric: str | None = None,
        batch_size: int = 32,
        progress: bool = True,
        retry_seconds: float | None = None,
        decoder: str | None = None,
    ) -> None:
        self.target = resolve_target(uri, token)
        self.decoder = decoder
        self.retry_seconds = retry_seconds
        self.collection_name = collection_name
        self.metric = metric.upper() if metric else None
        self.batch_size = batch_size
        self.progress = progress
        self._embedder = embedder
        self._weights = weights
        self._store: ImageCollection | None = None
        self._dropped = False

    @property
    def embedder(self) -> Embedder:
        """The embedder (ResNet50 built on first use unless one was passed)."""
        if self._embedder is None:
            self._embedder = ResNet50Embedder(weights=self._weights, batch_size=self.batch_size)
        return self._embedder

    @property
    def store(self) -> ImageCollection:
        """The collection, opened on first use and created if it does not exist yet (for writing).

        Reading methods (`count`, `search`, `mapping`) do not create it; see `open_existing`.
        """
        if self._store is None or self._dropped:
            self._store = self._open(create=True)
            self._dropped = False
        return self._store

    def _open(self, **options: Any) -> ImageCollection:
        if self._store is not None:  # one connection per engine: reuse it (a Lite file allows one process)
            self._store.ensure(dimension=self.embedder.dimension, metric=self.metric, **options)
            return self._store
        return ImageCollection.open(
            self.target.uri,
            self.target.token,
            self.collection_name,
            dimension=self.embedder.dimension,
            metric=self.metric,
            retry_seconds=self.retry_seconds,
            **options,
        )

    def open_existing(self) -> ImageCollection:
        """The collection, which must exist already (for read-only work such as search).

        Raises:
            CollectionNotFoundError: It does not exist; index a folder first.
        """
        if self._store is None or self._dropped:
            self._store = self._open(create=False)
            self._dropped = False
        return self._store

    def create_collection(self, reset: bool = False) -> ImageCollection:
        """Create the collection (or check the existing one); `reset` drops it first."""
        self._store = self._open(reset=reset)
        self._dropped = False
        return self._store

    def drop(self) -> bool:
        """Drop the collection and all its rows; returns False if it did not exist.

        The connection stays open: indexing again creates the collection anew.
        """
        try:
            store = self.open_existing()
        except CollectionNotFoundError:
            return False
        store.drop()
        self._dropped = True
        return True

    def close(self) -> None:
        """Close the connection (for Milvus Lite, also release the file for other processes).

        The engine can be used again afterwards: the next call reconnects.
        """
        if self._store is not None:
            self._store.close()
            self._store = None
        self._dropped = False

    def __enter__(self) -> ImageSearchEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def embed_image(self, image: str | os.PathLike | Any) -> np.ndarray:
        """The vector of one image (path or PIL image), shape `(dimension,)`."""
        return search.query_vectors([image], self.embedder)[1][0]

    def embed_folder(self, folder: str | os.PathLike) -> pipeline.EmbeddedImages:
        """Embed every image under a folder into memory (nothing is stored)."""
        return pipeline.embed_paths(
            find_images(folder), self.embedder, self.batch_size, progress=self.progress, decoder=self.decoder
        )

    def insert_vectors(self, paths: Sequence[str | os.PathLike], vectors: np.ndarray) -> int:
        """Store precomputed vectors with their paths (upsert: re-running adds nothing)."""
        stored = [stored_path(p) if not str(p).startswith(("http://", "https://")) else str(p) for p in paths]
        return self.store.insert(stored, vectors, ids=[path_id(p) for p in stored])

    def index_folder(
        self,
        folder: str | os.PathLike,
        save_mapping: bool = True,
        prune: bool = False,
        ray: RayChoice = None,
    ) -> pipeline.IndexReport:
        """Bring the collection up to date with the images under `folder`; see `indexing.pipeline.index_folder`.

        New and changed files are embedded, moved ones keep their vectors, unchanged
        ones are skipped; with `prune`, rows of files deleted from the folder go too.
        Also updates the id-to-path mapping file (see `mapping_path`) when `save_mapping` and the run
        changed the collection (or the file is missing): the file is patched with the rows the run
        wrote and deleted, and rebuilt from the collection only if it then disagrees with the row
        count (`catalog.update_mapping`).

        With `ray` (True, a cluster address, or `indexing.on_ray.RayOptions`), Ray Data decodes and
        embeds on a cluster, writing into the Milvus server; see `indexing.on_ray.index_paths_on_ray`.

        Example:
            >>> engine = ImageSearchEngine("http://milvus:19530")  # doctest: +SKIP
            >>> engine.index_folder("/mnt/photos", ray=RayOptions(address="auto", embed_actors=4))  # doctest: +SKIP
        """
        return self.index_files(find_image_files(folder), save_mapping, prune_root=folder if prune else None, ray=ray)

    def index_files(
        self,
        paths: Sequence[str | os.PathLike],
        save_mapping: bool = True,
        prune_root: str | os.PathLike | None = None,
        failures_path: str | os.PathLike | None = None,
        ray: RayChoice = None,
    ) -> pipeline.IndexReport:
        """Bring the collection up to date with the given image files; see `indexing.pipeline.index_paths`.

        Args:
            paths: Image files.
            save_mapping: Update the mapping file afterwards if the run changed the collection
                (patched with the run's rows; see `catalog.update_mapping`).
            prune_root: Delete rows under this folder whose files are gone.
            failures_path: Where to list the files that failed (default `failures_path`);
                give each of several concurrent runs its own.
            ray: Decode and embed on Ray (see `index_folder`); None or False: in this process.
        """
        if ray is not None and ray is not False:
            from utilities.indexing import on_ray

            report = on_ray.index_paths_on_ray(
                paths,
                self.store,
                self.embedder,
                on_ray.ray_options(ray),
                self.batch_size,
                progress=self.progress,
                prune_root=prune_root,
                retry_seconds=self.retry_seconds,
            )
            return self._after_indexing(report, save_mapping, Path(failures_path or self.failures_path))
        report = pipeline.index_paths(
            paths,
            self.store,
            self.embedder,
            self.batch_size,
            progress=self.progress,
            prune_root=prune_root,
            decoder=self.decoder,
        )
        return self._after_indexing(report, save_mapping, Path(failures_path or self.failures_path))

    @property
    def failures_path(self) -> Path:
        """Where the files that failed in the last indexing run are listed (CSV), beside the mapping."""
        return self.mapping_path.with_name(f"{self.collection_name}.failures.csv")

    def _after_indexing(
        self, report: pipeline.IndexReport, save_mapping: bool, failures_path: Path
    ) -> pipeline.IndexReport:
        if save_mapping and (report.indexed or report.removed or not self.mapping_path.exists()):
            # a run that changed nothing leaves the file as it is; one that did patches it with its rows
            catalog.update_mapping(
                self.store, self.mapping_path, report.written_rows, report.deleted_ids, progress=self.progress
            )
        if report.failed:
            report.write_failures(failures_path)
            logger.warning("%d files could not be indexed: see %s", len(report.failed), failures_path)
        else:
            failures_path.unlink(missing_ok=True)
        return report

    def count(self) -> int:
        """Exact number of stored images."""
        return self.open_existing().count()

    def create_index(self, index_type: str = "HNSW", **params: int) -> dict[str, Any]:
        """Build a vector index on the existing collection; see `ImageCollection.create_index`."""
        return self.open_existing().create_index(index_type, **params)

    def search(
        self, query: search.Query | Sequence[search.Query], top_k: int = 10, search_params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Nearest stored images; see `search.search_images`."""
        return search.search_images(self.open_existing(), query, self.embedder, top_k, search_params)

    def find_duplicates(
        self,
        threshold: float | None = None,
        neighbours: int | None = None,
        verify: bool = True,
        exact_only: bool = False,
        workers: int | None = None,
    ) -> DuplicateReport:
        """Exact and edited copies among the stored images, from their stored hashes and vectors.

        No model runs: exact copies come from the content hashes, candidates from a k-NN search of
        the stored vectors, and each near candidate is checked with keypoints (OpenCV, the
        `[duplicates]` extra) unless `verify=False`. Nothing is deleted or moved.

        Args:
            threshold: Cosine a near pair must reach (default `duplicates.finder.DEFAULT_THRESHOLD`).
            neighbours: Nearest rows searched for each row (default `duplicates.finder.DEFAULT_NEIGHBOURS`).
            verify: Check near candidates with keypoints.
            exact_only: Only files with the same content.
            workers: Processes for the check (default: one a core).

        Returns:
            A `duplicates.report.DuplicateReport` (groups, pairs, keepers, removable files), also
            saved as JSON at `duplicates_path` (the web page's Duplicates view reads it).

        Raises:
            CollectionNotFoundError: The collection does not exist; index a folder first.
        """
        from utilities.duplicates import finder

        if self._store is None or self._dropped:  # open it without building the model
            self._store = ImageCollection.open(
                self.target.uri,
                self.target.token,
                self.collection_name,
                create=False,
                retry_seconds=self.retry_seconds,
            )
            self._dropped = False
        report = finder.find_duplicates(
            self._store,
            threshold=finder.DEFAULT_THRESHOLD if threshold is None else threshold,
            neighbours=neighbours or finder.DEFAULT_NEIGHBOURS,
            verify=verify,
            exact_only=exact_only,
            workers=workers,
            progress=self.progress,
        )
        report.save(self.duplicates_path)
        return report

    def mapping(self) -> pd.DataFrame:
        """The id-to-path mapping, read from the collection."""
        return catalog.mapping_from_collection(self.open_existing(), progress=self.progress)

    @property
    def mapping_path(self) -> Path:
        """Where `save_mapping` writes by default."""
        return catalog.default_mapping_path(self.target, self.collection_name)

    @property
    def duplicates_path(self) -> Path:
        """Where `find_duplicates` saves its report: beside the mapping (`<collection>.duplicates.json`)."""
        mapping = self.mapping_path
        return mapping.with_name(mapping.name.removesuffix(".mapping.csv") + ".duplicates.json")

    def save_mapping(self, path: str | os.PathLike | None = None) -> Path:
        """Rebuild the mapping from the collection and write it (CSV or Parquet).

        The file is locked from reading the collection to writing it, so concurrent
        runs (shards) cannot leave an older, shorter mapping behind.
        """
        destination = Path(path or self.mapping_path)
        with catalog.mapping_lock(destination):
            return catalog.save_mapping(self.mapping(), destination)

    def plot(
        self, query: Any, results: pd.DataFrame, outfile: str | os.PathLike | None = None, title: str | None = None
    ) -> Any:
        """Figure of the query and its results; see `plotting.plot_results`."""
        label = getattr(self.embedder, "weights_label", None)
        return plotting.plot_results(query, results, outfile=outfile, title=title or label)

    def copy_results(
        self, results: pd.DataFrame, destination: str | os.PathLike, overwrite: bool = False
    ) -> list[Path]:
        """Copy result files into a folder; see `files.copy_results`."""
        return files.copy_results(results, destination, overwrite=overwrite)
