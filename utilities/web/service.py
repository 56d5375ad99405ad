"""What the web routes call: searches that are safe to run concurrently, and the collection's facts.

The model is loaded once, when the service is made; model calls run one at a time (they use every
core anyway), Milvus calls run concurrently. Ids are 64-bit integers; the answers carry them as
decimal strings, since JavaScript numbers hold integers exactly only up to 2**53.
"""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from utilities.engine import ImageSearchEngine
from utilities.errors import ImageLoadError
from utilities.images.decoding import load_image
from utilities.images.thumbnails import ThumbnailCache
from utilities.web.limits import MAX_WAITING_UPLOADS
from utilities.web.stored_files import StoredFiles


class ServerBusy(Exception):
    """Too many uploads are already waiting for the model."""


def public_uri(uri: str) -> str:
    """The URI to show: a server's without any user or password in it, a Lite file's name only.

    Example:
        >>> public_uri("http://root:secret@milvus:19530")
        'http://milvus:19530'
        >>> public_uri("/data/db/milvus.db")
        'milvus.db'
    """
    if "://" not in uri:
        return Path(uri).name
    parts = urlsplit(uri)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def row_url(row_id: int, kind: str) -> str:
    """The API's address of a stored row's `thumbnail` or `image`.

    Example:
        >>> row_url(42, "thumbnail")
        '/api/rows/42/thumbnail'
    """
    return f"/api/rows/{row_id}/{kind}"


class SearchService:
    """What the routes call: searches that are safe to run concurrently, rows by id, collection facts.

    Args:
        engine: An engine whose collection exists (opened here, so a missing one fails at start).
        path_cache: Rows whose file facts `files` keeps in memory.
        max_waiting: Uploads that may wait for the model at once (`search_upload`).

    Attributes:
        files: The rows' files, checked and opened safely (`web.stored_files`).
        thumbnails: The thumbnails made so far.
    """

    def __init__(
        self, engine: ImageSearchEngine, path_cache: int = 20_000, max_waiting: int = MAX_WAITING_UPLOADS
    ) -> None:
        self.engine = engine
        self.store = engine.open_existing()
        self.embedder = engine.embedder
        self.files = StoredFiles(self.store, path_cache)
        self.thumbnails = ThumbnailCache()
        self._model_lock = threading.Lock()
        self._model_users = threading.BoundedSemaphore(max_waiting + 1)  # the one embedding and those waiting
        with self._model_lock:  # build and compile the model now, not on the first request
            self.embedder.embed_batch(_blank(self.embedder.image_size))

    def info(self) -> dict[str, Any]:
        """The collection's facts for the page and `GET /api/info` (never the token)."""
        target = self.engine.target
        return {
            "collection": self.store.name,
            "count": self.store.count(),
            "dimension": self.store.dimension,
            "metric": self.store.metric,
            "index_type": self.store.index_type,
            "model": getattr(self.embedder, "weights_label", type(self.embedder).__name__),
            "backend": "Milvus Lite" if target.is_lite else "Milvus server",
            "uri": public_uri(target.uri),
        }

    def search_upload(self, data: bytes, filename: str, k: int) -> dict[str, Any]:
        """Neighbours of an uploaded image.

        Raises:
            ImageLoadError: The bytes are not an image Pillow can decode (reason in words).
            ServerBusy: `max_waiting` uploads are already waiting for the model.
        """
        if not self._model_users.acquire(blocking=False):
            raise ServerBusy
        try:
            return self._search_upload(data, filename, k)
        finally:
            self._model_users.release()

    def _search_upload(self, data: bytes, filename: str, k: int) -> dict[str, Any]:
        suffix = "".join(c for c in Path(filename or "").suffix if c.isalnum() or c == ".")[:10]
        with tempfile.NamedTemporaryFile(suffix=suffix) as handle:  # load_image's checks need a file
            handle.write(data)
            handle.flush()
            try:
                image = load_image(handle.name, draft_size=self.embedder.image_size)
            except ImageLoadError as error:
                raise ImageLoadError(filename or "upload", error.reason) from None
        with self._model_lock:
            vector = self.engine.embed_image(image)
        return self._neighbours(vector, k, query={"name": filename or "upload"})

    def search_row(self, row_id: int, k: int) -> dict[str, Any]:
        """Neighbours of a stored row, searched with its stored vector.

        Raises:
            KeyError: No row has this id.
        """
        from utilities.milvus.rows import RECENT

        found = self.store.records([row_id], with_vectors=True, consistency=RECENT)
        if not found:
            raise KeyError(row_id)
        record = found[0]
        query = {"id": str(record.id), "name": Path(record.path).name, "thumbnail": row_url(record.id, "thumbnail")}
        return self._neighbours(record.vector, k, query=query)

    def _neighbours(self, vector: Any, k: int, query: dict[str, Any]) -> dict[str, Any]:
        from utilities.search import search_images

        started = time.perf_counter()
        frame = search_images(self.store, vector, None, top_k=k)
        results = [
            {
                "rank": int(row.rank),
                "id": str(int(row.id)),
                "path": str(row.path),
                "name": Path(str(row.path)).name,
                "distance": round(float(row.distance), 6),
                "thumbnail": row_url(int(row.id), "thumbnail"),
                "image": row_url(int(row.id), "image"),
            }
            for row in frame.itertuples(index=False)
        ]
        return {"query": query, "k": k, "results": results, "seconds": round(time.perf_counter() - started, 4)}

    def duplicates(self, limit: int) -> dict[str, Any]:
        """The groups of copies the last duplicate search saved (`web.duplicates_view.saved_groups`).

        Raises:
            FileNotFoundError: No duplicate search was saved for this collection as it is.
        """
        from utilities.web.duplicates_view import saved_groups

        return saved_groups(self.engine, self.store, limit)


def _blank(size: int) -> Any:
    import numpy as np

    return np.zeros((1, size, size, 3), dtype=np.uint8)
