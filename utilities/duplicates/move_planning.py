"""Planning a move of a duplicate report's removable files: where each goes, and whether it may.

`plan_moves` reads the report's removable files (`groups[*].removable`, with each group's keeper),
finds the indexed root (the deepest folder holding every stored file, or the one given), maps each
file to `DIR/<its path below the root>` (outside the root: `DIR/_outside_root/<its whole path>`)
and leaves out, with the reason, each file that must stay: not stored any more, changed since it
was indexed or since the search, a symbolic link, its keeper gone or changed, its destination
taken. `check_file` is the check made again just before a file moves, content hash included.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import posixpath
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, Union

from utilities.hashing import file_hash
from utilities.ids import path_id, stored_path
from utilities.milvus.collection import ImageCollection
from utilities.records import ImageRecord

if TYPE_CHECKING:
    from utilities.duplicates.report import DuplicateReport

OUTSIDE_ROOT = "_outside_root"
"""Where, under DIR, files outside the root go (with their whole path)."""

Report = Union["DuplicateReport", Mapping[str, Any], str, os.PathLike]  # noqa: UP007 - a runtime alias
"""A report to act on: a `DuplicateReport`, a saved one as read from its JSON, or that file's path."""

REPORT_TIME_SLACK_NS = 2 * 10**9
"""A saved report's time is kept to the second: a file counts as modified after it beyond this."""


@dataclass(frozen=True)
class PlannedMove:
    """One file to move, with what its stored row says it holds.

    Attributes:
        source: Its path (as stored).
        destination: Where it goes (as it will be stored).
        keeper: The file of its group that stays.
        file_size: Size in bytes, from its row.
        mtime_ns: Modification time, from its row.
        content_hash: Content hash, from its row.
    """

    source: str
    destination: str
    keeper: str
    file_size: int
    mtime_ns: int
    content_hash: str


def plan_moves(
    store: ImageCollection,
    report: Report,
    folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
) -> tuple[list[PlannedMove], dict[str, str]]:
    """Where each removable file of the report goes, after the checks that need no reading of files.

    Returns:
        `(planned, skipped)`: the moves, and the files left out with the reason.

    Raises:
        See `moving.move_removable`.
    """
    removable, made_ns = removable_files(report)
    folder = Path(folder).expanduser().absolute()
    inside_folder = stored_path(folder) + "/"
    root = stored_path(root) if root is not None else common_root(store, exclude=inside_folder)
    _refuse_inside(folder, root)
    ids = {path_id(path) for pair in removable for path in pair if path}
    rows = {record.id: record for record in store.records(sorted(ids))}
    planned: list[PlannedMove] = []
    skipped: dict[str, str] = {}
    taken: set[str] = set()
    for source, keeper in removable:
        target = stored_path(destination_of(source, root, folder))
        if source.startswith(inside_folder):
            reason: str | None = f"already in {folder}"
        elif target in taken:
            reason = f"another file goes to {target} (paths outside {root} that differ only in '..')"
        elif os.path.lexists(target):
            reason = f"{target} exists already: not overwritten"
        else:
            reason = _unmovable(source, keeper, rows, made_ns)
        if reason:
            skipped[source] = reason
            continue
        taken.add(target)
        row = rows[path_id(source)]
        planned.append(PlannedMove(source, target, keeper, row.file_size, row.mtime_ns, row.content_hash))
    return planned, skipped


def removable_files(report: Report) -> tuple[list[tuple[str, str]], int | None]:
    """`(file, keeper)` of each removable file of a report, and when the report was made (ns, if saved with it).

    Args:
        report: A `DuplicateReport`, a saved report as read from its JSON, or the path of that file.

    Raises:
        FileNotFoundError: No report is saved at that path.
        ValueError: It is not a duplicate report, or one made without the keypoint check.
    """
    if isinstance(report, (str, os.PathLike)):
        report = _read_report(Path(report))
    if isinstance(report, Mapping):
        try:
            groups = [(group["removable"], group.get("keeper", "")) for group in report["groups"]]
        except (KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"not a duplicate report with groups of removable files ({error!r})") from error
        threshold, verified = report.get("threshold"), report.get("verified", True)
        try:
            made_ns: int | None = int(dt.datetime.fromisoformat(report["created"]).timestamp()) * 10**9
        except (KeyError, TypeError, ValueError):
            made_ns = None  # a report without its time: only the rows are compared
    else:
        groups = [(group.removable, getattr(group, "keeper", "")) for group in report.groups]
        threshold, verified, made_ns = report.threshold, report.verified, None
    if threshold is not None and not verified:
        raise ValueError(
            "the duplicate report was made without the keypoint check (--no-verify): its near pairs may be "
            "look-alikes, not copies. Search with the check (or --exact-only) before moving files"
        )
    return [(str(path), str(keeper or "")) for removable, keeper in groups for path in removable], made_ns


def _read_report(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(
            f"no saved duplicate report at {path}: run `python -m utilities duplicates` first (it saves one there)"
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not a duplicate report: {error}") from error


def common_root(store: ImageCollection, exclude: str = "") -> str:
    """The deepest folder holding every stored file (URLs and files under `exclude` left out).

    Raises:
        ValueError: No stored file is left.
    """
    root: str | None = None
    for page in store.iter_rows():
        folders = {posixpath.dirname(row["path"]) for row in page}
        folders = {name for name in folders if "://" not in name and not (exclude and (name + "/").startswith(exclude))}
        if folders:
            root = posixpath.commonpath([*folders, *([root] if root is not None else [])])
    if root is None:
        raise ValueError(f"collection {store.name!r} holds no files to move")
    return root


def destination_of(path: str, root: str, folder: Path) -> Path:
    """Where a file goes: its path below `root`, under `folder`.

    A file outside `root` goes under `folder/_outside_root/` with its whole path; `..` parts
    become `__`, so no file can land outside `folder`.

    Example:
        >>> destination_of("/photos/cats/a.jpg", "/photos", Path("/dups")).as_posix()
        '/dups/cats/a.jpg'
        >>> destination_of("/other/../b.jpg", "/photos", Path("/dups")).as_posix()
        '/dups/_outside_root/other/__/b.jpg'
    """
    pure = PurePosixPath(path)
    try:
        parts = pure.relative_to(root).parts
    except ValueError:
        parts = (OUTSIDE_ROOT, *pure.parts[1:])
    return folder.joinpath(*("__" if part in ("..", ".", "") else part for part in parts))


def check_file(move: PlannedMove) -> str | None:
    """The check made just before a file moves: still there, with its row's size, time and content."""
    reason = _stat_differs(move.source, (move.file_size, move.mtime_ns))
    if reason:
        return reason
    digest = file_hash(move.source)
    if not digest:
        return "cannot be read"
    if digest != move.content_hash:
        return "its content differs from its row (same size and time, other bytes): index and search again"
    return None


def _unmovable(source: str, keeper: str, rows: dict[int, ImageRecord], made_ns: int | None) -> str | None:
    """Why a file must stay, from its row, its keeper's and a stat of each (None: it can move)."""
    row = rows.get(path_id(source))
    if row is None:
        return "not in the collection any more: search again"
    if not row.content_hash:
        return "its row has no content hash to check the file against: index the folder again"
    reason = _stat_differs(source, row.stat)
    if reason:
        return reason
    try:
        status = os.lstat(source)
    except OSError as error:
        return f"cannot be read: {error.strerror}"
    if stat.S_ISLNK(status.st_mode):
        return "a symbolic link (it takes no space): not moved"
    if not stat.S_ISREG(status.st_mode):
        return "not a regular file"
    if made_ns is not None and status.st_mtime_ns > made_ns + REPORT_TIME_SLACK_NS:
        return "modified after the duplicate search: search again"
    kept = rows.get(path_id(keeper)) if keeper else None
    if keeper and (kept is None or _stat(keeper) != kept.stat):
        return f"its keeper {keeper} is gone or changed since it was indexed: search again"
    return None


def _stat(path: str) -> tuple[int, int] | None:
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def _stat_differs(path: str, stored: tuple[int, int]) -> str | None:
    """Why a file no longer matches its row's `(size, mtime_ns)` (None: it does)."""
    found = _stat(path)
    if found is None:
        return "not found (moved or deleted since the search)"
    if found != stored:
        return "changed since it was indexed (size or modification time): index and search again"
    return None


def _refuse_inside(folder: Path, root: str) -> None:
    """Refuse a folder inside the root (its files would be indexed again) or holding it."""
    real_folder, real_root = Path(os.path.realpath(folder)), Path(os.path.realpath(root))
    if real_folder == real_root or real_root in real_folder.parents or real_folder in real_root.parents:
        where = "holds" if real_folder in real_root.parents else "is inside"
        raise ValueError(
            f"{folder} {where} the indexed folder {root}: files moved there would be indexed again. "
            "Choose a folder outside it (or give the root of the indexed files)"
        )
