"""The collection an engine has opened: one connection, reused; the collection's projection; `dims` checked.

Opening reads the collection's projection (`milvus.projection_store`) and refuses a `dims` other than
the one the collection was made with; opening to write creates the collection, opening to read never
does. Resetting or dropping it also removes the duplicate searches saved for it (`duplicates.saved`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from utilities.config import MilvusTarget
from utilities.duplicates import saved as saved_duplicates
from utilities.embeddings import Embedder
from utilities.errors import CollectionMismatchError, CollectionNotFoundError
from utilities.milvus.collection import ImageCollection
from utilities.milvus.projection_store import load_projection
from utilities.projection import Projection

AGAIN = (
    "changing dims means indexing again: into another collection (collection_name / --collection), "
    "or with reset=True (index --reset), which deletes its rows"
)
"""What a refused `dims` tells the user to do."""


class EngineSettings(Protocol):
    """What `OpenedCollection` reads from its engine (`engine.ImageSearchEngine`) each time it opens."""

    target: MilvusTarget
    collection_name: str
    retry_seconds: float | None
    dims: int | None
    metric: str | None

    @property
    def model(self) -> Embedder: ...


class OpenedCollection:
    """The collection of one engine, opened on first use and kept, with its projection.

    Args:
        settings: The engine, read when the collection is opened (not copied).
    """

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        self.projection: Projection | None = None
        """The opened collection's projection (None: it stores the model's full vectors)."""
        self._store: ImageCollection | None = None
        self._connected: ImageCollection | None = None
        self._dropped = False

    def get(self, create: bool, check_model: bool = True) -> ImageCollection:
        """The collection as opened before, or opened now (see `open`)."""
        if self._store is None or self._dropped:
            return self.open(create=create, check_model=check_model)
        return self._store

    def stored_rows(self) -> ImageCollection:
        """The existing collection, opened without building the model (for work on the stored rows)."""
        return self.get(create=False, check_model=False)

    def open(self, create: bool = True, reset: bool = False, check_model: bool = True) -> ImageCollection:
        """Open the collection now, reusing the connection, and read its projection.

        Args:
            create: Create it if it does not exist.
            reset: Drop it first (and forget its saved duplicate searches).
            check_model: Check its dimension against the model's when neither a projection nor `dims`
                sets it; False opens it without building the model (to read stored vectors only).

        Raises:
            CollectionMismatchError: Another `dims`, dimension or metric than the collection's.
            CollectionNotFoundError: It does not exist and `create` is False.
        """
        settings = self.settings
        if self._connected is None or self._connected.closed:  # one connection, reused (a Lite file allows one process)
            target = settings.target
            self._connected = ImageCollection.connect(
                target.uri, target.token, settings.collection_name, retry_seconds=settings.retry_seconds
            )
        store = self._connected
        if reset:
            if store.exists():
                store.drop()
            self.forget_saved()
        projection = load_projection(store) if store.exists() else None
        check_dims(store, projection, settings.dims)
        model_dimension: Callable[[], int] | None = (lambda: settings.model.dimension) if check_model else None
        dimension = vector_dimension(projection, settings.dims, model_dimension)
        store.ensure(dimension=dimension, metric=settings.metric, create=create)
        self.projection = projection
        self._store, self._dropped = store, False
        return store

    def read_projection(self) -> Projection | None:
        """The collection's projection, opening the collection if it is not (never creating it)."""
        if self._store is None or self._dropped:
            try:
                self.get(create=False)
            except CollectionNotFoundError:
                self.projection = None  # nothing to project with yet
        return self.projection

    def adopt(self, projection: Projection) -> None:
        """Use a projection just fitted and stored for the collection."""
        self.projection = projection
        self.forget_saved()  # searches of vectors made otherwise (`duplicates.provenance` refuses them too)

    def drop(self) -> bool:
        """Drop the collection and forget what was saved from it (`forget_saved`); False if it did not exist."""
        try:
            store = self.get(create=False)
        except CollectionNotFoundError:
            self.forget_saved()
            return False
        store.drop()
        self.forget_saved()
        self._dropped = True
        self.projection = None  # dropped with the collection
        return True

    def forget_saved(self) -> None:
        """Remove what was saved from the collection's vectors (`remove_everything_saved`)."""
        remove_everything_saved(self.settings.target, self.settings.collection_name)

    def close(self) -> None:
        """Close the connection; the next `get` or `open` connects again."""
        for opened in (self._store, self._connected):
            if opened is not None and not opened.closed:
                opened.close()
        self._store = self._connected = None
        self._dropped = False


def vector_dimension(
    projection: Projection | None, dims: int | None, model_dimension: Callable[[], int] | None
) -> int | None:
    """The dimension the collection must have: the projection's, else `dims`, else the model's (asked
    only then); None when only stored vectors are read (no model to compare them with).

    Example:
        >>> vector_dimension(None, 256, lambda: 2048), vector_dimension(None, None, lambda: 2048)
        (256, 2048)
    """
    if projection is not None:
        return projection.dims
    if dims is not None:
        return dims
    return model_dimension() if model_dimension is not None else None


def check_dims(store: ImageCollection, projection: Projection | None, dims: int | None) -> None:
    """Refuse a `dims` other than the collection's, with what to do instead.

    Raises:
        CollectionMismatchError: The collection stores vectors of another length than `dims`.
    """
    if dims is None:
        return
    where = f"collection {store.name!r} at {store.target.shown}"
    if projection is not None and projection.dims != dims:
        raise CollectionMismatchError(
            f"{where} stores vectors projected to {projection.dims} dims, not {dims}; {AGAIN}"
        )
    if projection is None and store.exists() and store.dimension != dims:
        raise CollectionMismatchError(
            f"{where} stores full {store.dimension}-d vectors, not vectors projected to {dims} dims; {AGAIN}"
        )


def remove_everything_saved(target: MilvusTarget, collection: str) -> list[Path]:
    """Remove what was saved from the vectors of `collection` on `target`: the reports and the state of
    its duplicate searches (`duplicates.saved`), its map (`collection_map.saved`) and its audit
    (`audit.saved`). Called when it is dropped, reset or given a new projection.

    Returns:
        The files removed.
    """
    from utilities.audit.saved import audit_path
    from utilities.collection_map.saved import map_path

    removed = saved_duplicates.remove_saved(target, collection)
    for path in (map_path(target, collection), audit_path(target, collection)):
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
