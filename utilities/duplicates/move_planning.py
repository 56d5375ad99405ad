"""Planning a move of a duplicate report's removable files: where each goes, and whether it may.

`plan_moves` reads the report's removable files (`groups[*].removable`, with each group's keeper),
finds the indexed root (the deepest folder holding every stored file, or the one given), maps each
file to `DIR/<its path below the root>` (outside the root: `DIR/_outside_root/<its whole path>`)
and leaves out, with the reason, each file that must stay: not stored any more, changed since it
was indexed or since the search, a symbolic link, the same file as its keeper (one file indexed
under two paths, or a keeper that is a link to it), its keeper gone, changed or itself moved aside
(in `folder` or in another folder files were moved into), its destination taken. `check_file` is the
check made again just before a file moves, its keeper's and both content hashes included.

`folder` may lie below the root, but not in (or above) a folder that holds stored files.
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

from utilities.duplicates.moved_aside import KeeperRank
from utilities.files import size_and_mtime
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
"""A saved report's time is kept to the second: a file counts as modified after it beyond this (an
in-memory report's `created` is exact: no slack)."""


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
        keeper_size: The keeper's size, from its row.
        keeper_mtime_ns: The keeper's modification time, from its row.
        keeper_hash: The keeper's content hash, from its row.
    """

    source: str
    destination: str
    keeper: str
    file_size: int
    mtime_ns: int
    content_hash: str
    keeper_size: int = -1
    keeper_mtime_ns: int = -1
    keeper_hash: str = ""


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
    everywhere = stored_folders(store)
    folders = {name for name in everywhere if not (name + "/").startswith(inside_folder)}
    if everywhere and not folders:
        raise ValueError(
            f"{folder} holds the indexed folder {posixpath.commonpath(sorted(everywhere))}: files moved there would "
            "be indexed again. Choose a folder outside it"
        )
    root = stored_path(root) if root is not None else _common(folders, store)
    _refuse_inside(folder, root, folders)
    ids = {path_id(path) for pair in removable for path in pair if path}
    rows = {record.id: record for record in store.records(sorted(ids))}
    planned: list[PlannedMove] = []
    skipped: dict[str, str] = {}
    taken: set[str] = set()
    ranks = KeeperRank()
    for source, keeper in removable:
        target = stored_path(destination_of(source, root, folder))
        if source.startswith(inside_folder):
            reason: str | None = f"already in {folder}"
        elif target in taken:
            reason = f"another file goes to {target} (paths outside {root} that differ only in '..')"
        elif os.path.lexists(target):
            reason = f"{target} exists already: not overwritten"
        else:
            reason = _unmovable(source, keeper, rows, made_ns) or _keeper_aside(keeper, folder, ranks)
        if reason:
            skipped[source] = reason
            continue
        taken.add(target)
        row, kept = rows[path_id(source)], rows[path_id(keeper)]
        planned.append(
            PlannedMove(
                source,
                target,
                keeper,
                row.file_size,
                row.mtime_ns,
                row.content_hash,
                kept.file_size,
                kept.mtime_ns,
                kept.content_hash,
            )
        )
    return planned, skipped


def removable_files(report: Report) -> tuple[list[tuple[str, str]], int | None]:
    """`(file, keeper)` of each removable file of a report, and the time (ns) after which a file counts as
    changed since the report: a saved report's `created` (kept to the second) plus `REPORT_TIME_SLACK_NS`,
    or a `DuplicateReport`'s own `created` (None when it has none).

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
            made = int(dt.datetime.fromisoformat(report["created"]).timestamp()) * 10**9
            made_ns: int | None = made + REPORT_TIME_SLACK_NS
        except (KeyError, TypeError, ValueError):
            made_ns = None  # a report without its time: only the rows are compared
    else:
        groups = [(group.removable, getattr(group, "keeper", "")) for group in report.groups]
        threshold, verified = report.threshold, report.verified
        created = getattr(report, "created", None)
        made_ns = None if created is None else int(created * 10**9)
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
    return _common(stored_folders(store, exclude), store)


def stored_folders(store: ImageCollection, exclude: str = "") -> set[str]:
    """The folders that directly hold stored files (URLs and files under `exclude` left out)."""
    found: set[str] = set()
    for page in store.iter_rows():
        folders = {posixpath.dirname(row["path"]) for row in page}
        found |= {name for name in folders if "://" not in name and not (exclude and (name + "/").startswith(exclude))}
    return found


def _common(folders: set[str], store: ImageCollection) -> str:
    if not folders:
        raise ValueError(f"collection {store.name!r} holds no files to move")
    return posixpath.commonpath(sorted(folders))


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


def check_file(move: PlannedMove, hashed: dict[tuple[str, int, int], str] | None = None) -> str | None:
    """The check made just before a file moves: it is still there, with its row's size, time and content,
    and so is its keeper, which is not the same file.

    Args:
        move: The planned move.
        hashed: Keepers' content hashes found by earlier checks of this run, by `(path, size, mtime_ns)`
            (a keeper of several files is read once).
    """
    reason = _stat_differs(move.source, (move.file_size, move.mtime_ns))
    if reason:
        return reason
    reason = _same_file(move.source, move.keeper)
    if reason:
        return reason
    if size_and_mtime(move.keeper) != (move.keeper_size, move.keeper_mtime_ns):
        return f"its keeper {move.keeper} is gone or changed since it was indexed: search again"
    digest = file_hash(move.source)
    if not digest:
        return "cannot be read"
    if digest != move.content_hash:
        return "its content differs from its row (same size and time, other bytes): index and search again"
    key = (move.keeper, move.keeper_size, move.keeper_mtime_ns)
    kept = hashed.get(key) if hashed is not None else None
    if kept is None:
        kept = file_hash(move.keeper)
        if kept and hashed is not None:
            hashed[key] = kept
    if not kept or kept != move.keeper_hash:
        return f"its keeper {move.keeper} cannot be read or holds other bytes than its row: index and search again"
    return _same_file(move.source, move.keeper)  # once more, after the reads


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
    if made_ns is not None and status.st_mtime_ns > made_ns:
        return "modified after the duplicate search: search again"
    if not keeper:
        return "its group names no file to keep: search again"
    kept = rows.get(path_id(keeper))
    if kept is None or size_and_mtime(keeper) != kept.stat:
        return f"its keeper {keeper} is gone or changed since it was indexed: search again"
    if not kept.content_hash:
        return f"its keeper's row has no content hash to check {keeper} against: index the folder again"
    if made_ns is not None and kept.mtime_ns > made_ns:
        return f"its keeper {keeper} was modified after the duplicate search: search again"
    return _same_file(source, keeper)


def _same_file(source: str, keeper: str) -> str | None:
    """Why `source` must stay because it is its keeper's file (None: it is another file, or the keeper is
    gone, which the keeper's own check reports)."""
    try:
        same = os.path.samefile(source, keeper)
    except OSError:
        same = False
    if same or os.path.realpath(source) == os.path.realpath(keeper):
        return (
            f"the same file as its keeper {keeper} (one file under two paths, or a link to it): moving it would "
            "leave no copy"
        )
    return None


def _keeper_aside(keeper: str, folder: Path, ranks: KeeperRank) -> str | None:
    """Why a file must stay because its keeper is not in the library: in `folder`, or in another folder
    that files were moved aside into (None: it is not)."""
    real_keeper, real_folder = os.path.realpath(keeper), os.path.realpath(folder)
    if (keeper + "/").startswith(stored_path(folder) + "/") or real_keeper.startswith(real_folder + os.sep):
        return f"its keeper {keeper} is in {folder}, where moved files go: moving it would leave no copy in the library"
    if ranks.moved_aside(keeper) or ranks.moved_aside(real_keeper):
        return (
            f"its keeper {keeper} is in a folder of files moved aside (it holds a move manifest): "
            "search again to keep the library's copy"
        )
    return None


def _stat_differs(path: str, stored: tuple[int, int]) -> str | None:
    """Why a file no longer matches its row's `(size, mtime_ns)` (None: it does)."""
    found = size_and_mtime(path)
    if found is None:
        return "not found (moved or deleted since the search)"
    if found != stored:
        return "changed since it was indexed (size or modification time): index and search again"
    return None


def _refuse_inside(folder: Path, root: str, folders: set[str]) -> None:
    """Refuse a folder that is the root or holds it, or lies in (or holds) a folder that holds stored files
    (its files would be indexed again with the library's). Below the root, in a folder of its own, is allowed."""
    real_folder, real_root = Path(os.path.realpath(folder)), Path(os.path.realpath(root))
    if real_folder == real_root or real_folder in real_root.parents:
        where = "is" if real_folder == real_root else "holds"
        raise ValueError(
            f"{folder} {where} the indexed folder {root}: files moved there would be indexed again. "
            "Choose a folder outside it (or give the root of the indexed files)"
        )
    real_folders = {Path(os.path.realpath(name)): name for name in folders}
    for ancestor in (real_folder, *real_folder.parents):
        if ancestor in real_folders:
            raise ValueError(
                f"{folder} is inside the indexed folder {real_folders[ancestor]}, which holds stored files: files "
                "moved there would be indexed again with them. Choose a folder outside it"
            )
    held = next((name for real, name in sorted(real_folders.items()) if real_folder in real.parents), None)
    if held is not None:
        raise ValueError(
            f"{folder} holds the indexed folder {held}: files moved there would be indexed again. "
            "Choose a folder outside it"
        )
