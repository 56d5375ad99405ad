"""Figures of a query image beside its nearest neighbours (headless-safe)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from utilities.errors import ImageLoadError
from utilities.images.decoding import load_image


def _thumbnail(source: Any, size: int) -> np.ndarray | None:
    try:
        image = source if isinstance(source, Image.Image) else load_image(source, draft_size=size)
    except ImageLoadError:
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    return np.asarray(image)


def plot_results(
    query: str | os.PathLike | Image.Image | None,
    results: pd.DataFrame,
    outfile: str | os.PathLike | None = None,
    columns: int | None = None,
    title: str | None = None,
    thumbnail_size: int = 256,
    dpi: int = 100,
) -> Any:
    """Draw the query image and its neighbours, with rank and distance in each title.

    Works without a display (it builds a `matplotlib.figure.Figure` directly, never
    `pyplot`), so it runs in scripts, CI and notebooks alike; in Jupyter the
    returned figure shows itself.

    Args:
        query: The query image (path or PIL image), or None for a vector query.
        results: One query's rows from `search_images` (`rank`, `path`, `distance`).
        outfile: Save the figure there (PNG, JPEG, PDF, SVG by suffix).
        columns: Panels per row; by default all on one row up to 6.
        title: Figure title (for example which weights made it).
        thumbnail_size: Largest side of each drawn image, in pixels.
        dpi: Resolution of the saved file.

    Returns:
        The `matplotlib.figure.Figure`.

    Example:
        >>> fig = plot_results("q.jpg", engine.search("q.jpg", top_k=5), outfile="q.png")  # doctest: +SKIP
    """
    from matplotlib.figure import Figure

    panels: list[tuple[Any, str]] = []
    if query is not None:
        name = "image" if isinstance(query, Image.Image) else Path(query).name
        panels.append((query, f"query\n{name}"))
    for _, row in results.sort_values("rank").iterrows():
        panels.append(
            (str(row["path"]), f"#{int(row['rank'])}  d={float(row['distance']):.3f}\n{Path(str(row['path'])).name}")
        )
    count = max(1, len(panels))
    ncols = columns or min(count, 6)
    nrows = math.ceil(count / ncols)
    figure = Figure(figsize=(2.6 * ncols, 2.9 * nrows + (0.4 if title else 0)))
    for index, (source, label) in enumerate(panels):
        axis = figure.add_subplot(nrows, ncols, index + 1)
        pixels = _thumbnail(source, thumbnail_size)
        if pixels is None:
            axis.text(0.5, 0.5, "cannot load", ha="center", va="center")
        else:
            axis.imshow(pixels)
        axis.set_title(label[:60], fontsize=8, color="tab:blue" if index == 0 and query is not None else "black")
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    if outfile is not None:
        Path(outfile).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(outfile, dpi=dpi)
    return figure
