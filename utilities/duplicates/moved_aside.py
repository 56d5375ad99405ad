"""Telling moved-aside files and symbolic links from the library's own files, for choosing a keeper.

A folder that `duplicates --move-removable` moved files into holds its manifest
(`duplicates-move-<time>.json`) or its lock file (`.duplicates-move.lock`). Files under such a folder
keep their rows, so a later search finds them again beside the library's copy: they must never be
kept in its place (the next move would take the library's copy). Nor should a symbolic link be kept
in place of the file it names. `KeeperRank` ranks both last; `moving` and `grouping` both use it
(this module imports nothing of theirs).
"""

from __future__ import annotations

import os
import posixpath

MANIFEST_KIND = "duplicates-move"
"""The `kind` of a move manifest, and the start of its file name."""

LOCK_NAME = ".duplicates-move.lock"
"""The lock file a move or undo holds in its folder (left there afterwards)."""


def is_move_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds a move's lock file or a move manifest (files were moved aside into it)."""
    if os.path.lexists(os.path.join(folder, LOCK_NAME)):
        return True
    try:
        with os.scandir(folder) as entries:
            return any(entry.name.startswith(MANIFEST_KIND + "-") and entry.name.endswith(".json") for entry in entries)
    except OSError:  # gone, not a folder, or not readable
        return False


class KeeperRank:
    """Ranks files as keepers: `rank(path)` is `(moved aside, a symbolic link)`, False first.

    Each folder is looked at once per instance (make one for each search or move).
    """

    def __init__(self) -> None:
        self._folders: dict[str, bool] = {}

    def moved_aside(self, path: str) -> bool:
        """Whether `path` lies in a folder files were moved aside into (or below one)."""
        if "://" in path:
            return False
        folder = posixpath.dirname(posixpath.abspath(path))
        while True:
            found = self._folders.get(folder)
            if found is None:
                found = self._folders[folder] = is_move_folder(folder)
            if found:
                return True
            parent = posixpath.dirname(folder)
            if parent == folder:
                return False
            folder = parent

    def rank(self, path: str) -> tuple[bool, bool]:
        """`(moved aside, a symbolic link)`: a keeper is chosen among the lowest ranks first."""
        if "://" in path:
            return False, False
        return self.moved_aside(path), os.path.islink(path)
