"""The stored rows' files: a thumbnail made on the server, or the file itself, streamed.

Both read the file through `StoredFiles.open`: looked up by row id, checked against what was
indexed, and refused if another file took its path between the check and the open. The file
itself is streamed in `CHUNK_BYTES` pieces, so serving a large one costs no more memory than a small one.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import mimetypes
import os
from collections.abc import Iterator
from typing import Any, BinaryIO

from utilities.errors import ImageLoadError
from utilities.web.service import SearchService

CHUNK_BYTES = 256 * 1024
"""What the file route reads and sends at a time."""


def read_chunks(handle: BinaryIO, size: int, chunk: int = CHUNK_BYTES) -> Iterator[bytes]:
    """The first `size` bytes of `handle`, `chunk` bytes at a time; closes `handle` when done or dropped.

    Example:
        >>> import io
        >>> list(read_chunks(io.BytesIO(b"abcdefg"), 5, chunk=2))
        [b'ab', b'cd', b'e']
    """
    with handle:
        left = size
        while left > 0:
            data = handle.read(min(chunk, left))
            if not data:  # it shrank since it was checked
                return
            left -= len(data)
            yield data


def router(service: SearchService) -> Any:
    """`GET /api/rows/{row_id}/thumbnail` and `GET /api/rows/{row_id}/image`: an `APIRouter` for `create_app`."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import Response, StreamingResponse
    from starlette.background import BackgroundTask

    routes = APIRouter()

    def opened(row_id: int) -> tuple[BinaryIO, os.stat_result]:
        try:
            return service.files.open(row_id)
        except KeyError:
            raise HTTPException(status_code=404, detail=f"no stored image has id {row_id}") from None
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    @routes.get("/api/rows/{row_id}/thumbnail", response_class=Response)
    def thumbnail(row_id: int) -> Any:
        """A JPEG preview (longest side 192 px) of a stored row's file."""
        handle, status = opened(row_id)
        with handle:
            try:
                data = service.thumbnails.get(row_id, handle, stamp=(status.st_size, status.st_mtime_ns))
            except ImageLoadError as error:
                raise HTTPException(status_code=404, detail=f"row {row_id}: {error.reason}") from None
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-cache"})

    @routes.get("/api/rows/{row_id}/image", response_class=Response)
    def image(row_id: int) -> Any:
        """The stored row's file itself, if it is still the file that was indexed."""
        handle, status = opened(row_id)
        kind = mimetypes.guess_type(handle.name)[0] or ""
        return StreamingResponse(
            read_chunks(handle, status.st_size),
            media_type=kind if kind.startswith("image/") else "application/octet-stream",
            headers={"Cache-Control": "no-cache", "Content-Length": str(status.st_size)},
            background=BackgroundTask(handle.close),  # also when the client left before the first chunk
        )

    return routes
