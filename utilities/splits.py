"""Splitting a folder of class sub-folders into a database part and a held-out part.

The demo, the evaluation and the datasets all split labelled photo folders the same way:
per class folder, in file-name order, the first N images and the M after them.
"""

from __future__ import annotations

import os
from pathlib import Path

from utilities.images.finding import find_images


def class_folders(root: str | os.PathLike) -> list[Path]:
    """The sub-folders of `root`, sorted by name (one per class)."""
    return sorted(p for p in Path(root).iterdir() if p.is_dir())


def split_per_class(
    root: str | os.PathLike, first: int, then: int = 0, hold_out_one: bool = False
) -> tuple[list[Path], list[Path]]:
    """Per class folder, its first `first` images, and the `then` images after them.

    A folder without class sub-folders counts as one class.

    Args:
        root: A folder of class sub-folders.
        first: Images per class in the first list.
        then: Images per class in the second list.
        hold_out_one: A class of `first` images or fewer still gives its last image to the
            second list (unless it has only one), so that every class can be queried.

    Returns:
        The two lists, class by class.

    Example:
        >>> database, queries = split_per_class("tests/data/photos", 3, 1)  # doctest: +SKIP
        >>> len(database), len(queries)  # doctest: +SKIP
        (30, 10)
    """
    first_part: list[Path] = []
    second_part: list[Path] = []
    for folder in class_folders(root) or [Path(root)]:
        files = find_images(folder)
        kept = min(first, len(files) - 1) if hold_out_one and len(files) > 1 else first
        first_part += files[:kept]
        second_part += files[kept : kept + then]
    return first_part, second_part
