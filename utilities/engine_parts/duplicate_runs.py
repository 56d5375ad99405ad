"""An engine's duplicate search, saved where the engine keeps its reports (`duplicates.saved`), and
moving a report's removable files aside (`duplicates.moving`), or back.

The duplicate modules are imported on first use: an engine that never looks for copies never loads them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from utilities.milvus.collection import ImageCollection

if TYPE_CHECKING:
    from utilities.duplicates.moving import MoveResult
    from utilities.duplicates.report import DuplicateReport


def find_and_save(
    store: ImageCollection, report_path: Path, state_path: Path, progress: bool = True, **options: Any
) -> DuplicateReport:
    """Run `duplicates.finder.find_duplicates` and save the report at `report_path` with what it was made
    on (`duplicates.provenance.Source`).

    Args:
        store: The collection.
        report_path: Where the report is saved.
        state_path: What the search keeps for its next run.
        progress: Show progress bars.
        **options: The other arguments of `find_duplicates`; a `threshold` or `neighbours` of None
            stands for its default.
    """
    from utilities.duplicates import finder
    from utilities.duplicates.provenance import Source
    from utilities.duplicates.saved import save_report

    if options.get("threshold") is None:
        options["threshold"] = finder.DEFAULT_THRESHOLD
    options["neighbours"] = options.get("neighbours") or finder.DEFAULT_NEIGHBOURS
    report = finder.find_duplicates(store, progress=progress, state_path=state_path, **options)
    save_report(report, report_path, Source.of(store))
    return report


def move_removable(
    store: ImageCollection,
    destination: str | os.PathLike,
    report: DuplicateReport | str | os.PathLike | None,
    saved_path: Path,
    root: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = True,
    mapping_path: Path | None = None,
) -> MoveResult:
    """Run `duplicates.moving.move_removable` on `report`, or on the report saved at that path (None:
    at `saved_path`), which must have been made on this collection as it is (`duplicates.saved.load_report`)."""
    from utilities.duplicates import moving
    from utilities.duplicates.provenance import Source
    from utilities.duplicates.saved import load_report

    if report is None or isinstance(report, (str, os.PathLike)):
        report = load_report(report or saved_path, Source.of(store))
    return moving.move_removable(store, report, destination, root, dry_run, progress, mapping_path)


def undo_move(
    store: ImageCollection, manifest: str | os.PathLike, progress: bool = True, mapping_path: Path | None = None
) -> MoveResult:
    """Run `duplicates.moving.undo_move`: put back what a move took, from its manifest."""
    from utilities.duplicates import moving

    return moving.undo_move(store, manifest, progress, mapping_path)
