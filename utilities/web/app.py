"""The search web page and its JSON API, on FastAPI, over an `ImageSearchEngine`.

Start it with `python -m utilities serve` (the `[web]` extra: FastAPI, uvicorn and
python-multipart). `create_app` wires the views, one module each, behind the guards. Routes:

- `GET /`: the page (plain HTML, CSS and JavaScript from `web/static/`, no build step, no CDN);
- `GET /api/info`: the collection's name, row count, index, metric and model;
- `POST /api/search`: a multipart form with `file` (an image) and `k`; returns
  `{"results": [{"rank", "id", "path", "name", "distance", "thumbnail", "image"}], ...}`;
  `GET /api/search/{id}?k=10`: the neighbours of a stored row (`web.search_view`);
- `GET /api/duplicates?limit=100`: the groups of copies the last duplicate search of this database and
  collection saved, each file by row id with its thumbnail, the one to keep marked (`web.duplicates_view`);
- `GET /api/audit?limit=100`: the lists the last audit of this database and collection saved (leaks
  between splits, label errors, outliers, bad images), each file by row id with its thumbnail
  (`web.audit_view`);
- `GET /map` and `GET /api/map`: the Map view, every row's 2-D position as `python -m utilities map`
  saved it; `GET /api/map/highlights`: the row ids of the saved duplicate groups and audit lists, which
  the Map view can highlight (`web.map_view`);
- `GET /api/rows/{id}/thumbnail` and `GET /api/rows/{id}/image`: a stored row's file, resized
  on the server or as it is, streamed (`web.files_view`);
- `GET /openapi.json`: the API's OpenAPI description (no `/docs` page: FastAPI's loads its
  scripts from a CDN, which the page's Content-Security-Policy blocks and offline machines lack).

Ids are 64-bit integers; the JSON carries them as decimal strings, since JavaScript numbers
hold integers exactly only up to 2**53.

Security (see also `web.guards`):
- files are served only for rows of the collection, looked up by id (an integer), never from a
  path in the request, and only while the file is still what was indexed: a regular file of the
  stored size and modification time, and the very file that was checked when it is opened (a file
  replaced by a link to another, or changed, gets a 404 until it is indexed again:
  `web.stored_files`); thumbnails are made again when their file changes;
- uploads are limited in size (`MAX_UPLOAD_BYTES` by default; chunked ones too, as they arrive)
  and decoded in bounded memory (`images.decoding`); a non-image gets a 400 saying so; at most
  `MAX_WAITING_UPLOADS` wait for the model, and the next ones get a 503 with `Retry-After`,
  so that slow uploads never hold every worker thread (`web.limits`);
- the `Host` header must name this machine or an allowed host; an optional access token guards
  the page and the API; every response carries security headers;
- nothing writes to the collection; the server token is never sent to the page or logged, and
  credentials in a URI are masked in every message. `serve` binds to 127.0.0.1 unless told
  otherwise, and warns when it does.
"""

# No `from __future__ import annotations` here: FastAPI reads the routes' annotations at run
# time, and FastAPI's own types are imported inside `create_app` (only `serve` needs them).
from collections.abc import Sequence
from typing import Any

from utilities.engine import ImageSearchEngine
from utilities.errors import ImageSearchError, MilvusUnavailableError
from utilities.web import STATIC
from utilities.web.guards import AccessToken, BodyLimit, HostAllowList, SecurityHeaders, allowed_hosts
from utilities.web.limits import MAX_K, MAX_UPLOAD_BYTES, MAX_WAITING_UPLOADS, MULTIPART_OVERHEAD, too_large
from utilities.web.service import SearchService, ServerBusy, public_uri

__all__ = [
    "MAX_K",
    "MAX_UPLOAD_BYTES",
    "MAX_WAITING_UPLOADS",
    "MULTIPART_OVERHEAD",
    "SearchService",
    "ServerBusy",
    "create_app",
    "public_uri",
]


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
        from fastapi import FastAPI, Request
        from fastapi.responses import FileResponse, JSONResponse
        from fastapi.staticfiles import StaticFiles
    except ImportError as error:
        raise ImageSearchError(
            f"the web page needs FastAPI ({error}): pip install 'milvus-image-similarity[web]'"
        ) from error
    from utilities.web import audit_view, duplicates_view, files_view, map_view, search_view

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
    app.add_middleware(BodyLimit, max_bytes=max_upload_bytes + MULTIPART_OVERHEAD, detail=too_large(max_upload_bytes))
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

    app.include_router(search_view.router(service, max_upload_bytes))
    app.include_router(duplicates_view.router(service))
    app.include_router(audit_view.router(service))
    app.include_router(files_view.router(service))
    app.include_router(map_view.router(service))
    return app
