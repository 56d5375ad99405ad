"""Figures of a duplicate search: each group's images side by side, and the nearest-neighbour histogram."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from utilities.duplicates.report import DuplicateGroup, DuplicateReport

MAX_SHOWN = 8
"""Images drawn for one group (the keeper first); a larger group says how many more it holds."""

OWN_FIGURES = re.compile(r"group_\d{4,}\.png|nearest\.png")
"""The names `plot_report` writes."""

MARKER_NAME = ".duplicates-figures.json"
"""The list of the figures `plot_report` wrote into a folder: the only files it ever removes or replaces."""


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

    The figures an earlier call wrote there (listed in its `MARKER_NAME` file: `group_0007.png` of a group
    gone since) are removed first; no other file is removed or written over.

    Raises:
        FileExistsError: `folder` holds a file of one of those names that this function did not write
            (nothing is written then).
    """
    target = Path(folder)
    for name in sorted(_written_before(target)):
        stale = target / name
        if stale.is_file() and not stale.is_symlink():
            stale.unlink(missing_ok=True)
    names = [f"group_{n:04d}.png" for n in range(1, len(report.groups) + 1)]
    names += ["nearest.png"] if report.nearest else []
    theirs = [name for name in names if os.path.lexists(target / name)]
    if theirs:
        raise FileExistsError(
            f"{target} holds {', '.join(theirs[:3])}{' ...' if len(theirs) > 3 else ''}, not written by --plot: "
            "not replaced. Choose another folder for the figures"
        )
    target.mkdir(parents=True, exist_ok=True)
    marker = target / MARKER_NAME
    marker.write_text(json.dumps(names), encoding="utf-8")  # first: a run stopped half-way leaves none unlisted
    written = [plot_group(group, target / name) for name, group in zip(names, report.groups, strict=False)]
    if report.nearest:
        written.append(plot_nearest_histogram(report, target / "nearest.png"))
    return written


def _written_before(folder: Path) -> set[str]:
    """The figures an earlier `plot_report` listed in `folder`'s marker (only names it writes)."""
    try:
        listed = json.loads((folder / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return set()
    if not isinstance(listed, list):
        return set()
    return {name for name in listed if isinstance(name, str) and OWN_FIGURES.fullmatch(name)}
