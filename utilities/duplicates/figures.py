"""Figures of a duplicate search: each group's images side by side, and the nearest-neighbour histogram."""

from __future__ import annotations

import os
import re
from pathlib import Path

from utilities.duplicates.report import DuplicateGroup, DuplicateReport

MAX_SHOWN = 8
"""Images drawn for one group (the keeper first); a larger group says how many more it holds."""

OWN_FIGURES = re.compile(r"group_\d{4,}\.png|nearest\.png")
"""The names `plot_report` writes: the only files it removes from its folder."""


def plot_group(group: DuplicateGroup, outfile: str | os.PathLike, side: int = 256) -> Path:
    """One row of thumbnails: the kept file first (marked), then the others."""
    import matplotlib.pyplot as plt

    from utilities.errors import ImageLoadError
    from utilities.images.decoding import load_image

    shown = [group.keeper, *group.removable][:MAX_SHOWN]
    figure, axes = plt.subplots(1, len(shown), figsize=(3 * len(shown), 3.4), squeeze=False)
    for axis, path in zip(axes[0], shown, strict=True):
        try:
            image = load_image(path, draft_size=side)
            image.thumbnail((side, side))
            axis.imshow(image)
        except ImageLoadError as error:
            axis.text(0.5, 0.5, f"unreadable:\n{error.reason[:60]}", ha="center", va="center", wrap=True)
        label = ("keep: " if path == group.keeper else "") + Path(path).name
        axis.set_title(label[:40], fontsize=9, color="darkgreen" if path == group.keeper else "black")
        axis.axis("off")
    extra = len(group.files) - len(shown)
    figure.suptitle(("exact copies" if group.exact else "copies") + (f" (+{extra} more)" if extra > 0 else ""))
    figure.tight_layout()
    target = Path(outfile)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=80)
    plt.close(figure)
    return target


def plot_nearest_histogram(report: DuplicateReport, outfile: str | os.PathLike) -> Path:
    """Histogram of each image's best cosine to another one, with the threshold used: pick a
    threshold in the valley before the peak of near-identical pairs."""
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 3.5))
    axis.hist(report.nearest, bins=50, color="steelblue")
    if report.threshold is not None:
        axis.axvline(report.threshold, color="crimson", linestyle="--", label=f"threshold {report.threshold:g}")
        axis.legend()
    axis.set_xlabel("cosine similarity to the nearest other image")
    axis.set_ylabel("images")
    axis.set_title(f"{report.collection}: nearest neighbours of {len(report.nearest)} images")
    figure.tight_layout()
    target = Path(outfile)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, dpi=80)
    plt.close(figure)
    return target


def plot_report(report: DuplicateReport, folder: str | os.PathLike) -> list[Path]:
    """`group_<n>.png` for each group and `nearest.png` (when vectors were searched) in `folder`.

    The figures an earlier call left there (`OWN_FIGURES`: `group_0007.png` of a group gone since) are
    removed first; other files are left alone.
    """
    existing = Path(folder)
    for stale in existing.iterdir() if existing.is_dir() else ():
        if OWN_FIGURES.fullmatch(stale.name) and stale.is_file():
            stale.unlink(missing_ok=True)
    written = [plot_group(group, Path(folder) / f"group_{n:04d}.png") for n, group in enumerate(report.groups, 1)]
    if report.nearest:
        written.append(plot_nearest_histogram(report, Path(folder) / "nearest.png"))
    return written
