"""The map as a picture: every row a dot, coloured by class (headless-safe: a matplotlib `Figure`, no pyplot)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from utilities.collection_map.mapper import CollectionMap

LEGEND_CLASSES = 20
"""Most classes named in the legend (the others are drawn, unnamed)."""


def plot_map(
    found: CollectionMap,
    outfile: str | os.PathLike | None = None,
    title: str | None = None,
    size: float = 8.0,
    dpi: int = 100,
    thumbnails: int = 0,
) -> Any:
    """Draw every mapped row as a dot coloured by its class (grey for rows without one).

    With `thumbnails`, up to that many images are drawn where they lie: for each class in turn, the
    row nearest its class's middle on the map (files that cannot be read are left out).

    Args:
        found: The map (`map_collection`).
        outfile: Save the figure there (PNG, JPEG, PDF, SVG by suffix).
        title: Figure title (default: the rows and the method).
        size: Width and height in inches.
        dpi: Resolution of the saved file.
        thumbnails: How many images to draw on the map (0: none).

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        >>> plot_map(map_collection(engine), outfile="map.png")  # doctest: +SKIP
    """
    from matplotlib import colormaps
    from matplotlib.figure import Figure

    figure = Figure(figsize=(size, size), dpi=dpi)
    axes = figure.add_subplot()
    classes = found.class_index
    dot = max(0.2, min(12.0, 20_000 / max(len(found), 1)))
    unlabelled = classes < 0
    if unlabelled.any():
        axes.scatter(
            found.x[unlabelled], found.y[unlabelled], s=dot, c="#999999", linewidths=0, label="(no class)", zorder=2
        )
    palette = colormaps["tab20" if len(found.class_names) > 10 else "tab10"]
    for number, name in enumerate(found.class_names):
        chosen = classes == number
        shown = name if number < LEGEND_CLASSES else None
        axes.scatter(
            found.x[chosen],
            found.y[chosen],
            s=dot,
            color=palette(number % palette.N),
            linewidths=0,
            label=shown,
            zorder=2,
        )
    if found.class_names:
        axes.legend(loc="best", fontsize="small", markerscale=max(1.0, 4 / np.sqrt(dot)), frameon=False)
    for row in _thumbnail_rows(found, thumbnails):
        _draw_thumbnail(axes, found, row, size_px=dpi * size / 16)
    axes.set_title(title or f"{len(found)} images, {found.method.upper()}")
    axes.set_xticks([])
    axes.set_yticks([])
    axes.set_aspect("equal", adjustable="datalim")
    figure.tight_layout()
    if outfile is not None:
        figure.savefig(outfile, dpi=dpi)
    return figure


def _thumbnail_rows(found: CollectionMap, count: int) -> list[int]:
    """Up to `count` rows: the one nearest each class's median position, classes in turn, then more by rank."""
    points = np.column_stack([found.x, found.y])
    ranked = []
    for number in range(len(found.class_names)):
        members = np.flatnonzero(found.class_index == number)
        if len(members):
            middle = np.median(points[members], axis=0)
            ranked.append(members[np.argsort(((points[members] - middle) ** 2).sum(axis=1))].tolist())
    chosen = []
    for rank in range(max((len(r) for r in ranked), default=0)):
        chosen += [r[rank] for r in ranked if rank < len(r)]
        if len(chosen) >= count:
            break
    return chosen[:count]


def _draw_thumbnail(axes: Any, found: CollectionMap, row: int, size_px: float) -> None:
    """The row's image, `size_px` wide at most, framed, at its place on the map, under the dots (skipped
    when unreadable)."""
    from matplotlib.offsetbox import AnnotationBbox, OffsetImage

    from utilities.errors import ImageLoadError
    from utilities.images.decoding import load_image

    try:
        image = load_image(found.paths[row], draft_size=int(size_px)).convert("RGB")
    except (ImageLoadError, OSError):
        return
    image.thumbnail((int(size_px), int(size_px)))
    box = AnnotationBbox(OffsetImage(np.asarray(image), zoom=1.0), (found.x[row], found.y[row]), pad=0.15, zorder=1)
    axes.add_artist(box)
