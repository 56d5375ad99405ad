"""The id-to-path mapping as a pandas DataFrame, saved beside the collection.

The collection is the source of truth (each row stores its path), so the mapping
can always be rebuilt from it with `mapping_from_collection`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from utilities.atomic import replaced_atomically
from utilities.config import MilvusTarget
from utilities.locks import FileLock, lock_path_beside
from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import PAGE_ROWS

logger = logging.getLogger(__name__)

MAPPING_COLUMNS = ["id", "path", "file_size", "mtime_ns"]


def mapping_from_collection(
    store: ImageCollection, batch_size: int = PAGE_ROWS, progress: bool = False
) -> pd.DataFrame:
    """Read every row's id and path (and file size and mtime) from the collection.

    Args:
        store: The collection.
        batch_size: Rows per page read.
        progress: Show a progress bar.

    Returns:
        A DataFrame with columns `id`, `path`, `file_size`, `mtime_ns`, sorted by path.

    Example:
        >>> mapping_from_collection(store).head()  # doctest: +SKIP
    """
    rows: list[tuple[int, str, int, int]] = []
    with tqdm(desc="mapping", unit="row", disable=not progress) as bar:
        for page in store.iter_records(batch_size):
            rows += [(record.id, record.path, record.file_size, record.mtime_ns) for record in page]
            bar.update(len(page))
    frame = _mapping_frame(rows)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def default_mapping_path(target: MilvusTarget, collection_name: str) -> Path:
    """Where the mapping of a collection is saved by default.

    For a Lite file: beside it (`db/<collection>.mapping.csv`). For a server:
    `db/<host>_<port>_<collection>.mapping.csv` in the working directory.
    """
    if target.is_lite:
        return Path(target.uri).expanduser().absolute().parent / f"{collection_name}.mapping.csv"
    server = re.sub(r"[^A-Za-z0-9]+", "_", re.sub(r"^\w+://", "", target.uri)).strip("_")
    return Path("db") / f"{server}_{collection_name}.mapping.csv"


def save_mapping(frame: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Write the mapping as CSV or Parquet (by the file's suffix), atomically.

    Returns:
        The written path.
    """
    destination = Path(path)
    with replaced_atomically(destination) as temporary:  # one temporary file per writer (concurrent shards)
        if destination.suffix.lower() == ".parquet":
            frame.to_parquet(temporary, index=False)
        else:
            frame.to_csv(temporary, index=False)
    return destination


def update_mapping(
    store: ImageCollection,
    path: str | os.PathLike,
    written_rows: Sequence[tuple[int, str, int, int]],
    deleted_ids: Sequence[int],
    progress: bool = False,
) -> Path:
    """Patch a saved mapping with one run's changes, instead of reading the whole collection again.

    Under the mapping's lock, the file is read (a missing one counts as empty), the rows the
    run deleted or wrote are dropped from it, the written ones are added, and the result is
    written back, sorted by path, if it holds as many rows as the collection (an exact count).
    Otherwise (a file that cannot be read, or rows written by another process and missing from
    it) the mapping is rebuilt from the collection, as `mapping_from_collection` reads it.

    Args:
        store: The collection.
        path: The mapping file (CSV or Parquet).
        written_rows: `(id, path, file_size, mtime_ns)` of the rows the run wrote (`IndexReport.written_rows`).
        deleted_ids: Ids of the rows the run deleted (`IndexReport.deleted_ids`).
        progress: Show a progress bar if the collection has to be read.

    Returns:
        The written path.

    Example:
        >>> update_mapping(store, "db/images.mapping.csv", report.written_rows, report.deleted_ids)  # doctest: +SKIP
    """
    destination = Path(path)
    with mapping_lock(destination):
        frame = _patched_mapping(destination, written_rows, deleted_ids)
        if frame is None or len(frame) != store.count():
            frame = mapping_from_collection(store, progress=progress)
        return save_mapping(frame, destination)


def _patched_mapping(
    path: Path, written_rows: Sequence[tuple[int, str, int, int]], deleted_ids: Sequence[int]
) -> pd.DataFrame | None:
    """The saved mapping with a run's changes applied, or None if the file cannot be read as one."""
    try:
        saved = load_mapping(path) if path.exists() else _mapping_frame([])
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as error:
        logger.warning("mapping %s cannot be read (%s): rebuilding it from the collection", path, error)
        return None
    if list(saved.columns) != MAPPING_COLUMNS:
        return None
    written = _mapping_frame(written_rows).drop_duplicates("id", keep="last")
    kept = saved[~saved["id"].isin(set(written["id"].tolist()) | set(deleted_ids))]
    frame = pd.concat([_mapping_frame_types(kept), written], ignore_index=True)
    return frame.sort_values("path", kind="stable").reset_index(drop=True)


def _mapping_frame(rows: Sequence[tuple[int, str, int, int]]) -> pd.DataFrame:
    return _mapping_frame_types(pd.DataFrame(list(rows), columns=MAPPING_COLUMNS))


def _mapping_frame_types(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.astype({"id": "int64", "path": "string", "file_size": "int64", "mtime_ns": "int64"})


@contextlib.contextmanager
def mapping_lock(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on a mapping file while it is rebuilt and written.

    Two processes indexing shards of one folder into one server both rewrite the
    mapping when they finish; holding this lock from reading the collection to
    writing the file means the last one to finish writes every row. A `locks.FileLock`
    (`flock`) on `.<name>.lock` beside it; on Windows it does nothing.

    Example:
        >>> with mapping_lock("db/images.mapping.csv"):  # doctest: +SKIP
        ...     save_mapping(mapping_from_collection(store), "db/images.mapping.csv")
    """
    with FileLock(lock_path_beside(path, ".lock")):
        yield


def load_mapping(path: str | os.PathLike) -> pd.DataFrame:
    """Read a mapping written by `save_mapping`.

    Raises:
        FileNotFoundError: The file does not exist.
    """
    source = Path(path)
    if source.suffix.lower() == ".parquet":
        frame = pd.read_parquet(source)
    else:
        frame = pd.read_csv(source, dtype={"path": "string"}, keep_default_na=False)
    return frame.astype({"id": "int64"})


@dataclass
class MappingCheck:
    """How a saved mapping file differs from the collection.

    Attributes:
        path: The mapping file checked.
        rows: Rows in the collection.
        missing_from_file: Ids in the collection but not in the file.
        stale_in_file: Ids in the file but not in the collection.
        wrong_path: Ids whose path differs between the two.
        repaired: Whether the file was rewritten from the collection.
    """

    path: Path
    rows: int
    missing_from_file: list[int] = field(default_factory=list)
    stale_in_file: list[int] = field(default_factory=list)
    wrong_path: list[int] = field(default_factory=list)
    repaired: bool = False

    @property
    def consistent(self) -> bool:
        """True when the file lists exactly the collection's ids and paths."""
        return not (self.missing_from_file or self.stale_in_file or self.wrong_path)

    def __str__(self) -> str:
        state = (
            "consistent"
            if self.consistent
            else (
                f"{len(self.missing_from_file)} missing from the file, {len(self.stale_in_file)} stale in the file, "
                f"{len(self.wrong_path)} with another path"
            )
        )
        suffix = "; repaired from the collection" if self.repaired else ""
        return f"{self.path}: {self.rows} rows in the collection, mapping {state}{suffix}"


def verify_mapping(store: ImageCollection, path: str | os.PathLike, repair: bool = False) -> MappingCheck:
    """Compare a saved mapping file with the collection; optionally rewrite it from the collection.

    The collection is the source of truth: a missing or damaged file is repaired by
    rebuilding it from the rows' stored paths.

    Args:
        store: The collection.
        path: The mapping file (it may be missing).
        repair: Rewrite the file from the collection when they differ.

    Returns:
        A `MappingCheck` (what differed, and whether it was repaired).

    Example:
        >>> print(verify_mapping(store, "db/imagenet_collection.mapping.csv", repair=True))  # doctest: +SKIP
    """
    target = Path(path)
    with mapping_lock(target):  # one read of the collection serves the check and the repair
        live = mapping_from_collection(store)
        saved = load_mapping(target) if target.exists() else _mapping_frame([])
        live_paths = dict(zip(live["id"].tolist(), live["path"].astype(str).tolist(), strict=True))
        saved_paths = dict(zip(saved["id"].tolist(), saved["path"].astype(str).tolist(), strict=True))
        check = MappingCheck(
            path=target,
            rows=len(live),
            missing_from_file=sorted(set(live_paths) - set(saved_paths)),
            stale_in_file=sorted(set(saved_paths) - set(live_paths)),
            wrong_path=sorted(i for i in set(live_paths) & set(saved_paths) if live_paths[i] != saved_paths[i]),
        )
        if repair and not check.consistent:
            save_mapping(live, target)
            check.repaired = True
    return check
