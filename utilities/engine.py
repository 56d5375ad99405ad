"""`ImageSearchEngine`: the one front door the notebook and the CLI both use.

It holds a collection and an embedder (both created lazily) and offers a handful
of verbs: `index_folder`, `search`, `plot`, `copy_results`, `count`, `mapping`,
`create_index`, `insert_vectors`, `drop`, `close`. Writing creates the collection;
reading (`count`, `search`, `mapping`) never does: it says to index a folder first.
Each verb is a thin delegation to `engine_parts` and the capability's own modules; the settings, the
model and the opened collection come from `engine_parts.connected.ConnectedEngine`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from utilities import catalog, collection_map, files, plotting, search
from utilities.engine_parts import duplicate_runs, index_run
from utilities.engine_parts.connected import ConnectedEngine
from utilities.engine_parts.index_run import RayChoice
from utilities.ids import path_id, stored_path
from utilities.images.finding import find_image_files, find_images
from utilities.indexing import pipeline
from utilities.projection import as_stored

if TYPE_CHECKING:
    from utilities.audit.report import AuditReport
    from utilities.duplicates.moving import MoveResult
    from utilities.duplicates.report import DuplicateReport


class ImageSearchEngine(ConnectedEngine):
    """Index folders of images into Milvus and find similar images.

    Args:
        uri: Milvus Lite file (`db/milvus.db`, the default) or server URI (`http://localhost:19530`);
            falls back to `$MILVUS_URI`.
        token: Server token; falls back to `$MILVUS_TOKEN`.
        collection_name: Collection to use (created on first write).
        embedder: Any `Embedder`; by default a `ResNet50Embedder(weights)`.
        weights: ResNet50 weights when no embedder is given: `"imagenet"`, None (random) or a weights file.
        metric: `COSINE`, `IP` or `L2` for a new collection (None: `COSINE`); when given, an existing
            collection must use it (`CollectionMismatchError` otherwise).
        batch_size: Images per model call.
        progress: Show tqdm progress bars.
        retry_seconds: How long a call keeps retrying while a server is unreachable (default 60 s, see
            `milvus.retry.RetryPolicy`; 0 fails at once).
        decoder: How images are decoded: `"thread"`, `"process"` or `"gpu"` (nvJPEG, needs torchvision
            with CUDA); see `images.reader.iter_decoded_batches`. Default: by core count.
        dims: Store vectors projected to this many dimensions (a centred PCA, `projection.Projection`)
            instead of the model's full ones: 256 makes a 2048-d vector 1 KB instead of 8 KB. The projection
            is fitted on the first run (a sample of up to `projection.FIT_SAMPLE` images) and stored in
            Milvus with the collection; every engine that opens the collection applies it, with or without
            `dims`. A collection keeps its dims: another value is refused (`CollectionMismatchError`), and
            changing it means indexing again into a new collection.

    It is a context manager: leaving the `with` block closes the connection (and lets another process
    open a Milvus Lite file).

    Example:
        >>> with ImageSearchEngine(weights=None) as engine:  # doctest: +SKIP
        ...     print(engine.index_folder("photos"))
        ...     print(engine.search("query.jpg", top_k=5))
    """

    def __enter__(self) -> ImageSearchEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def embed_image(self, image: str | os.PathLike | Any, projected: bool = True) -> np.ndarray:
        """The vector of one image.

        Args:
            image: A path or a PIL image.
            projected: True (the default): the vector as the collection stores and searches it, projected
                when the collection has a projection (`dims`); the collection is opened to find out (never
                created). False: the model's full vector. Both are the model's vector while there is no
                projection (no `dims`, or no collection yet).

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
            projected: As in `embed_image`: the vectors as the collection stores them (the default), or the
                model's full vectors (False).
        """
        embedder = self._embedder_for(projected)
        return pipeline.embed_paths(
            find_images(folder), embedder, self.batch_size, progress=self.progress, decoder=self.decoder
        )

    def insert_vectors(self, paths: Sequence[str | os.PathLike], vectors: np.ndarray) -> int:
        """Store precomputed vectors with their paths (upsert: re-running adds nothing).

        The model's full vectors are projected when the collection has a projection (`dims`), as searches
        by vector project them (`projection.as_stored`); vectors already projected are stored as they are.
        Like an index run, the write is sealed and indexed before it returns where searches right after
        need it (`indexing.pipeline.seal_for_search`: any rows under an approximate index on a server, or
        `SEAL_AFTER_ROWS` rows or more).

        Returns:
            The number of rows written.

        Raises:
            ValueError: The vectors have neither the collection's dimension nor the model's.
        """
        stored = [stored_path(p) if not str(p).startswith(("http://", "https://")) else str(p) for p in paths]
        store = self.store
        written = store.insert(stored, as_stored(vectors, self.projection), ids=[path_id(p) for p in stored])
        pipeline.seal_for_search(store, written, self.progress)
        return written

    def index_folder(
        self, folder: str | os.PathLike, save_mapping: bool = True, prune: bool = False, ray: RayChoice = None
    ) -> pipeline.IndexReport:
        """Bring the collection up to date with the images under `folder`; see `indexing.pipeline.index_folder`.

        New and changed files are embedded, moved ones keep their vectors, unchanged ones are skipped;
        with `prune`, rows of files deleted from the folder go too. Also updates the id-to-path mapping file
        (see `mapping_path`) when `save_mapping` and the run changed the collection (or the file is
        missing): the file is patched with the rows the run wrote and deleted, and rebuilt from the
        collection only if it then disagrees with the row count (`catalog.update_mapping`).

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
            failures_path: Where to list the files that failed (default `failures_path`); give each of
                several concurrent runs its own.
            ray: Decode and embed on Ray (see `index_folder`); None or False: in this process.
        """
        store = self.store  # opened first: it reads the collection's projection, if it has one
        reading = (self.batch_size, self.progress, self.decoder)
        fitted: list[index_run.FittedRow] = []
        if self.dims is not None and self.projection is None:  # the first run fits the projection
            fitted = index_run.fit_projection(store, paths, self.model, self.dims, self._opened.adopt, *reading)
        report = index_run.index_paths(paths, store, self.embedder, ray, *reading, prune_root, self.retry_seconds)
        mapping_path = self.mapping_path if save_mapping else None
        failures = Path(failures_path or self.failures_path)
        return index_run.after_run(report, store, mapping_path, failures, fitted, self.progress)

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
        return search.search_images(store, query, self.embedder, top_k, search_params, projection=self.projection)

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

        No model runs: exact copies come from the content hashes, candidates from a k-NN search of the
        stored vectors, and each near candidate is checked with keypoints (OpenCV, the `[duplicates]`
        extra) unless `verify=False`. Nothing is deleted or moved.

        Args:
            threshold: Cosine a near pair must reach (default `duplicates.finder.DEFAULT_THRESHOLD`).
            neighbours: Nearest rows searched for each row (default `duplicates.finder.DEFAULT_NEIGHBOURS`).
            verify: Check near candidates with keypoints.
            exact_only: Only files with the same content.
            workers: Processes for the check (default: one a core).
            full: Search every row again. Otherwise, after a first run, only the rows added, changed, moved
                or removed since the last run and their neighbours are searched, and only new pairs checked
                (`duplicates.incremental`; the result is that of a full run).
            keep: Which file of a group to keep: `"original"` (default: see `duplicates.keeper`), `"largest"`
                (most bytes) or `"oldest"`.
            prefer: Folders whose files are kept first (a master library over `Downloads/`).

        Returns:
            A `duplicates.report.DuplicateReport` (groups, pairs, keepers, removable files), also saved as
            JSON with what it was made on (`duplicates_report_path`): a checked search at `duplicates_path`,
            which the web page's Duplicates view reads; an `exact_only` run and one with `verify=False` under
            names of their own, so that neither replaces it. Every run but an `exact_only` one keeps the
            state for the next run (`duplicates_state_path`).

        Raises:
            CollectionNotFoundError: The collection does not exist; index a folder first.
        """
        return duplicate_runs.find_and_save(
            self._opened.stored_rows(),  # opened without building the model
            self.duplicates_report_path(exact_only, verify),
            self.duplicates_state_path,
            threshold=threshold,
            neighbours=neighbours,
            verify=verify,
            exact_only=exact_only,
            workers=workers,
            full=full,
            keep=keep,
            prefer=prefer,
            progress=self.progress,
        )

    def move_removable(
        self,
        destination: str | os.PathLike,
        dry_run: bool = False,
        report: DuplicateReport | str | os.PathLike | None = None,
        root: str | os.PathLike | None = None,
    ) -> MoveResult:
        """Move the removable files of a duplicate report into `destination`, keeping their paths below the
        indexed folder; rows and the mapping follow. See `duplicates.moving.move_removable`.

        Args:
            destination: A folder outside the indexed one; a manifest is written there first.
            dry_run: Only plan and check: nothing is moved or written.
            report: The report to act on, or the path of a saved one (default: `duplicates_path`); a saved
                one must have been made on this collection as it is (`duplicates.saved.load_report`).
            root: The indexed folder (default: the deepest folder holding every stored file).
        """
        store = self._opened.stored_rows()
        return duplicate_runs.move_removable(
            store, destination, report, self.duplicates_path, root, dry_run, self.progress, self.mapping_path
        )

    def undo_move(self, manifest: str | os.PathLike) -> MoveResult:
        """Put back the files a `move_removable` moved (or began to move), from its manifest; rows and
        the mapping follow. See `duplicates.moving.undo_move`."""
        return duplicate_runs.undo_move(self._opened.stored_rows(), manifest, self.progress, self.mapping_path)

    def audit(self, splits: Sequence[str] | None = None, top: int | None = None, **options: Any) -> AuditReport:
        """Leaks between splits, label errors, outliers and bad images, from the stored vectors and the
        files (no model runs; nothing is moved, deleted or relabelled). See `audit.auditor.audit_collection`.

        Args:
            splits: Split folder names, the first level under the indexed folder (None: found from the folders).
            top: Items of each list the report prints; everything is computed.
            **options: `root`, `threshold`, `neighbours`, `verify`, `check_quality`, `workers`, `fit_rows`.

        Returns:
            The report, also saved whole at `audit_path` (the web page's Audit view shows it).
        """
        from utilities.audit.auditor import audit_collection
        from utilities.audit.saved import save_audit
        from utilities.duplicates.provenance import Source

        store = self._opened.stored_rows()
        report = audit_collection(store, splits, top, progress=self.progress, **options)
        save_audit(report, self.audit_path, Source.of(store))
        return report

    def map(self, method: str = "umap", sample: int | None = None, full: bool = False) -> collection_map.CollectionMap:
        """A 2-D position for every stored image, from the stored vectors (no model runs), saved at
        `map_path`; rows added later are placed by the saved layout. See `collection_map.map_collection`.

        Args:
            method: `"umap"` (PCA to 50 dims, then UMAP: the `[map]` extra; PCA alone without it) or `"pca"`.
            sample: Most rows the layout is fitted on (default `collection_map.layout.DEFAULT_SAMPLE`).
            full: Fit the layout again, even if the saved one holds.
        """
        options = {} if sample is None else {"sample": sample}
        return collection_map.map_collection(self, method, full=full, progress=self.progress, **options)

    def mapping(self) -> pd.DataFrame:
        """The id-to-path mapping, read from the collection."""
        return catalog.mapping_from_collection(self.open_existing(), progress=self.progress)

    def save_mapping(self, path: str | os.PathLike | None = None) -> Path:
        """Rebuild the mapping from the collection and write it (CSV or Parquet).

        The file is locked from reading the collection to writing it, so concurrent runs (shards) cannot
        leave an older, shorter mapping behind.
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
