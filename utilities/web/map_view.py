"""The Map view: every stored image as a dot on one canvas, coloured by class, with pan, zoom, hover and click.

`GET /api/map` serves the map that `python -m utilities map` saved for this database and collection
(`collection_map.saved`), as parallel arrays. It is never computed here: a UMAP layout of 100,000
rows takes minutes, and the server is read-only; without a saved map, or with one made before the
collection was dropped or indexed again, it answers 404 saying to run `python -m utilities map`.
Rows indexed after the map was saved are not on it until `map` runs again (which places only them).

`GET /map` is the page: plain HTML, CSS and JavaScript (`static/map.html`, `map.js`, `map.css`; no CDN,
no external script), drawn on a 2-D canvas in one pass of `fillRect` per point, the points sorted by class so that
the colour changes once a class; points outside the view are skipped. Hover finds the nearest point
through a uniform grid over the positions and shows its thumbnail (`GET /api/rows/{id}/thumbnail`);
a click lists its nearest neighbours (`GET /api/search/{id}`) and rings them on the map.

`GET /api/map/highlights` gives the row ids of the saved duplicate groups (`web.duplicates_view`) and
of each list of the saved audit (`web.audit_view`): the page offers a toggle for each, and draws the
points of those switched on larger and outlined over the rest, faded.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
import json
import threading
from typing import Any

from utilities.web import STATIC
from utilities.web.service import SearchService

_EXAMPLE = {
    "count": 3,
    "method": "umap",
    "fitted_on": 3,
    "created": "2026-12-07T22:00:00+00:00",
    "ids": ["101", "102", "103"],
    "x": [0.5, 1.25, 7.0],
    "y": [2.0, 2.5, -1.0],
    "class": [0, 0, 1],
    "classes": ["cat", "dog"],
}

_HIGHLIGHTS_EXAMPLE = {
    "lists": {"duplicates": ["101", "102"], "leaks": [], "label_errors": ["103"], "outliers": [], "quality": []},
    "missing": {},
}


def highlight_ids(service: SearchService) -> dict[str, Any]:
    """Row ids of each list the Map view can highlight, from what was saved for this collection.

    Returns:
        `{"lists": {name: [id, ...]}, "missing": {"duplicates" | "audit": why}}`: the saved duplicate
        groups' files under `duplicates`, the saved audit's lists under their names; a search or audit
        that was not saved (or was made on the collection before it was dropped or indexed again) is
        named in `missing` with what to run instead.
    """
    from utilities.web.audit_view import audit_ids
    from utilities.web.duplicates_view import duplicate_ids

    lists: dict[str, list[str]] = {}
    missing: dict[str, str] = {}
    try:
        lists["duplicates"] = duplicate_ids(service.engine, service.store)
    except FileNotFoundError as error:
        missing["duplicates"] = str(error)
    try:
        lists.update(audit_ids(service.store))
    except FileNotFoundError as error:
        missing["audit"] = str(error)
    return {"lists": lists, "missing": missing}


def saved_map(store: Any) -> bytes:
    """The saved map of `store` as compact JSON (`CollectionMap.as_dict`).

    Raises:
        FileNotFoundError: No map is saved for this collection as it is now, with what to run.
    """
    from utilities.collection_map.mapper import CollectionMap
    from utilities.collection_map.saved import load_map, map_path
    from utilities.duplicates.provenance import Source

    path = map_path(store.target, store.name)
    saved = load_map(path, Source.of(store), store, with_layout=False)
    if saved is None:
        reason = "was made on the collection before it was dropped or indexed again" if path.is_file() else "is saved"
        raise FileNotFoundError(
            f"no map of this collection {reason}: run `python -m utilities map` (with the same --uri and "
            "--collection), then reload"
        )
    return json.dumps(CollectionMap.from_saved(saved).as_dict(), separators=(",", ":")).encode()


class _Cached:
    """The last map served, kept while its file and the collection are unchanged (reading and checking it
    took 1 s at 100,000 rows)."""

    def __init__(self, service: SearchService) -> None:
        self.service = service
        self.lock = threading.Lock()
        self.key: tuple[int, int, str] | None = None
        self.body = b""

    def get(self) -> bytes:
        from utilities.collection_map.saved import map_path

        store = self.service.store
        path = map_path(store.target, store.name)
        stat = path.stat() if path.is_file() else None
        key = (stat.st_mtime_ns, stat.st_size, store.identity()) if stat else None  # a file or collection replaced
        with self.lock:
            if key is None or key != self.key:
                self.body = saved_map(store)
                self.key = key
            return self.body


def router(service: SearchService) -> Any:
    """`GET /api/map` and the page `GET /map` (with its script and style): a FastAPI `APIRouter`."""
    from fastapi import APIRouter, HTTPException
    from fastapi.responses import FileResponse, Response

    routes = APIRouter()
    cached = _Cached(service)

    @routes.get(
        "/api/map",
        response_class=Response,
        responses={
            200: {
                "description": "Parallel arrays, one entry per mapped row: `ids` (decimal strings), `x`, `y`, "
                "`class` (an index into `classes`, -1 for none); with `count`, `method` (umap or pca), "
                "`fitted_on` (rows the layout was fitted on) and `created`.",
                "content": {"application/json": {"example": _EXAMPLE}},
            },
            404: {"description": "No map is saved for this collection: run `python -m utilities map`."},
        },
    )
    def collection_map() -> Response:
        """Every stored image's 2-D position and class, as `python -m utilities map` saved them (read-only)."""
        try:
            body = cached.get()
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None
        return Response(content=body, media_type="application/json")

    @routes.get(
        "/api/map/highlights",
        responses={200: {"content": {"application/json": {"example": _HIGHLIGHTS_EXAMPLE}}}},
    )
    def highlights() -> dict[str, Any]:
        """Row ids to highlight on the map: every file of the saved duplicate groups (`duplicates`) and of
        each list of the saved audit (`leaks`, `label_errors`, `outliers`, `quality`); `missing` says, for
        a search or audit not saved for this collection as it is, what to run."""
        return highlight_ids(service)

    @routes.get("/map", include_in_schema=False)
    def page() -> Any:
        return FileResponse(STATIC / "map.html", media_type="text/html")

    return routes
