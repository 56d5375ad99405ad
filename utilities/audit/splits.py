"""Where each stored image sits in a labelled dataset: its split and its class, read from its folders.

Two layouts are understood, below the indexed root (by default the deepest folder holding every
stored file):

- `<split>/<class>/...` (Imagenette, ImageNet): the first folder level is the split, the second the
  class. It is taken when every first-level folder is a usual split name (`SPLIT_NAMES`), or when the
  split names are given (`--splits train test`); files under another first-level folder then have no
  split and no class.
- `<class>/...`: the first folder level is the class, and there are no splits.

A file directly in the root (or directly in a split) has no class. URLs have neither.
"""

from __future__ import annotations

import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation", "dev", "holdout"})
"""First-level folder names taken for splits when none are given (all first-level folders must be among them)."""


@dataclass(frozen=True)
class Place:
    """The split and the class of one stored image (None when its folders do not say).

    Attributes:
        split: The split folder (`train`, `test`, ...), or None.
        label: The class folder, or None.
    """

    split: str | None
    label: str | None


@dataclass(frozen=True)
class Layout:
    """How the stored paths were read.

    Attributes:
        root: The folder the levels are counted from.
        splits: The split names in use (empty: a `<class>/...` layout).
    """

    root: str
    splits: tuple[str, ...]

    def place(self, path: str) -> Place:
        """The split and class of a stored path under this layout.

        Example:
            >>> Layout("/data", ("test", "train")).place("/data/train/cat/a.jpg")
            Place(split='train', label='cat')
            >>> Layout("/data", ()).place("/data/cat/a.jpg")
            Place(split=None, label='cat')
        """
        folders = _folders_below(self.root, path)
        if not self.splits:
            return Place(None, folders[0] if folders else None)
        if not folders or folders[0] not in self.splits:
            return Place(None, None)
        return Place(folders[0], folders[1] if len(folders) > 1 else None)


def _folders_below(root: str, path: str) -> list[str]:
    """The folder names between `root` and the file (empty for a file outside `root` or a URL)."""
    prefix = root if root.endswith("/") else root + "/"
    if "://" in path or not path.startswith(prefix):
        return []
    return path[len(prefix) :].split("/")[:-1]  # stored paths are normalised: no `..`, `.` or `//` to resolve


def common_folder(paths: Iterable[str]) -> str:
    """The deepest folder holding every path (URLs left out; `/` when there is none).

    Example:
        >>> common_folder(["/d/train/cat/a.jpg", "/d/test/dog/b.jpg"])
        '/d'
    """
    folders = {posixpath.dirname(path) for path in paths if "://" not in path}
    return posixpath.commonpath(sorted(folders)) if folders else "/"


def find_layout(paths: Sequence[str], splits: Sequence[str] | None = None, root: str | None = None) -> Layout:
    """The layout of the stored paths.

    Args:
        paths: Stored paths (absolute, forward slashes).
        splits: Split folder names (the first level under `root`); None: found from the folders
            (`SPLIT_NAMES`), else a `<class>/...` layout.
        root: The indexed folder; None: the deepest folder holding every path.

    Returns:
        The `Layout`.

    Example:
        >>> find_layout(["/d/train/cat/a.jpg", "/d/test/cat/b.jpg"]).splits
        ('test', 'train')
        >>> find_layout(["/d/cat/a.jpg", "/d/dog/b.jpg"]).splits
        ()
    """
    base = (root.rstrip("/") or "/") if root else common_folder(paths)
    if splits:
        return Layout(base, tuple(sorted(set(splits))))
    first = {folders[0] for folders in (_folders_below(base, path) for path in paths) if folders}
    return Layout(base, tuple(sorted(first)) if first and first <= SPLIT_NAMES else ())
