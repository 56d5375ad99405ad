"""Blank fill in a file: the corners of a copy turned on its own canvas, and flat borders.

The tests `keeper` runs to find a group's original (its steps **no blank corners** and, through
`picture_share`, **native pixels**): a copy turned on its own canvas shows one fill colour at its
corners where the original shows picture, and a border or letterboxing adds pixels but no picture.
Its siblings: `enlargement` (a copy enlarged from another), `reencoding` (a JPEG saved again from
another), `full_size` (the decoded files they read).
"""

from __future__ import annotations

import numpy as np

from utilities.duplicates.full_size import full_grey
from utilities.duplicates.verification import grey_or_error

CORNER = 0.015
"""Side of the corner patches `blank_corners` reads, as a share of the image's shorter side (a copy
turned by 2 degrees or more leaves a blank triangle that holds it)."""

BLANK_CORNER_DEVIATION = 3.0
"""Grey-level standard deviation under which a corner patch is blank."""

BLANK_CORNER_CONTRAST = 15.0
"""Difference of mean grey levels between a blank corner and the picture just inside it."""

FILLED_CORNER = 2
"""Side, in pixels, of the patch at each corner that `filled_corners` reads: a copy turned by a fraction
of a degree on its own canvas already has its fill there (on the benchmark's set, 275 of 408 pairs of a
turned copy and another file of its size were found, and 2 of 2,196 pairs without a turned copy)."""

ONE_FILL = 12.0
"""Largest spread of the 4 corner patches' mean grey levels for them to hold one fill colour (after JPEG)."""


def blank_corners(path: str) -> int:
    """How many of the image's 4 corners are blank and unlike the picture just inside them: what
    turning a copy on its own canvas leaves (-1 when the image cannot be read)."""
    found = grey_or_error(path)
    if isinstance(found, str):
        return -1
    image = found.astype(np.float32)
    height, width = image.shape
    side = max(3, round(CORNER * min(height, width)))
    if min(height, width) < 5 * side:
        return 0
    blank = 0
    for rows, columns in ((slice(0, side), slice(0, side)), (slice(0, side), slice(-side, None))) + (
        (slice(-side, None), slice(0, side)),
        (slice(-side, None), slice(-side, None)),
    ):
        inner_rows = slice(3 * side, 4 * side) if rows.start == 0 else slice(-4 * side, -3 * side)
        inner_columns = slice(3 * side, 4 * side) if columns.start == 0 else slice(-4 * side, -3 * side)
        corner, inner = image[rows, columns], image[inner_rows, inner_columns]
        blank += corner.std() < BLANK_CORNER_DEVIATION and abs(corner.mean() - inner.mean()) > BLANK_CORNER_CONTRAST
    return blank


def corner_levels(path: str) -> np.ndarray | None:
    """Mean grey levels of the `FILLED_CORNER` patches at the image's 4 corners, with its size (None when
    it cannot be read)."""
    image = full_grey(path)
    if image is None:
        return None
    side = FILLED_CORNER
    levels = [
        image[rows, columns].mean()
        for rows in (slice(0, side), slice(-side, None))
        for columns in (slice(0, side), slice(-side, None))
    ]
    return np.array([*levels, *image.shape], dtype=np.float64)


def filled_corners(levels: np.ndarray | None, other: np.ndarray | None) -> bool:
    """Whether a file, of `other`'s size, shows one fill colour at its 4 corners where `other` shows
    picture (3 corners or more unlike it, and not one colour): a copy turned on its own canvas, even by
    a fraction of a degree (`corner_levels` gives both)."""
    if levels is None or other is None or tuple(levels[4:]) != tuple(other[4:]):
        return False
    mine, theirs = levels[:4], other[:4]
    unlike = int((np.abs(mine - theirs) > BLANK_CORNER_CONTRAST).sum())
    return bool(np.ptp(mine) <= ONE_FILL and np.ptp(theirs) > ONE_FILL and unlike >= 3)


def picture_share(path: str) -> float:
    """Share of the image inside its blank border: edge rows and columns that are flat (a border,
    letterboxing) are trimmed off, from each side in turn."""
    found = grey_or_error(path)
    if isinstance(found, str):
        return 1.0
    image = found.astype(np.float32)
    top, bottom, left, right = 0, image.shape[0], 0, image.shape[1]
    while bottom - top > 8 and image[top, left:right].std() < BLANK_CORNER_DEVIATION:
        top += 1
    while bottom - top > 8 and image[bottom - 1, left:right].std() < BLANK_CORNER_DEVIATION:
        bottom -= 1
    while right - left > 8 and image[top:bottom, left].std() < BLANK_CORNER_DEVIATION:
        left += 1
    while right - left > 8 and image[top:bottom, right - 1].std() < BLANK_CORNER_DEVIATION:
        right -= 1
    return (bottom - top) * (right - left) / image.size
