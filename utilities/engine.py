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
from utilities.errors import CollectionMismatchError, CollectionNotFoundError
from utilities.ids import path_id, stored_path
from utilities.images.finding import find_image_files, find_images
from utilities.indexing import pipeline
from utilities.milvus.collection import ImageCollection
from utilities.milvus.projection_store import load_projection, save_projection
from utilities.projection import FEW_FOR_A_FIT, FIT_SAMPLE, ProjectedEmbedder, Projection, as_stored

if TYPE_CHECKING:
    from utilities.duplicates.moving import MoveResult
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
        dims: Store vectors projected to this many dimensions (a centred PCA, `projection.Projection`)
            instead of the model's full ones: 256 makes a 2048-d vector 1 KB instead of 8 KB. The
            projection is fitted on the first run (a sample of up to `projection.FIT_SAMPLE` images)
            and stored in Milvus with the collection; every engine that opens the collection applies
            it, with or without `dims`. A collection keeps its dims: another value is refused
            (`CollectionMismatchError`), and changing it means indexing again into a new collection.

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
        dims: int | None = None,
    ) -> None:
        if dims is not None and dims < 1:
            raise ValueError(f"dims must be a positive number of dimensions (e.g. 256), got {dims}")
        self.target = resolve_target(uri, token)
        self.dims = dims
        self._projection: Projection | None = None
        self.decoder = decoder
        self.retry_seconds = retry_seconds
        self.collection_name = collection_name
        self.metric = metric.upper() if metric else None
        self.batch_size = batch_size
        self.progress = progress
        self._embedder = embedder
        self._weights = weights
        self._store: ImageCollection | None = None
        self._connected: ImageCollection | None = None
        self._dropped = False

    @property
    def model(self) -> Embedder:
        """The model (ResNet50 built on first use unless an embedder was passed): full vectors."""
        if self._embedder is None:
            self._embedder = ResNet50Embedder(weights=self._weights, batch_size=self.batch_size)
        return self._embedder

    @property
    def embedder(self) -> Embedder:
        """What makes the stored and the query vectors: the model, or the model and the collection's
        projection (`projection.ProjectedEmbedder`) once an opened collection has one.

        It follows what this engine has opened so far; `embed_image` and `embed_folder` open the
        collection first, and say which vectors they return.

        Raises:
            CollectionMismatchError: The collection's projection was fitted on another model's vectors.
        """
        if self._projection is None:
            return self.model
        try:
            return ProjectedEmbedder(self.model, self._projection)
        except ValueError as error:
            raise CollectionMismatchError(f"collection {self.collection_name!r}: {error}") from error

    @property
    def projection(self) -> Projection | None:
        """The opened collection's projection (None: it stores the model's full vectors)."""
        return self._projection

    @property
    def store(self) -> ImageCollection:
        """The collection, opened on first use and created if it does not exist yet (for writing).

        Reading methods (`count`, `search`, `mapping`) do not create it; see `open_existing`.
        """
        if self._store is None or self._dropped:
            self._store = self._open(create=True)
            self._dropped = False
        return self._store

    def _open(self, create: bool = True, reset: bool = False, check_model: bool = True) -> ImageCollection:
        # one connection per engine, reused (a Lite file allows one process)
        if self._connected is None or self._connected.closed:
            self._connected = ImageCollection.connect(
                self.target.uri, self.target.token, self.collection_name, retry_seconds=self.retry_seconds
            )
        store = self._connected
        if reset:
            if store.exists():
                store.drop()
            self._forget_duplicates()
        projection = load_projection(store) if store.exists() else None
        self._check_dims(store, projection)
        if projection is not None or self.dims is not None or check_model:
            dimension = projection.dims if projection else (self.dims or self.model.dimension)
        else:
            dimension = None  # reading stored vectors only: no model to compare them with
        store.ensure(dimension=dimension, metric=self.metric, create=create)
        self._projection = projection
        return store

    def _check_dims(self, store: ImageCollection, projection: Projection | None) -> None:
        """Refuse a `dims` other than the collection's, with what to do instead."""
        if self.dims is None:
            return
        again = (
            "changing dims means indexing again: into another collection (collection_name / --collection), "
            "or with reset=True (index --reset), which deletes its rows"
        )
        if projection is not None and projection.dims != self.dims:
            raise CollectionMismatchError(
                f"collection {self.collection_name!r} at {self.target.shown} stores vectors projected to "
                f"{projection.dims} dims, not {self.dims}; {again}"
            )
        if projection is None and store.exists() and store.dimension != self.dims:
            raise CollectionMismatchError(
                f"collection {self.collection_name!r} at {self.target.shown} stores full {store.dimension}-d "
                f"vectors, not vectors projected to {self.dims} dims; {again}"
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

        The duplicate searches saved for it (`duplicates_path` and the others of
        `duplicates.saved`) are removed too, whether it existed or not. The connection stays
        open: indexing again creates the collection anew.
        """
        try:
            store = self.open_existing()
        except CollectionNotFoundError:
            self._forget_duplicates()
            return False
        store.drop()
        self._forget_duplicates()
        self._dropped = True
        self._projection = None  # dropped with the collection
        return True

    def _forget_duplicates(self) -> None:
        """Remove the reports and the state of the duplicate searches of this collection (`duplicates.saved`)."""
        from utilities.duplicates.saved import remove_saved

        remove_saved(self.target, self.collection_name)

    def close(self) -> None:
        """Close the connection (for Milvus Lite, also release the file for other processes).

        The engine can be used again afterwards: the next call reconnects.
        """
        for opened in (self._store, self._connected):
            if opened is not None and not opened.closed:
                opened.close()
        self._store = self._connected = None
        self._dropped = False

    def __enter__(self) -> ImageSearchEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def embed_image(self, image: str | os.PathLike | Any, projected: bool = True) -> np.ndarray:
        """The vector of one image.

        Args:
            image: A path or a PIL image.
            projected: True (the default): the vector as the collection stores and searches it,
                projected when the collection has a projection (`dims`); the collection is opened
                to find out (never created). False: the model's full vector. Both are the model's
                vector while there is no projection (no `dims`, or no collection yet).

        Returns:
            A float32 vector, shape `(dimension,)`.

        Raises:
            CollectionMismatchError: The collection's projection was fitted on another model's vectors.
        """
        return search.query_vectors([image], self._embedder_for(projected))[1][0]

    def embed_folder(self, folder: str | os.PathLike, projected: bool = True) -> pipeline.EmbeddedImages:
        """Embed every image under a folder into memory (nothing is stored).

        Args:
            folder: Searched recursively for images.
            projected: As in `embed_image`: the vectors as the collection stores them (the default),
                or the model's full vectors (False).
        """
        embedder = self._embedder_for(projected)
        return pipeline.embed_paths(
            find_images(folder), embedder, self.batch_size, progress=self.progress, decoder=self.decoder
        )

    def _embedder_for(self, projected: bool) -> Embedder:
        """The model, or (`projected`) what makes the collection's vectors, read from the collection."""
        if not projected:
            return self.model
        if self._store is None or self._dropped:
            try:
                self.open_existing()  # reads its projection
            except CollectionNotFoundError:
                self._projection = None  # nothing to project with yet
        return self.embedder

    def insert_vectors(self, paths: Sequence[str | os.PathLike], vectors: np.ndarray) -> int:
        """Store precomputed vectors with their paths (upsert: re-running adds nothing).

        The model's full vectors are projected when the collection has a projection (`dims`), as
        searches by vector project them (`projection.as_stored`); vectors already projected are
        stored as they are. Like an index run, the write is sealed and indexed before it returns
        where searches right after need it (`indexing.pipeline.seal_for_search`: any rows under an
        approximate index on a server, or `SEAL_AFTER_ROWS` rows or more).

        Returns:
            The number of rows written.

        Raises:
            ValueError: The vectors have neither the collection's dimension nor the model's.
        """
        stored = [stored_path(p) if not str(p).startswith(("http://", "https://")) else str(p) for p in paths]
        store = self.store
        written = store.insert(stored, as_stored(vectors, self._projection), ids=[path_id(p) for p in stored])
        pipeline.seal_for_search(store, written, self.progress)
        return written

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
        store = self.store  # opened first: it reads the collection's projection, if it has one
        fitted = self._fit_projection(paths) if self.dims is not None and self._projection is None else []
        if ray is not None and ray is not False:
            from utilities.indexing import on_ray

            report = on_ray.index_paths_on_ray(
                paths,
                store,
                self.embedder,
                on_ray.ray_options(ray),
                self.batch_size,
                progress=self.progress,
                prune_root=prune_root,
                retry_seconds=self.retry_seconds,
            )
            return self._after_indexing(report, save_mapping, Path(failures_path or self.failures_path), fitted)
        report = pipeline.index_paths(
            paths,
            store,
            self.embedder,
            self.batch_size,
            progress=self.progress,
            prune_root=prune_root,
            decoder=self.decoder,
        )
        return self._after_indexing(report, save_mapping, Path(failures_path or self.failures_path), fitted)

    def _fit_projection(self, paths: Sequence[str | os.PathLike]) -> list[tuple[int, str, int, int]]:
        """Fit the collection's projection on a sample of `paths`, store it, and write the sample's rows.

        Returns:
            `(id, path, size, mtime_ns)` of the rows written (the run finds them unchanged).
        """
        import random

        from utilities.indexing.planning import Plan, file_stats

        files = [str(path) for path in paths]
        sample = sorted(random.Random(0).sample(files, min(len(files), FIT_SAMPLE)))
        logger.info("fitting the projection to %d dims on %d images", self.dims, len(sample))
        stats = {stored_path(path): file_stats(path) for path in sample}  # before reading: a change shows later
        embedded = pipeline.embed_paths(
            sample, self.model, self.batch_size, progress=self.progress, decoder=self.decoder
        )
        if len(embedded.paths) < FEW_FOR_A_FIT:
            logger.warning(
                "the projection to %d dims is fitted on only %d images; a first run of thousands fits a better one",
                self.dims,
                len(embedded.paths),
            )
        try:
            projection = Projection.fit(embedded.vectors, int(self.dims))
        except ValueError as error:
            raise ValueError(f"collection {self.collection_name!r}: {error}") from error
        save_projection(self.store, projection)
        self._projection = projection
        self._forget_duplicates()  # searches of vectors made otherwise (`duplicates.provenance` refuses them too)
        plan = Plan(stats=stats)
        records = [
            plan.record(path, vector)
            for path, vector in zip(embedded.paths, projection.apply(embedded.vectors), strict=True)
        ]
        self.store.write(records)
        return [(record.id, record.path, record.file_size, record.mtime_ns) for record in records]

    @property
    def failures_path(self) -> Path:
        """Where the files that failed in the last indexing run are listed (CSV), beside the mapping."""
        return self.mapping_path.with_name(f"{self.collection_name}.failures.csv")

    def _after_indexing(
        self,
        report: pipeline.IndexReport,
        save_mapping: bool,
        failures_path: Path,
        fitted: Sequence[tuple[int, str, int, int]] = (),
    ) -> pipeline.IndexReport:
        if fitted:  # the rows written while fitting the projection were found unchanged by the run
            report.added += len(fitted)
            report.unchanged -= len(fitted)
            report.written_rows = [*fitted, *report.written_rows]
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

    def create_index(self, index_type: str = "AUTO", **params: int) -> dict[str, Any]:
        """Build a vector index on the existing collection; see `ImageCollection.create_index`.

        `AUTO` (the default) chooses by backend, row count and dimension (`milvus.vector_index.recommended_index`).
        """
        return self.open_existing().create_index(index_type, **params)

    def search(
        self, query: search.Query | Sequence[search.Query], top_k: int = 10, search_params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Nearest stored images; see `search.search_images`.

        Query vectors may be the model's full vectors or the collection's: on a collection with a
        projection (`dims`) full ones are projected, as `insert_vectors` projects them.
        """
        store = self.open_existing()  # first: it reads the collection's projection
        return search.search_images(store, query, self.embedder, top_k, search_params, projection=self._projection)

    def find_duplicates(
        self,
        threshold: float | None = None,
        neighbours: int | None = None,
        verify: bool = True,
        exact_only: bool = False,
        workers: int | None = None,
        full: bool = False,
        keep: str = "original",
        prefer: Sequence[str | os.PathLike] = (),
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
            full: Search every row again. Otherwise, after a first run, only the rows added, changed,
                moved or removed since the last run and their neighbours are searched, and only new
                pairs checked (`duplicates.incremental`; the result is that of a full run).
            keep: Which file of a group to keep: `"original"` (default: see `duplicates.keeper`),
                `"largest"` (most bytes) or `"oldest"`.
            prefer: Folders whose files are kept first (a master library over `Downloads/`).

        Returns:
            A `duplicates.report.DuplicateReport` (groups, pairs, keepers, removable files), also
            saved as JSON with what it was made on (`duplicates_report_path`): a checked search at
            `duplicates_path`, which the web page's Duplicates view reads; an `exact_only` run and
            one with `verify=False` under names of their own, so that neither replaces it. Every run
            but an `exact_only` one keeps the state for the next run (`duplicates_state_path`).

        Raises:
            CollectionNotFoundError: The collection does not exist; index a folder first.
        """
        from utilities.duplicates import finder
        from utilities.duplicates.provenance import Source
        from utilities.duplicates.saved import save_report

        self._stored_rows()  # open it without building the model
        report = finder.find_duplicates(
            self._store,
            threshold=finder.DEFAULT_THRESHOLD if threshold is None else threshold,
            neighbours=neighbours or finder.DEFAULT_NEIGHBOURS,
            verify=verify,
            exact_only=exact_only,
            workers=workers,
            progress=self.progress,
            state_path=self.duplicates_state_path,
            full=full,
            keep=keep,
            prefer=prefer,
        )
        save_report(report, self.duplicates_report_path(exact_only, verify), Source.of(self._store))
        return report

    def move_removable(
        self,
        destination: str | os.PathLike,
        dry_run: bool = False,
        report: DuplicateReport | str | os.PathLike | None = None,
        root: str | os.PathLike | None = None,
    ) -> MoveResult:
        """Move the removable files of a duplicate report into `destination`, keeping their paths below
        the indexed folder; rows and the mapping follow. See `duplicates.moving.move_removable`.

        Args:
            destination: A folder outside the indexed one; a manifest is written there first.
            dry_run: Only plan and check: nothing is moved or written.
            report: The report to act on, or the path of a saved one (default: `duplicates_path`); a saved
                one must have been made on this collection as it is (`duplicates.saved.load_report`).
            root: The indexed folder (default: the deepest folder holding every stored file).
        """
        from utilities.duplicates import moving
        from utilities.duplicates.provenance import Source
        from utilities.duplicates.saved import load_report

        store = self._stored_rows()
        if report is None or isinstance(report, (str, os.PathLike)):
            report = load_report(report or self.duplicates_path, Source.of(store))
        return moving.move_removable(store, report, destination, root, dry_run, self.progress, self.mapping_path)

    def undo_move(self, manifest: str | os.PathLike) -> MoveResult:
        """Put back the files a `move_removable` moved (or began to move), from its manifest; rows and
        the mapping follow. See `duplicates.moving.undo_move`."""
        from utilities.duplicates import moving

        return moving.undo_move(self._stored_rows(), manifest, self.progress, self.mapping_path)

    def _stored_rows(self) -> ImageCollection:
        """The existing collection, opened without building the model (for work on the stored rows)."""
        if self._store is None or self._dropped:
            self._store = self._open(create=False, check_model=False)
            self._dropped = False
        return self._store

    def mapping(self) -> pd.DataFrame:
        """The id-to-path mapping, read from the collection."""
        return catalog.mapping_from_collection(self.open_existing(), progress=self.progress)

    @property
    def mapping_path(self) -> Path:
        """Where `save_mapping` writes by default."""
        return catalog.default_mapping_path(self.target, self.collection_name)

    @property
    def duplicates_path(self) -> Path:
        """Where `find_duplicates` saves the report of a checked search, the one the web page shows: named
        after the database and the collection (`db/photos.db`: `db/photos.<collection>.duplicates.json`;
        a server: `db/<host>_<port>_<collection>.duplicates.json`; see `duplicates.saved`)."""
        return self.duplicates_report_path()

    def duplicates_report_path(self, exact_only: bool = False, verify: bool = True) -> Path:
        """Where `find_duplicates` with these settings saves its report: `duplicates_path` for a checked
        search, `...duplicates.exact.json` for `exact_only`, `...duplicates.unchecked.json` without the check."""
        from utilities.duplicates.saved import report_kind, report_path

        return report_path(self.target, self.collection_name, report_kind(exact_only, verify))

    @property
    def duplicates_state_path(self) -> Path:
        """What `find_duplicates` keeps for its next run (`db/photos.<collection>.duplicates.state.npz`)."""
        from utilities.duplicates.saved import state_path

        return state_path(self.target, self.collection_name)

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
