"""Two images laid over each other and compared cell by cell: how much of each is found in the other.

The second step of `verification`'s check (after `verification` has fitted a transform to the two
images' keypoints). Each image is laid over the other with that transform and compared on a grid of
at most `GRID` x `GRID` cells: textured cells by normalised cross-correlation after one brightness
and contrast fit, flat cells by their mean, and so a cell flat in one image and only faint in the
other. `coverage` gives the share of an image found in place in the other, and the share that lies
outside it but is blank fill (a border, letterboxing, a turned copy's corners); `verification`
decides from both shares whether the two are one picture.

The constants were chosen with `verification`'s on the committed samples and their edited copies,
collages, side-by-sides, padded and pasted copies (`benchmarks/duplicates.py`; the tables are in
`benchmarks/results/`; `FAINT_DEVIATION` on `duplicates-efficientnet-composites.md`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

GRID = 12
"""Cells a side of the grid on which two images laid over each other are compared (at most)."""

MIN_GRID = 4
"""Cells a side at least, however small the image."""

CELL_PIXELS = 24
"""Smallest side of a cell, in pixels: a smaller image gets fewer cells (a correlation over a dozen
blurred, re-encoded pixels says little)."""

CELL_CORRELATION = 0.5
"""Normalised cross-correlation at which a textured cell counts as found in the other image."""

FLAT_DEVIATION = 6.0
"""Grey-level standard deviation under which a cell is flat (compared by its mean instead)."""

FLAT_DIFFERENCE = 16.0
"""Largest difference of means, in grey levels, at which two flat cells match."""

FAINT_DEVIATION = 12.0
"""Grey-level standard deviation under which a cell is compared by its mean when the other image's cell
is flat (a wall at 5.9 in one image and 6.1 in the other is the same wall)."""

BLANK_DEVIATION = 2.0
"""Grey-level standard deviation (9 x 9 pixels) under which a region is blank fill: a border, letterboxing,
a turned copy's corners (a sky or a wall, flat to the eye, varies more)."""

FILL_LEVELS = 3
"""Grey levels around the commonest one within which blank pixels outside the other image are fill."""

MIN_CELL_PIXELS = 64
"""Pixels of a cell that must lie inside the other image for the cell to be compared."""

EDGE_PIXELS = 8
"""Pixels just outside the other image left out of both shares (where a border meets the picture)."""


def coverage(cv2: Any, image: np.ndarray, other: np.ndarray, transform: np.ndarray) -> tuple[float, float]:
    """Shares of `image`'s area found in place in `other`, and lying outside it but flat (a fill).

    `transform` maps `image` into `other`, which is warped into `image`'s frame; after one linear
    fit of the grey levels (a brightened or contrasted copy matches), each cell of a `GRID` x `GRID`
    grid that lies mostly inside `other` is compared: textured cells by normalised cross-correlation,
    flat ones by their means; the pixels inside `other` of the cells that match are the area found.
    Flat pixels where `other` shows something else (a turned copy's corners inside the original)
    are fill too, and left out of their cell's comparison.
    Pixels outside `other` in a flat neighbourhood (a border, letterboxing, a turned copy's corners)
    hold nothing `other` lacks: they are the fill. Pixels within `EDGE_PIXELS` of `other` count for
    neither (where a border meets the picture, a neighbourhood is never flat).
    """
    height, width = image.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    blurred = cv2.GaussianBlur(other, (5, 5), 0)  # compare structure, not re-encoding noise
    laid = cv2.warpAffine(blurred, transform, (width, height), flags=flags).astype(np.float32)
    inside = cv2.warpAffine(np.ones_like(other), transform, (width, height), flags=flags) > 0
    mine = image.astype(np.float32)
    if inside.sum() < 16:
        return 0.0, 0.0
    slope, offset = np.polyfit(laid[inside], mine[inside], 1) if laid[inside].std() > 0 else (1.0, 0.0)
    mean = cv2.blur(mine, (9, 9))
    spread = np.sqrt(np.maximum(cv2.blur(mine * mine, (9, 9)) - mean * mean, 0))
    laid = laid * slope + offset
    mine = cv2.GaussianBlur(mine, (5, 5), 0)
    near_edge = (cv2.dilate(inside.astype(np.uint8), np.ones((2 * EDGE_PIXELS + 1,) * 2, np.uint8)) > 0) & ~inside
    fill = _uniform_fill(mine[~inside & ~near_edge & (spread < BLANK_DEVIATION)])
    counted = max(1, mine.size - int(near_edge.sum()))
    cells = max(MIN_GRID, min(GRID, min(height, width) // CELL_PIXELS))  # small images: fewer, larger cells
    rows = np.linspace(0, height, cells + 1).astype(int)
    columns = np.linspace(0, width, cells + 1).astype(int)
    flat = spread < FLAT_DEVIATION
    laid_mean = cv2.blur(laid, (9, 9))
    flat_laid = np.sqrt(np.maximum(cv2.blur(laid * laid, (9, 9)) - laid_mean * laid_mean, 0)) < FLAT_DEVIATION
    found = 0
    for top, bottom in zip(rows[:-1], rows[1:], strict=True):
        for left, right in zip(columns[:-1], columns[1:], strict=True):
            within = inside[top:bottom, left:right]
            if within.sum() < MIN_CELL_PIXELS:
                continue
            pixels, over = mine[top:bottom, left:right][within], laid[top:bottom, left:right][within]
            blank = (  # blank here where the other shows something: a turned copy's corner
                flat[top:bottom, left:right][within]
                & ~flat_laid[top:bottom, left:right][within]
                & (np.abs(pixels - over) > FLAT_DIFFERENCE)
            )
            fill += float(blank.sum())
            rest = ~blank
            if rest.sum() >= MIN_CELL_PIXELS and _cell_matches(pixels[rest], over[rest]):
                found += int(rest.sum())
    return found / counted, fill / counted


def _uniform_fill(candidates: np.ndarray) -> float:
    """How many of the blank pixels outside the other image have one colour (within `FILL_LEVELS` of
    the commonest): a border or letterboxing has one; a clear sky, flat to the eye, drifts."""
    if candidates.size == 0:
        return 0.0
    levels = np.clip(np.round(candidates), 0, 255).astype(np.int64)
    commonest = int(np.bincount(levels, minlength=256).argmax())
    return float((np.abs(levels - commonest) <= FILL_LEVELS).sum())


def _cell_matches(mine: np.ndarray, laid: np.ndarray) -> bool:
    """Whether one cell's pixels and the other image's pixels laid over them show the same thing: by
    correlation when both are textured, by their means when one is flat and the other at most faint.

    Example:
        >>> wall = np.tile([100.0, 110.0], 50)  # standard deviation 5
        >>> _cell_matches(wall, wall * 1.4 - 44), _cell_matches(wall, wall * 4 - 315)  # deviation 7, 20
        (True, False)
    """
    deviation_mine, deviation_laid = float(mine.std()), float(laid.std())
    if deviation_mine < FLAT_DEVIATION or deviation_laid < FLAT_DEVIATION:
        faint = max(deviation_mine, deviation_laid) < FAINT_DEVIATION
        return faint and abs(float(mine.mean()) - float(laid.mean())) <= FLAT_DIFFERENCE
    correlation = float(((mine - mine.mean()) * (laid - laid.mean())).mean()) / (deviation_mine * deviation_laid)
    return correlation >= CELL_CORRELATION
