"""The Audit view: the lists the last audit saved (leaks, label errors, outliers, bad images), each file by
row id with its thumbnail.

Read-only: it shows what `python -m utilities audit` (or `engine.audit`) saved for this database and
collection (`audit.saved`), never an audit made before the collection was dropped or indexed again. It
is never computed here: the pixel checks read every file. Nothing is moved, deleted or relabelled.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations at run time.
from pathlib import Path
from typing import Any

from utilities.web.service import SearchService, row_url

LIST_FILES = {"leaks": ("a", "b"), "label_errors": ("path",), "outliers": ("path",), "quality": ("path",)}
"""Each list of the audit and the fields of its items that name a file."""


def saved_audit(store: Any) -> dict[str, Any]:
    """The whole audit saved for `store` (`audit.report.AuditReport.as_dict`, with `created`).

    Raises:
        FileNotFoundError: No audit is saved for this collection as it is now, with what to run.
    """
    from utilities.audit.saved import audit_path, load_audit
    from utilities.duplicates.provenance import Source

    return load_audit(audit_path(store.target, store.name), Source.of(store))


def audit_files(store: Any, limit: int) -> dict[str, Any]:
    """The saved audit's lists, at most `limit` items each, every file named also by row id and thumbnail.

    Args:
        store: The open collection (`ImageCollection`) the audit must have been made on.
        limit: Most items of each list to return (`counts` gives each list's length).

    Raises:
        FileNotFoundError: No audit is saved for this collection as it is now, with what to run.
    """
    report = saved_audit(store)
    lists = {name: [_with_files(item, fields) for item in report[name][:limit]] for name, fields in LIST_FILES.items()}
    facts = ("counts", "cuts", "rows", "root", "splits", "classes", "notes", "created")
    return {**lists, **{key: report.get(key) for key in facts}, "unreadable": len(report.get("unreadable", {}))}


def audit_ids(store: Any) -> dict[str, list[str]]:
    """Row ids (decimal strings) of every file in each list of the saved audit, for the Map view's highlights.

    Raises:
        FileNotFoundError: No audit is saved for this collection as it is now.
    """
    from utilities.ids import path_id

    report = saved_audit(store)
    return {
        name: list(dict.fromkeys(str(path_id(item[key])) for item in report[name] for key in fields))
        for name, fields in LIST_FILES.items()
    }


def _with_files(item: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    """`item` with a `files` list: for each field naming a file, its row id, name and addresses."""
    from utilities.ids import path_id

    files = []
    for key in fields:
        row_id = path_id(item[key])
        files.append(
            {
                "id": str(row_id),
                "name": Path(item[key]).name,
                "path": item[key],
                "thumbnail": row_url(row_id, "thumbnail"),
                "image": row_url(row_id, "image"),
            }
        )
    return {**item, "files": files}


def router(service: SearchService) -> Any:
    """`GET /api/audit?limit=100`: a FastAPI `APIRouter` for `create_app` to include."""
    from fastapi import APIRouter, HTTPException, Query

    routes = APIRouter()

    @routes.get("/api/audit")
    def audit(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        """The lists the last audit saved (read-only): `leaks`, `label_errors`, `outliers`, `quality`, each
        item with `files` (row id, name, path, thumbnail and image addresses); `counts` gives each list's
        full length, `cuts` the threshold each was cut at, `created` when the audit ran."""
        try:
            return audit_files(service.store, limit)
        except FileNotFoundError as error:
            raise HTTPException(status_code=404, detail=str(error)) from None

    return routes
