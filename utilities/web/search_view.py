"""The search view's routes: the neighbours of an uploaded image, or of a stored row."""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time, and
# FastAPI itself is imported inside `router` (only `serve` needs it).
from typing import Any

from utilities.errors import ImageLoadError
from utilities.web.limits import MAX_K, RETRY_AFTER_SECONDS, too_large
from utilities.web.service import SearchService, ServerBusy


def router(service: SearchService, max_upload_bytes: int) -> Any:
    """`POST /api/search` (a multipart form: `file`, `k`) and `GET /api/search/{row_id}?k=10`.

    Args:
        service: What the routes call.
        max_upload_bytes: Largest accepted upload (larger ones get a 413 naming the cap).

    Returns:
        A FastAPI `APIRouter` for `create_app` to include.
    """
    from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile

    routes = APIRouter()

    @routes.post("/api/search")
    def search_by_upload(
        file: UploadFile = File(..., description="the query image"),  # noqa: B008 - FastAPI's idiom
        k: int = Form(10, ge=1, le=MAX_K, description="neighbours to return"),
    ) -> dict[str, Any]:
        """The `k` stored images nearest to an uploaded one."""
        data = file.file.read(max_upload_bytes + 1)
        if len(data) > max_upload_bytes:
            raise HTTPException(status_code=413, detail=too_large(max_upload_bytes))
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

    @routes.get("/api/search/{row_id}")
    def search_by_row(row_id: int, k: int = Query(10, ge=1, le=MAX_K)) -> dict[str, Any]:
        """The `k` stored images nearest to the stored row `row_id`."""
        try:
            return service.search_row(row_id, k)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no stored image has id {row_id}") from None

    return routes
