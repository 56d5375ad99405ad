"""The one-command demo: index a small real photo set, search held-out photos, save the evidence."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utilities.datasets import fetch_dataset, first_per_class
from utilities.indexing.pipeline import IndexReport
from utilities.splits import split_per_class


@dataclass
class DemoSummary:
    """What the demo did and where its files are.

    Attributes:
        report: The indexing report.
        images_root: The photo folder used.
        plots: One figure per query.
        copies: One folder of copied results per query.
        same_class_rate: Fraction of results in the query's class folder (precision@k by label),
            or None when no query was searched.
        weights: Which weights made the vectors.
        classes: Number of class folders in the database (chance is 1 / classes).
    """

    report: IndexReport
    images_root: Path
    plots: list[Path] = field(default_factory=list)
    copies: list[Path] = field(default_factory=list)
    same_class_rate: float | None = None
    weights: str = ""
    classes: int = 0

    def __str__(self) -> str:
        lines = [str(self.report), f"photos: {self.images_root}"]
        if self.same_class_rate is None:
            lines.append("no query was searched: no class folder had a photo left over to hold out")
        else:
            chance = f"; chance is ~{1 / self.classes:.0%}" if self.classes > 1 else ""
            lines.append(
                f"results in the query's class: {self.same_class_rate:.0%} over {len(self.plots)} queries "
                f"({self.weights}{chance})"
            )
        lines += [f"plot: {plot}   copies: {copy}" for plot, copy in zip(self.plots, self.copies, strict=True)]
        return "\n".join(lines)


def split_database_and_queries(root: Path, per_class: int, queries: int) -> tuple[list[Path], list[Path]]:
    """Database images and held-out queries from a folder of class sub-folders.

    With `train/` and `val/` inside (Imagenette's layout) the database comes from
    `train/` and the queries from `val/`. Otherwise each class folder holds out one photo
    as a query candidate: the one after its first `per_class`, or its last one when it has
    `per_class` photos or fewer (a class of a single photo keeps it in the database). The
    queries are then spread evenly over the candidates.

    Raises:
        FileNotFoundError: No images under `root`.
    """
    if (root / "train").is_dir() and (root / "val").is_dir():
        database = first_per_class(root / "train", per_class)
        pool = first_per_class(root / "val", 1)
    else:
        database, pool = split_per_class(root, per_class, 1, hold_out_one=True)
    if not database:
        raise FileNotFoundError(f"no images found under {root}")
    step = max(1, len(pool) // max(queries, 1))
    return database, pool[::step][:queries]


def run_demo(
    engine: Any,
    images: str | os.PathLike | None = None,
    output: str | os.PathLike = Path("results") / "demo",
    per_class: int = 20,
    queries: int = 3,
    top_k: int = 5,
) -> DemoSummary:
    """Index a photo set into the engine's collection, search held-out photos, save plots and copies.

    Args:
        engine: An `ImageSearchEngine`.
        images: A folder of class sub-folders; by default Imagenette 160 px is downloaded once.
        output: Folder for the plots (`query_<n>.png`) and copies (`query_<n>/`).
        per_class: Database images per class.
        queries: Number of held-out query images.
        top_k: Results per query.

    Returns:
        A `DemoSummary`.
    """
    root = Path(images) if images is not None else fetch_dataset()
    database, query_paths = split_database_and_queries(root, per_class, queries)
    report = engine.index_files(database)
    destination = Path(output)
    summary = DemoSummary(
        report=report,
        images_root=root,
        weights=getattr(engine.embedder, "weights_label", ""),
        classes=len({path.parent for path in database}),
    )
    matches = total = 0
    for number, query in enumerate(query_paths, start=1):
        results = engine.search(query, top_k=top_k)
        summary.plots.append(destination / f"query_{number}.png")
        engine.plot(query, results, outfile=summary.plots[-1])
        summary.copies.append(destination / f"query_{number}")
        engine.copy_results(results, summary.copies[-1], overwrite=True)
        matches += sum(Path(p).parent.name == query.parent.name for p in results["path"])
        total += len(results)
    summary.same_class_rate = matches / total if total else None
    return summary
