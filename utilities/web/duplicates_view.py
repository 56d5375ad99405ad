"""The duplicates view: the groups of copies the last duplicate search saved, each file by row id.

Read-only: it shows what `python -m utilities duplicates` saved for this database and collection
(`--exact-only`'s report when no checked search was saved), never a search made before the
collection was dropped or indexed again (`duplicates.saved`), and never one without the keypoint check.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from pathlib import Path
from typing import Any

from utilities.engine import ImageSearchEngine
from utilities.web.service import SearchService, row_url


def saved_groups(engine: ImageSearchEngine, store: Any, limit: int) -> dict[str, Any]:
    """The groups of copies the last `find_duplicates` saved, largest first, at most `limit`.

    The report of the last checked search of this database and collection (`engine.duplicates_path`);
    when there is none, that of the last `exact_only` run. Only a report made on this collection as it
    is (`duplicates.saved.load_report`); never one of a search without the keypoint check.

    Args:
        engine: The engine the server searches (it knows where its reports are saved).
        store: Its open collection (`ImageCollection`), which a report must have been made on.
        limit: Most groups to return.

    Raises:
        FileNotFoundError: No duplicate search was saved for this collection, or it was made before
            the collection was dropped or indexed again.
    """
    report = _saved_report(engine, store)
    groups = [_group(group) for group in report["groups"][:limit]]
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


def duplicate_ids(engine: ImageSearchEngine, store: Any) -> list[str]:
    """Row ids (decimal strings) of every file in the saved groups of copies, kept ones included, for the
    Map view's highlights.

    Raises:
        FileNotFoundError: No duplicate search was saved for this collection as it is now.
    """
    from utilities.ids import path_id

    groups = _saved_report(engine, store)["groups"]
    return [str(path_id(path)) for group in groups for path in [group["keeper"], *group["removable"]]]


def _saved_report(engine: ImageSearchEngine, store: Any) -> dict[str, Any]:
    """The checked search's saved report, or the `exact_only` one when no checked search was saved."""
    from utilities.duplicates.provenance import Source
    from utilities.duplicates.saved import load_report

    checked, exact = engine.duplicates_path, engine.duplicates_report_path(exact_only=True)
    saved = checked if checked.is_file() or not exact.is_file() else exact
    return load_report(saved, Source.of(store))


def _group(group: dict[str, Any]) -> dict[str, Any]:
    from utilities.ids import path_id

    files = []
    for path in [group["keeper"], *group["removable"]]:
        row_id = path_id(path)
        files.append(
            {
                "id": str(row_id),
                "name": Path(path).name,
                "path": path,
                "keep": path == group["keeper"],
                "thumbnail": row_url(row_id, "thumbnail"),
                "image": row_url(row_id, "image"),
            }
        )
    return {"exact": group["exact"], "keeper_reason": group.get("keeper_reason", ""), "files": files}


def router(service: SearchService) -> Any:
    """`GET /api/duplicates?limit=100`: a FastAPI `APIRouter` for `create_app` to include."""
    from fastapi import APIRouter, HTTPException, Query

    routes = APIRouter()

    @routes.get("/api/duplicates")
    def duplicates(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The groups of copies the last duplicate search saved (read-only), each file by row id."""
        try:
            return saved_groups(service.engine, service.store, limit)
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    return routes
