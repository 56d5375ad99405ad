"""The search web page and its JSON API, on FastAPI, over an `ImageSearchEngine`.

Start it with `python -m utilities serve` (the `[web]` extra: FastAPI, uvicorn and
python-multipart). Routes:

- `GET /`: the page (plain HTML, CSS and JavaScript from `web/static/`, no build step, no CDN);
- `POST /api/search`: a multipart form with `file` (an image) and `k`; returns
  `{"results": [{"rank", "id", "path", "name", "distance", "thumbnail", "image"}], ...}`;
- `GET /api/search/{id}?k=10`: the neighbours of a stored row;
- `GET /api/rows/{id}/thumbnail` and `GET /api/rows/{id}/image`: a stored row's file, resized
  on the server or as it is;
- `GET /api/info`: the collection's name, row count, index, metric and model;
- `GET /api/duplicates?limit=100`: the groups of copies the last duplicate search of this database and
  collection saved (`python -m utilities duplicates`; `--exact-only` when no checked search was saved;
  never one made before the collection was dropped or indexed again: `duplicates.saved`), each file by
  row id with its thumbnail, the one to keep marked;
- `GET /openapi.json`: the API's OpenAPI description (no `/docs` page: FastAPI's loads its
  scripts from a CDN, which the page's Content-Security-Policy blocks and offline machines lack).

Ids are 64-bit integers; the JSON carries them as decimal strings, since JavaScript numbers
hold integers exactly only up to 2**53.

Security (see also `web.guards`):
- files are served only for rows of the collection, looked up by id (an integer), never from a
  path in the request, and only while the file is still what was indexed: a regular file of the
  stored size and modification time (a file replaced by a link to another, or changed, gets a
  404 until it is indexed again); thumbnails are made again when their file changes;
- uploads are limited in size (`MAX_UPLOAD_BYTES` by default; chunked ones too, as they arrive)
  and decoded in bounded memory (`images.decoding`); a non-image gets a 400 saying so; at most
  `MAX_WAITING_UPLOADS` wait for the model, and the next ones get a 503 with `Retry-After`,
  so that slow uploads never hold every worker thread;
- the `Host` header must name this machine or an allowed host; an optional access token guards
  the page and the API; every response carries security headers;
- nothing writes to the collection; the server token is never sent to the page or logged, and
  credentials in a URI are masked in every message. `serve` binds to 127.0.0.1 unless told
  otherwise, and warns when it does.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run
# time, and FastAPI's own types are imported inside `create_app` (only `serve` needs them).
import logging
import mimetypes
import os
import stat
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from utilities.engine import ImageSearchEngine
from utilities.errors import ImageLoadError, ImageSearchError, MilvusUnavailableError
from utilities.images.decoding import load_image
from utilities.images.thumbnails import ThumbnailCache
from utilities.records import ImageRecord
from utilities.web.guards import AccessToken, BodyLimit, HostAllowList, SecurityHeaders, allowed_hosts

__all__ = [
    "MAX_K",
    "MAX_UPLOAD_BYTES",
    "MAX_WAITING_UPLOADS",
    "SearchService",
    "ServerBusy",
    "create_app",
    "public_uri",
]

logger = logging.getLogger(__name__)

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MB): bigger requests get a 413, as soon as the cap is passed."""

MULTIPART_OVERHEAD = 64 * 1024
"""What a request body may hold beyond the upload itself (the multipart form's other parts)."""

MAX_K = 100
"""Most neighbours one request may ask for."""

MAX_WAITING_UPLOADS = 8
"""Uploads that may wait for the model at once; more get a 503 with `Retry-After`. Measured with
`benchmarks/web_load.py` (8 clients, 2-core machine): with 4, a client that backed off after a
503 kept losing its turn to the others (26 requests retried 198 times, the slowest waited 37 s);
8 leaves room for a few busy clients and still holds at most 9 of the server's threads."""

RETRY_AFTER_SECONDS = 2
"""What a 503 for a busy model tells the client to wait."""


class ServerBusy(Exception):
    """Too many uploads are already waiting for the model."""


STATIC = Path(__file__).with_name("static")
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

    def __init__(
        self, engine: ImageSearchEngine, path_cache: int = 20_000, max_waiting: int = MAX_WAITING_UPLOADS
    ) -> None:
        self.engine = engine
        self.store = engine.open_existing()
        self.embedder = engine.embedder
        self._model_lock = threading.Lock()
        self._model_users = threading.BoundedSemaphore(max_waiting + 1)  # the one embedding and those waiting
        self._files: OrderedDict[int, ImageRecord] = OrderedDict()
        self._files_lock = threading.Lock()
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
        query = {"id": str(record.id), "name": Path(record.path).name, "thumbnail": _row_url(record.id, "thumbnail")}
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
                "thumbnail": _row_url(int(row.id), "thumbnail"),
                "image": _row_url(int(row.id), "image"),
            }
            for row in frame.itertuples(index=False)
        ]
        return {"query": query, "k": k, "results": results, "seconds": round(time.perf_counter() - started, 4)}

    def duplicates(self, limit: int) -> dict[str, Any]:
        """The groups of copies the last `find_duplicates` saved, largest first, at most `limit`.

        The report of the last checked search of this database and collection (`engine.duplicates_path`);
        when there is none, that of the last `exact_only` run. Only a report made on this collection as it
        is (`duplicates.saved.load_report`); never one of a search without the keypoint check.

        Raises:
            FileNotFoundError: No duplicate search was saved for this collection, or it was made before
                the collection was dropped or indexed again.
        """
        from utilities.duplicates.provenance import Source
        from utilities.duplicates.saved import load_report
        from utilities.ids import path_id

        checked, exact = self.engine.duplicates_path, self.engine.duplicates_report_path(exact_only=True)
        saved = checked if checked.is_file() or not exact.is_file() else exact
        report = load_report(saved, Source.of(self.store))
        groups = []
        for group in report["groups"][:limit]:
            files = []
            for path in [group["keeper"], *group["removable"]]:
                row_id = path_id(path)
                files.append(
                    {
                        "id": str(row_id),
                        "name": Path(path).name,
                        "path": path,
                        "keep": path == group["keeper"],
                        "thumbnail": _row_url(row_id, "thumbnail"),
                        "image": _row_url(row_id, "image"),
                    }
                )
            groups.append({"exact": group["exact"], "keeper_reason": group.get("keeper_reason", ""), "files": files})
        return {
            "created": report.get("created"),
            "rows": report["rows"],
            "threshold": report["threshold"],
            "verified": report["verified"],
            "total_groups": len(report["groups"]),
            "removable": len(report["removable"]),
            "related": len(report.get("related", [])),
            "groups": groups,
        }

    def stored_file(self, row_id: int) -> tuple[str, os.stat_result]:
        """The file of row `row_id` and its `stat`, if it is still what was indexed.

        Still what was indexed: a regular file (a link is followed) of the row's stored size and
        modification time. Rows written without file facts (size 0, such as precomputed vectors)
        are served only if their path is a regular file and not a link.

        Raises:
            KeyError: No row has this id.
            FileNotFoundError: The file is gone, or is no longer what was indexed (the reason in words).
        """
        from utilities.milvus.rows import RECENT

        for attempt in range(2):  # a cached row may be older than the file: read it again once
            with self._files_lock:
                record = self._files.get(row_id) if attempt == 0 else None
            if record is None:
                found = self.store.records([row_id], consistency=RECENT)
                if not found:
                    raise KeyError(row_id)
                record = found[0]
                with self._files_lock:
                    self._files[row_id] = record
                    while len(self._files) > self._path_cache:
                        self._files.popitem(last=False)
            try:
                status = os.stat(record.path)
            except OSError:
                raise FileNotFoundError(f"the file of row {row_id} is gone from this machine") from None
            if not stat.S_ISREG(status.st_mode):
                raise FileNotFoundError(f"the file of row {row_id} is not a regular file")
            if not record.file_size and not record.mtime_ns:
                if os.path.islink(record.path):
                    raise FileNotFoundError(f"row {row_id} has no file facts to check, and its path is a link")
                return record.path, status
            if (status.st_size, status.st_mtime_ns) == (record.file_size, record.mtime_ns):
                return record.path, status
        raise FileNotFoundError(f"the file of row {row_id} changed since it was indexed: index its folder again")


def _blank(size: int) -> Any:
    import numpy as np

    return np.zeros((1, size, size, 3), dtype=np.uint8)


def _row_url(row_id: int, kind: str) -> str:
    return f"/api/rows/{row_id}/{kind}"


def create_app(
    engine: ImageSearchEngine,
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    hosts: Sequence[str] | None = None,
    token: str | None = None,
    max_waiting_uploads: int = MAX_WAITING_UPLOADS,
) -> Any:
    """The FastAPI application: the page, the JSON API and its OpenAPI description.

    Args:
        engine: The engine to search (its collection must exist; see `SearchService`).
        max_upload_bytes: Largest accepted upload.
        hosts: `Host` names to answer (default: the loopback names; see `web.guards.allowed_hosts`).
        token: Access token the page and the API require (default: none).
        max_waiting_uploads: Uploads that may wait for the model at once.

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

    service = SearchService(engine, max_waiting=max_waiting_uploads)
    app = FastAPI(
        title="Image similarity search",
        description="Search the collection by image or by a stored row. Read-only.",
        version="1",
        docs_url=None,
        redoc_url=None,
    )
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    # added innermost first: the body limit, then the token, the host check and the headers outermost
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + MULTIPART_OVERHEAD, detail=_too_large(max_upload_bytes))
    app.add_middleware(AccessToken, token=token)
    app.add_middleware(HostAllowList, hosts=hosts or allowed_hosts("127.0.0.1"))
    app.add_middleware(SecurityHeaders)

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
        except ServerBusy:
            raise HTTPException(
                status_code=503,
                detail="the server is busy with other searches by image: try again in a moment",
                headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        except ImageLoadError as error:
            raise HTTPException(
                status_code=400, detail=f"{error.path} is not an image this server can read: {error.reason}"
            ) from None

    @app.get("/api/duplicates")
    def duplicates(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The groups of copies the last duplicate search saved (read-only), each file by row id."""
        try:
            return service.duplicates(limit)
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

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
        path, status = _stored_file(row_id)
        try:
            data = service.thumbnails.get(row_id, path, stamp=(status.st_size, status.st_mtime_ns))
        except ImageLoadError as error:
            raise HTTPException(status_code=404, detail=f"row {row_id}: {error.reason}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @app.get("/api/rows/{row_id}/image", response_class=Response)
    def image(row_id: int) -> Any:
        """The stored row's file itself, if it is still the file that was indexed."""
        path, status = _stored_file(row_id)
        with open(path, "rb") as handle:
            opened = os.fstat(handle.fileno())
            if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino):  # swapped since it was checked
                raise HTTPException(status_code=404, detail=f"the file of row {row_id} changed while it was read")
            data = handle.read()
        kind = mimetypes.guess_type(path)[0] or ""
        return Response(
            data,
            media_type=kind if kind.startswith("image/") else "application/octet-stream",
            headers={"Cache-Control": "no-cache"},
        )

    def _stored_file(row_id: int) -> tuple[str, os.stat_result]:
        try:
            return service.stored_file(row_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no stored image has id {row_id}") from None
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    return app


def _too_large(limit: int) -> str:
    """The 413's message for an upload cap of `limit` bytes, in MB, KB or bytes (`_size`: never "0 MB")."""
    return f"the upload is larger than {_size(limit)}: choose a smaller image"


def _size(count: int) -> str:
    """`count` bytes in the largest unit that keeps it at 1 or more, with at most one decimal.

    Example:
        >>> [_size(n) for n in (20 * 1024 * 1024, 1536 * 1024, 256 * 1024, 1000)]
        ['20 MB', '1.5 MB', '256 KB', '1000 bytes']
    """
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"
