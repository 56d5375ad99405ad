"""The id-to-path mapping as a pandas DataFrame, saved beside the collection.

The collection is the source of truth (each row stores its path), so the mapping
can always be rebuilt from it with `mapping_from_collection`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd

from utilities.config import MilvusTarget
from utilities.milvus_store import ID_FIELD, MTIME_FIELD, PATH_FIELD, SIZE_FIELD, ImageCollection

MAPPING_COLUMNS = ["id", "path", "file_size", "mtime_ns"]


def mapping_from_collection(store: ImageCollection, batch_size: int = 1000) -> pd.DataFrame:
    """Read every row's id and path (and file size and mtime) from the collection.

    Args:
        store: The collection.
        batch_size: Rows per page read.

    Returns:
        A DataFrame with columns `id`, `path`, `file_size`, `mtime_ns`, sorted by path.

    Example:
        >>> mapping_from_collection(store).head()  # doctest: +SKIP
    """
    rows = [
        row for page in store.iter_rows((ID_FIELD, PATH_FIELD, SIZE_FIELD, MTIME_FIELD), batch_size) for row in page
    ]
    frame = pd.DataFrame(rows, columns=MAPPING_COLUMNS)
    frame = frame.astype({"id": "int64", "path": "string", "file_size": "int64", "mtime_ns": "int64"})
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
    destination.parent.mkdir(parents=True, exist_ok=True)
    temporary = destination.with_name(destination.name + ".tmp")
    if destination.suffix.lower() == ".parquet":
        frame.to_parquet(temporary, index=False)
    else:
        frame.to_csv(temporary, index=False)
    os.replace(temporary, destination)
    return destination


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
