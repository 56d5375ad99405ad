"""Copying result images into a folder, safely."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from utilities.errors import ImageSearchError

NAME_MAX_BYTES = 255
"""Longest file name (in UTF-8 bytes) most file systems take."""


def _fitted(name: str) -> str:
    """`name` with control characters (newlines, tabs, escapes) replaced by `_`, its stem shortened
    so that the whole name fits in `NAME_MAX_BYTES`; the suffix is kept."""
    clean = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in name)
    if len(clean.encode("utf-8")) <= NAME_MAX_BYTES:
        return clean
    stem, suffix = os.path.splitext(clean)
    suffix = suffix if len(suffix.encode("utf-8")) <= 16 else ""
    room = NAME_MAX_BYTES - len(suffix.encode("utf-8"))
    return stem.encode("utf-8")[:room].decode("utf-8", errors="ignore") + suffix


def _target_names(results: pd.DataFrame) -> list[str]:
    """`<rank>_<name>`, prefixed by `q<n>_` when the table holds several queries (see `_fitted`)."""
    width = len(str(int(results["rank"].max()))) if len(results) else 1
    names = [
        f"{int(rank):0{width}d}_{Path(str(path)).name}"
        for rank, path in zip(results["rank"], results["path"], strict=True)
    ]
    if "query" in results.columns:
        # a new query starts wherever the rank stops increasing
        codes = (results["rank"].diff().fillna(-1) <= 0).cumsum().to_numpy() - 1
        names = [f"q{code + 1}_{name}" for code, name in zip(codes, names, strict=True)]
    names = [_fitted(name) for name in names]
    return names


def copy_results(
    results: pd.DataFrame, destination: str | os.PathLike, overwrite: bool = False, manifest: bool = True
) -> list[Path]:
    """Copy the result files into a folder, named by rank so same-named files survive.

    Files are named `<rank>_<original name>` (for example `01_cat.jpg`, `02_cat.jpg`).
    Only the base name of each source is used, so nothing is written outside
    `destination`. A `manifest.csv` (rank, id, source path, distance, written path)
    is written beside them.

    Args:
        results: A DataFrame from `search_images` (needs `rank` and `path`).
        destination: Folder to copy into (created if missing).
        overwrite: Replace files that already exist there; otherwise that is an error.
        manifest: Also write `manifest.csv`.

    Returns:
        The written file paths, in result order.

    Raises:
        ImageSearchError: A source file is missing (nothing is copied then), or a
            target exists and `overwrite` is False. The message names the file.

    Example:
        >>> copy_results(engine.search("q.jpg", top_k=3), "results/")  # doctest: +SKIP
        [PosixPath('results/1_a.jpg'), PosixPath('results/2_b.jpg'), PosixPath('results/3_a.jpg')]
    """
    folder = Path(destination)
    plan = [
        (Path(str(path)), folder / name) for path, name in zip(results["path"], _target_names(results), strict=True)
    ]
    missing = [str(source) for source, _ in plan if not source.is_file()]
    if missing:
        raise ImageSearchError(
            f"result file {missing[0]!r} no longer exists ({len(missing)} missing in all); "
            "re-index the folder (or prune) so the collection matches the disk"
        )
    existing = [str(target) for _, target in plan if target.exists()]
    if existing and not overwrite:
        raise ImageSearchError(f"{existing[0]!r} already exists; choose an empty folder or pass overwrite=True")
    folder.mkdir(parents=True, exist_ok=True)
    written = [Path(shutil.copy2(source, target)) for source, target in plan]
    if manifest:
        table = results.drop(columns=[c for c in ("score",) if c in results]).copy()
        table = table.rename(columns={"path": "source_path"})
        table["written_path"] = [str(p) for p in written]
        table.to_csv(folder / "manifest.csv", index=False)
    return written


def size_and_mtime(path: str | os.PathLike) -> tuple[int, int] | None:
    """The file's size and modification time in ns (what tells a changed file), or None if it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns
