"""The search web page and its JSON API, on FastAPI, over an `ImageSearchEngine`.

Start it with `python -m utilities serve` (the `[web]` extra: FastAPI, uvicorn and
python-multipart). Routes:

- `GET /`: the page (plain HTML, CSS and JavaScript from `web_static/`, no build step, no CDN);
- `POST /api/search`: a multipart form with `file` (an image) and `k`; returns
  `{"results": [{"rank", "id", "path", "name", "distance", "thumbnail", "image"}], ...}`;
- `GET /api/search/{id}?k=10`: the neighbours of a stored row;
- `GET /api/rows/{id}/thumbnail` and `GET /api/rows/{id}/image`: a stored row's file, resized
  on the server or as it is;
- `GET /api/info`: the collection's name, row count, index, metric and model;
- `GET /docs`: the OpenAPI documentation FastAPI generates.

Ids are 64-bit integers; the JSON carries them as decimal strings, since JavaScript numbers
hold integers exactly only up to 2**53.

Security: files are served only for rows of the collection, looked up by id (an integer), never
from a path in the request, so no traversal is possible. Uploads are limited in size
(`MAX_UPLOAD_BYTES` by default) and decoded with Pillow's decompression-bomb guard on; a
non-image gets a 400 saying so. Nothing writes to the collection. The server token is never
sent to the page or logged. `serve` binds to 127.0.0.1 unless told otherwise.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run
# time, and FastAPI's own types are imported inside `create_app` (only `serve` needs them).
import logging
import os
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from utilities.engine import ImageSearchEngine
from utilities.errors import ImageLoadError, ImageSearchError, MilvusUnavailableError
from utilities.images import load_image
from utilities.thumbnails import ThumbnailCache

__all__ = ["MAX_K", "MAX_UPLOAD_BYTES", "SearchService", "create_app", "public_uri"]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MB): bigger requests get a 413 before the body is read."""

MAX_K = 100
"""Most neighbours one request may ask for."""

STATIC = Path(__file__).with_name("web_static")
"""The page's files: `index.html`, `app.js`, `style.css`."""


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


class SearchService:
    """What the routes call: searches that are safe to run concurrently, rows by id, collection facts.

    The model is loaded once, here; model calls run one at a time (they use every core anyway),
    Milvus calls run concurrently.

    Args:
        engine: An engine whose collection exists (opened here, so a missing one fails at start).
    """

    def __init__(self, engine: ImageSearchEngine, path_cache: int = 20_000) -> None:
        self.engine = engine
        self.store = engine.open_existing()
        self.embedder = engine.embedder
        self._model_lock = threading.Lock()
        self._paths: OrderedDict[int, str] = OrderedDict()
        self._paths_lock = threading.Lock()
        self._path_cache = path_cache
        self.thumbnails = ThumbnailCache()
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
        """
        suffix = "".join(c for c in Path(filename or "").suffix if c.isalnum() or c == ".")[:10]
        with tempfile.NamedTemporaryFile(suffix=suffix) as handle:  # load_image's checks need a file
            handle.write(data)
            handle.flush()
            try:
                image = load_image(handle.name)
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
        from utilities.collection_rows import RECENT

        found = self.store.records([row_id], with_vectors=True, consistency=RECENT)
        if not found:
            raise KeyError(row_id)
        record = found[0]
        self._remember({record.id: record.path})
        query = {"id": str(record.id), "name": Path(record.path).name, "thumbnail": _row_url(record.id, "thumbnail")}
        return self._neighbours(record.vector, k, query=query)

    def _neighbours(self, vector: Any, k: int, query: dict[str, Any]) -> dict[str, Any]:
        from utilities.search import search_images

        started = time.perf_counter()
        frame = search_images(self.store, vector, None, top_k=k)
        self._remember(dict(zip(frame["id"].astype(int), frame["path"].astype(str), strict=True)))
        results = [
            {
                "rank": int(row.rank),
                "id": str(int(row.id)),
                "path": str(row.path),
                "name": Path(str(row.path)).name,
                "distance": round(float(row.distance), 6),
                "thumbnail": _row_url(int(row.id), "thumbnail"),
                "image": _row_url(int(row.id), "image"),
            }
            for row in frame.itertuples(index=False)
        ]
        return {"query": query, "k": k, "results": results, "seconds": round(time.perf_counter() - started, 4)}

    def _remember(self, paths: dict[int, str]) -> None:
        with self._paths_lock:
            for row_id, path in paths.items():
                self._paths[int(row_id)] = path
                self._paths.move_to_end(int(row_id))
            while len(self._paths) > self._path_cache:
                self._paths.popitem(last=False)

    def path_of(self, row_id: int) -> str:
        """The stored path of row `row_id` (from recent results, else read from the collection).

        Raises:
            KeyError: No row has this id.
        """
        with self._paths_lock:
            if row_id in self._paths:
                return self._paths[row_id]
        from utilities.collection_rows import RECENT

        found = self.store.records([row_id], consistency=RECENT)
        if not found:
            raise KeyError(row_id)
        self._remember({row_id: found[0].path})
        return found[0].path


def _blank(size: int) -> Any:
    import numpy as np

    return np.zeros((1, size, size, 3), dtype=np.uint8)


def _row_url(row_id: int, kind: str) -> str:
    return f"/api/rows/{row_id}/{kind}"


def create_app(engine: ImageSearchEngine, max_upload_bytes: int = MAX_UPLOAD_BYTES) -> Any:
    """The FastAPI application: the page, the JSON API and its OpenAPI docs.

    Args:
        engine: The engine to search (its collection must exist; see `SearchService`).
        max_upload_bytes: Largest accepted upload.

    Returns:
        A FastAPI app, to run with uvicorn (`python -m utilities serve` does).

    Raises:
        CollectionNotFoundError: The collection does not exist yet: index a folder first.
        ImageSearchError: The `[web]` extra is not installed.

    Example:
        >>> app = create_app(ImageSearchEngine(weights=None))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8000)  # doctest: +SKIP
    """
    try:
        from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
        from fastapi.responses import FileResponse, JSONResponse, Response
        from fastapi.staticfiles import StaticFiles
    except ImportError as error:
        raise ImageSearchError(
            f"the web page needs FastAPI ({error}): pip install 'milvus-image-similarity[web]'"
        ) from error

    service = SearchService(engine)
    app = FastAPI(
        title="Image similarity search",
        description="Search the collection by image or by a stored row. Read-only.",
        version="1",
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def limits_and_headers(request: Request, call_next: Any) -> Any:
        declared = request.headers.get("content-length")
        if request.method == "POST" and declared and declared.isdigit() and int(declared) > max_upload_bytes + 65536:
            return JSONResponse(status_code=413, content={"detail": _too_large(max_upload_bytes)})
        response = await call_next(request)
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' blob: data:"
        return response

    @app.exception_handler(MilvusUnavailableError)
    async def milvus_down(_: Request, error: MilvusUnavailableError) -> Any:
        return JSONResponse(status_code=503, content={"detail": f"Milvus is unreachable: {error}"})

    @app.get("/", include_in_schema=False)
    def page() -> Any:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        """The collection's name, row count, dimension, metric, index type and model."""
        return service.info()

    @app.post("/api/search")
    def search_by_upload(
        file: UploadFile = File(..., description="the query image"),  # noqa: B008 - FastAPI's idiom
        k: int = Form(10, ge=1, le=MAX_K, description="neighbours to return"),
    ) -> dict[str, Any]:
        """The `k` stored images nearest to an uploaded one."""
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(status_code=413, detail=_too_large(max_upload_bytes))
        if not data:
            raise HTTPException(status_code=400, detail=f"{file.filename or 'the upload'} is empty: choose an image")
        try:
            return service.search_upload(data, file.filename or "", k)
        except ImageLoadError as error:
            raise HTTPException(
                status_code=400, detail=f"{error.path} is not an image this server can read: {error.reason}"
            ) from None

    @app.get("/api/search/{row_id}")
    def search_by_row(row_id: int, k: int = Query(10, ge=1, le=MAX_K)) -> dict[str, Any]:
        """The `k` stored images nearest to the stored row `row_id`."""
        try:
            return service.search_row(row_id, k)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no stored image has id {row_id}") from None

    @app.get("/api/rows/{row_id}/thumbnail", response_class=Response)
    def thumbnail(row_id: int) -> Any:
        """A JPEG preview (longest side 192 px) of a stored row's file."""
        path = _stored_file(row_id)
        try:
            data = service.thumbnails.get(row_id, path)
        except ImageLoadError as error:
            raise HTTPException(status_code=404, detail=f"row {row_id}: {error.reason}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/rows/{row_id}/image", response_class=Response)
    def image(row_id: int) -> Any:
        """The stored row's file itself."""
        return FileResponse(_stored_file(row_id), headers={"Cache-Control": "max-age=3600"})

    def _stored_file(row_id: int) -> str:
        try:
            path = service.path_of(row_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no stored image has id {row_id}") from None
        if not os.path.isfile(path):
            raise HTTPException(status_code=404, detail=f"the file of row {row_id} is gone from this machine")
        return path

    return app


def _too_large(limit: int) -> str:
    return f"the upload is larger than {limit / 1024 / 1024:.0f} MB: choose a smaller image"
