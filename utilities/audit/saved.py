"""Where an audit's report is kept, for one database and one collection, so the web page can show it.

Named as the duplicate search's files are (`duplicates.saved.saved_stem`): for Milvus Lite
`db/photos.db`, collection `images`, the report is `db/photos.images.audit.json` beside the file; for a
server, `db/<host>_<port>_<collection>.audit.json` in the working directory. It holds every item of
every list (`report.AuditReport.as_dict`, never cut by `top`) and the `duplicates.provenance.Source`
it was made on: a report of another collection, or of this one before it was dropped or indexed
again, is never read. Dropping the collection removes it (`engine_parts.opening`).
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from utilities.atomic import replaced_atomically
from utilities.audit.report import AuditReport
from utilities.config import MilvusTarget
from utilities.duplicates.provenance import Source
from utilities.duplicates.saved import load_made_on, saved_stem

AUDIT_SUFFIX = ".audit.json"
AGAIN = "python -m utilities audit"
"""The command that saves an audit (named in the messages when there is none)."""


def audit_path(target: MilvusTarget, collection: str) -> Path:
    """Where the audit of `collection` on `target` is saved.

    Example:
        >>> audit_path(MilvusTarget("db/photos.db"), "images").name
        'photos.images.audit.json'
    """
    stem = saved_stem(target, collection)
    return stem.with_name(stem.name + AUDIT_SUFFIX)


def save_audit(report: AuditReport, path: Path, source: Source) -> Path:
    """Write every item of `report` at `path`, made on `source`, replacing the last one atomically."""
    data = dataclasses.replace(report, top=None).as_dict()
    data["created"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    data["source"] = source.as_dict()
    with replaced_atomically(path) as temporary:
        temporary.write_text(json.dumps(data), encoding="utf-8")
    return path


def load_audit(path: Path, source: Source) -> dict[str, Any]:
    """The audit saved at `path` (`AuditReport.as_dict` with `created`), if it was made on `source`.

    Raises:
        FileNotFoundError: There is none, or it was made on another collection, with what to run.
    """
    return load_made_on(path, source, "audit", AGAIN)
