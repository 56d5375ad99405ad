"""Moving one file without ever writing over another file or losing it (for `duplicates.moving`).

`place(source, target)`: on one filesystem, a hard link at `target` (which fails if `target`
exists: nothing is written over), then the source's name is removed. Across filesystems, or where
hard links are refused, the file is copied to a temporary name beside `target`
(`.<name>.<pid>.<random>.moving`), synced to disk, checked against its content hash, linked into
place (or, on a filesystem without hard links, renamed there after checking that the place is
free), the folder is synced, and only then is the source removed.

Killed at any point, a move leaves the source intact, or the file complete at `target`, or both:
the same file under two names, or a complete copy beside its intact source (`leftover_at`), and
maybe a temporary copy (`temporaries`). `duplicates.moving.undo_move` clears those up.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterable
from pathlib import Path

from utilities.atomic import sync_folder
from utilities.hashing import BLOCK_BYTES, file_hash

TEMPORARY_SUFFIX = ".moving"
"""Ends the name of a copy on its way to its destination."""


def place(source: str | os.PathLike, target: str | os.PathLike, content_hash: str | None = None) -> None:
    """Move a file to `target`, never over an existing file; the source goes only once `target` is complete.

    Args:
        source: The file.
        target: Its new path (its folder is created if needed).
        content_hash: `hashing.file_hash` the copy must have when the file is copied across
            filesystems (None: not checked).

    Raises:
        FileExistsError: `target` exists (nothing was changed).
        OSError: The file could not be moved (the source is where it was, and `target` is free).
    """
    source, target = Path(source), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        _hard_link(source, target)
    except FileExistsError:
        raise
    except OSError:  # another filesystem (EXDEV), or one without hard links
        _copy_into_place(source, target, content_hash)
    try:
        _remove_source(source)
    except OSError:
        target.unlink()  # the new name or copy just made: the source stays as it was
        raise


def temporaries(folders: Iterable[Path]) -> dict[Path, list[Path]]:
    """Temporary copies that stopped moves left in `folders`, by the path each was on its way to.

    Each folder is listed once, whatever the number of files moved into it.
    """
    found: dict[Path, list[Path]] = {}
    for folder in set(folders):
        try:
            names = sorted(os.listdir(folder))
        except OSError:  # gone, or not a folder
            continue
        for name in names:
            if name.startswith(".") and name.endswith(TEMPORARY_SUFFIX):
                heading = name[1 : -len(TEMPORARY_SUFFIX)].rsplit(".", 2)[0]  # less `.<pid>.<random>`
                found.setdefault(folder / heading, []).append(folder / name)
    return found


def leftover_at(target: str | os.PathLike, source: str | os.PathLike, content_hash: str) -> bool:
    """Whether `target` is what a stopped move left beside its intact source: the same file under
    a second name, or a complete copy (both files hold `content_hash`)."""
    if os.path.samefile(source, target):
        return True
    same_size = os.path.getsize(source) == os.path.getsize(target)
    return same_size and bool(content_hash) and file_hash(source) == content_hash == file_hash(target)


def _copy_into_place(source: Path, target: Path, content_hash: str | None) -> None:
    """Copy to a temporary name beside `target`, sync, check, then link or rename it into place."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}")
    try:
        with open(source, "rb") as reader, open(temporary, "xb") as writer:
            shutil.copyfileobj(reader, writer, BLOCK_BYTES)
            writer.flush()
            shutil.copystat(source, temporary)  # the same modification time as the source
            _sync_file(writer)
        if content_hash is not None and file_hash(temporary) != content_hash:
            raise OSError(f"the copy at {temporary} does not hold the bytes of {source}")
        try:
            _hard_link(temporary, target)
        except FileExistsError:
            raise
        except OSError:  # no hard links here: check, then rename (which would replace a file)
            if os.path.lexists(target):
                raise FileExistsError(target) from None
            os.rename(temporary, target)
        sync_folder(target.parent)
    finally:
        temporary.unlink(missing_ok=True)  # only ever this move's own copy


def _hard_link(source: Path, target: Path) -> None:
    os.link(source, target)


def _sync_file(handle: object) -> None:
    os.fsync(handle.fileno())  # type: ignore[attr-defined]


def _remove_source(source: Path) -> None:
    os.unlink(source)
