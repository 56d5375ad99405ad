"""Where a duplicate search's report and state are kept, for one database and one collection.

The files are named after the database and the collection, so that two Milvus Lite files in one
folder, or two servers, never share them:

- Milvus Lite (`db/photos.db`, collection `images`): `db/photos.images.duplicates.json` beside the
  file (a collection name holds no dot, so no other file and collection make the same name);
- a server (`http://host:19530`): `db/host_19530_images.duplicates.json` in the working directory
  (the address without credentials; the collection's id is recorded inside, see `provenance.Source`).

Beside the report of a checked search (`KINDS["checked"]`, which the web page shows, and which comes
with the state for the next run, `.duplicates.state.npz`) an `--exact-only` run saves its report as
`.duplicates.exact.json` and a run without the keypoint check (`verify=False`) as
`.duplicates.unchecked.json`: neither replaces the checked search, and the web page never shows an
unchecked one (its pairs reached a cosine, and may be look-alikes).

Each report records the `provenance.Source` it was made on (`save_report`); `load_report` returns
it only while the collection is still that one. Dropping the collection (`engine.ImageSearchEngine.drop`,
`python -m utilities drop`), resetting it or fitting it a new projection removes all of them
(`remove_saved`). Files named the way earlier versions named them (`db/<collection>.duplicates.json`,
`.duplicates.state.npz`) are never read.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utilities.atomic import replaced_atomically
from utilities.config import MilvusTarget, masked_uri
from utilities.duplicates.provenance import Source

if TYPE_CHECKING:
    from utilities.duplicates.report import DuplicateReport

logger = logging.getLogger(__name__)

KINDS = {
    "checked": ".duplicates.json",
    "exact": ".duplicates.exact.json",
    "unchecked": ".duplicates.unchecked.json",
}
"""The suffix of each kind of report: a search with the keypoint check, `exact_only`, and `verify=False`."""

STATE_SUFFIX = ".duplicates.state.npz"


def saved_stem(target: MilvusTarget, collection: str) -> Path:
    """The path the files of `collection` on `target` are named from (a suffix of `KINDS` is added).

    Example:
        >>> saved_stem(MilvusTarget("db/photos.db"), "images").name
        'photos.images'
        >>> saved_stem(MilvusTarget("http://root:secret@milvus.example:19530"), "images").as_posix()
        'db/milvus_example_19530_images'
    """
    if target.is_lite:
        lite = Path(target.uri).expanduser().absolute()
        return lite.parent / f"{lite.stem}.{collection}"
    server = re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"^\w+://(\*\*\*@)?", "", masked_uri(target.uri))).strip("_")
    return Path("db") / f"{server}_{collection}"


def report_path(target: MilvusTarget, collection: str, kind: str = "checked") -> Path:
    """Where a search of `kind` (one of `KINDS`) saves its report."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind of duplicate report {kind!r}; use one of {', '.join(KINDS)}")
    stem = saved_stem(target, collection)
    return stem.with_name(stem.name + KINDS[kind])


def report_kind(exact_only: bool, verify: bool) -> str:
    """The kind of report a search with these settings makes.

    Example:
        >>> report_kind(exact_only=False, verify=False)
        'unchecked'
    """
    return "exact" if exact_only else ("checked" if verify else "unchecked")


def state_path(target: MilvusTarget, collection: str) -> Path:
    """Where a search keeps its state for the next run (`state.DuplicateState`)."""
    stem = saved_stem(target, collection)
    return stem.with_name(stem.name + STATE_SUFFIX)


def remove_saved(target: MilvusTarget, collection: str) -> list[Path]:
    """Remove every report and the state of `collection` on `target`; returns the files removed."""
    removed = []
    for path in [*(report_path(target, collection, kind) for kind in KINDS), state_path(target, collection)]:
        if path.is_file():
            path.unlink(missing_ok=True)
            removed.append(path)
    if removed:
        logger.info("removed the saved duplicate search of %s: %s", collection, ", ".join(map(str, removed)))
    return removed


def save_report(report: DuplicateReport, path: str | os.PathLike, source: Source) -> Path:
    """Write `report` as `DuplicateReport.save` does, with the `source` it was made on, atomically."""
    target = Path(path)
    with replaced_atomically(target) as temporary:
        report.save(temporary)
        data = json.loads(temporary.read_text(encoding="utf-8"))
        data["source"] = source.as_dict()
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return target


def load_report(path: str | os.PathLike, source: Source) -> dict[str, Any]:
    """The report saved at `path`, if it was made on `source` (this database, collection and incarnation).

    Raises:
        FileNotFoundError: There is none, or it was made on another collection (one dropped since, or
            indexed again with other vectors), with what to run.
    """
    return load_made_on(path, source, "duplicate search", "python -m utilities duplicates")


def load_made_on(path: str | os.PathLike, source: Source, what: str, command: str) -> dict[str, Any]:
    """The JSON saved at `path` with the `source` it was made on (a `"source"` key), if that is `source`.

    Args:
        path: The saved file.
        source: The collection now (`Source.of(store)`).
        what: What the file holds, for the messages ("duplicate search", "audit").
        command: The command that saves it again, for the messages.

    Raises:
        FileNotFoundError: There is none, or it was made on another collection (one dropped since, or
            indexed again with other vectors), with what to run.
    """
    target = Path(path)
    again = f"run `{command}` first"
    if not target.is_file():
        raise FileNotFoundError(f"no {what} is saved for this collection: {again}")
    saved_data = json.loads(target.read_text(encoding="utf-8"))
    saved = Source.from_dict(saved_data.get("source"))
    differences = ["source"] if saved is None else saved.differences(source)
    if differences:
        raise FileNotFoundError(
            f"the saved {what} {target.name} was made on another collection than this one (its "
            f"{', '.join(differences)} differ: it was dropped or indexed again since): {again}"
        )
    return saved_data
