"""What every verb of `engine.ImageSearchEngine` stands on: its settings, its model, and its collection,
opened on first use (`opening.OpenedCollection`), created, dropped and closed.
"""

from __future__ import annotations

import os
from pathlib import Path

from utilities import catalog
from utilities.config import DEFAULT_COLLECTION, resolve_target
from utilities.duplicates import saved as saved_duplicates
from utilities.embeddings import Embedder, ResNet50Embedder
from utilities.engine_parts.opening import OpenedCollection
from utilities.errors import CollectionMismatchError
from utilities.milvus.collection import ImageCollection
from utilities.projection import ProjectedEmbedder, Projection


class ConnectedEngine:
    """The settings, the model and the collection of an engine; `engine.ImageSearchEngine` adds the verbs
    and documents the arguments."""

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
        self.decoder = decoder
        self.retry_seconds = retry_seconds
        self.collection_name = collection_name
        self.metric = metric.upper() if metric else None
        self.batch_size = batch_size
        self.progress = progress
        self._embedder = embedder
        self._weights = weights
        self._opened = OpenedCollection(self)  # the connection, the collection and its projection

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
        if self.projection is None:
            return self.model
        try:
            return ProjectedEmbedder(self.model, self.projection)
        except ValueError as error:
            raise CollectionMismatchError(f"collection {self.collection_name!r}: {error}") from error

    @property
    def projection(self) -> Projection | None:
        """The opened collection's projection (None: it stores the model's full vectors)."""
        return self._opened.projection

    def _embedder_for(self, projected: bool) -> Embedder:
        """The model, or (`projected`) what makes the collection's vectors, read from the collection."""
        if projected:
            self._opened.read_projection()
        return self.embedder if projected else self.model

    @property
    def store(self) -> ImageCollection:
        """The collection, opened on first use and created if it does not exist yet (for writing).

        Reading methods (`count`, `search`, `mapping`) do not create it; see `open_existing`.
        """
        return self._opened.get(create=True)

    def open_existing(self) -> ImageCollection:
        """The collection, which must exist already (for read-only work such as search).

        Raises:
            CollectionNotFoundError: It does not exist; index a folder first.
        """
        return self._opened.get(create=False)

    def create_collection(self, reset: bool = False) -> ImageCollection:
        """Create the collection (or check the existing one); `reset` drops it first."""
        return self._opened.open(reset=reset)

    def drop(self) -> bool:
        """Drop the collection and all its rows; returns False if it did not exist.

        What was saved from its vectors (the duplicate searches of `duplicates.saved`, the map at
        `map_path`, the audit at `audit_path`) is removed too, whether it existed or not. The connection stays
        open: indexing again creates the collection anew.
        """
        return self._opened.drop()

    def close(self) -> None:
        """Close the connection (for Milvus Lite, also release the file for other processes).

        The engine can be used again afterwards: the next call reconnects.
        """
        self._opened.close()

    @property
    def failures_path(self) -> Path:
        """Where the files that failed in the last indexing run are listed (CSV), beside the mapping."""
        return self.mapping_path.with_name(f"{self.collection_name}.failures.csv")

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
        kind = saved_duplicates.report_kind(exact_only, verify)
        return saved_duplicates.report_path(self.target, self.collection_name, kind)

    @property
    def duplicates_state_path(self) -> Path:
        """What `find_duplicates` keeps for its next run (`db/photos.<collection>.duplicates.state.npz`)."""
        return saved_duplicates.state_path(self.target, self.collection_name)

    @property
    def map_path(self) -> Path:
        """Where `map` keeps the collection's map (`db/photos.<collection>.map.npz`; see `collection_map.saved`)."""
        from utilities.collection_map.saved import map_path

        return map_path(self.target, self.collection_name)

    @property
    def audit_path(self) -> Path:
        """Where `audit` keeps its last report, the one the web page shows (`db/photos.<collection>.audit.json`;
        see `audit.saved`)."""
        from utilities.audit.saved import audit_path

        return audit_path(self.target, self.collection_name)
