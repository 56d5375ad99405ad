"""Where a collection's map is kept: its positions and its fitted layout, keyed to the database and collection.

Named as the duplicate search's files are (`duplicates.saved.saved_stem`): for Milvus Lite
`db/photos.db`, collection `images`, the map is `db/photos.images.map.npz` beside the file; for a
server, `db/<host>_<port>_<collection>.map.npz` in the working directory. The `.npz` holds every
mapped row (id, path, content hash, x, y), the fitted layout as plain arrays (the PCA, and for UMAP
the sample's PCA coordinates and positions that place new rows), and what the map was made on
(`duplicates.provenance.Source`, with the probe of a few rows' vectors that tells whether the
collection was indexed again with another model): a map made on another collection, or on this one
before it was dropped or indexed again, is never read. It is loaded without pickle.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from utilities.atomic import replaced_atomically
from utilities.collection_map.layout import FittedLayout
from utilities.config import MilvusTarget
from utilities.duplicates.provenance import Source, probe_holds
from utilities.duplicates.saved import saved_stem
from utilities.projection import Projection

logger = logging.getLogger(__name__)

MAP_SUFFIX = ".map.npz"
FORMAT = 1
"""Version of the saved file's layout; another one is not read."""


def map_path(target: MilvusTarget, collection: str) -> Path:
    """Where the map of `collection` on `target` is saved.

    Example:
        >>> map_path(MilvusTarget("db/photos.db"), "images").name
        'photos.images.map.npz'
    """
    stem = saved_stem(target, collection)
    return stem.with_name(stem.name + MAP_SUFFIX)


@dataclass
class SavedMap:
    """A map as saved: every mapped row and the layout that placed them.

    Attributes:
        ids: int64 row ids.
        paths: Each row's stored path.
        hashes: Each row's content hash when it was placed (a changed file is placed again).
        positions: `(rows, 2)` float32.
        layout: The fitted layout, to place new rows (None when loaded without it).
        probe: Cosines of a few rows' vectors to the probe (`duplicates.provenance.probe_cosines`).
        created: When the layout was fitted (ISO 8601, UTC).
        method: `"umap"` or `"pca"`: the layout that placed them.
        fitted_on: Rows the layout was fitted on.
    """

    ids: np.ndarray
    paths: list[str]
    hashes: list[str]
    positions: np.ndarray
    layout: FittedLayout | None
    probe: dict[int, float] = field(default_factory=dict)
    created: str = ""
    method: str = ""
    fitted_on: int = 0


def save_map(saved: SavedMap, path: Path, source: Source) -> Path:
    """Write `saved` at `path`, made on `source`, replacing the last one atomically."""
    layout = saved.layout
    if layout is None:
        raise ValueError("a map is saved with its layout")
    meta = {
        "format": FORMAT,
        "source": source.as_dict(),
        "method": layout.method,
        "fitted_on": layout.fitted_on,
        "probe": {str(row): cosine for row, cosine in saved.probe.items()},
        "created": saved.created,
    }
    pca = layout.pca
    arrays = {
        "ids": np.asarray(saved.ids, dtype=np.int64),
        "paths": _packed(saved.paths),
        "hashes": _packed(saved.hashes),
        "positions": np.asarray(saved.positions, dtype=np.float32),
        "pca_mean": pca.mean if pca else np.zeros(0, np.float32),
        "pca_components": pca.components if pca else np.zeros((0, 0), np.float32),
        "pca_fit": np.asarray([pca.fitted_on if pca else 0, pca.explained if pca else 0.0]),
        "anchors": layout.anchors,
        "anchor_positions": layout.anchor_positions,
        "meta": np.asarray(json.dumps(meta)),
    }
    with replaced_atomically(path) as temporary, temporary.open("wb") as handle:
        np.savez(handle, **arrays)
    return path


def load_map(path: Path, source: Source, store: Any, with_layout: bool = True) -> SavedMap | None:
    """The map saved at `path`, if it was made on `source` and the stored vectors are still the ones it read.

    Args:
        path: Where it was saved (`map_path`).
        source: The collection now (`Source.of(store)`).
        store: The open collection (`ImageCollection`), whose probe rows are read again.
        with_layout: Load the fitted layout too (False: positions only, `layout` is None; for serving them).

    Returns:
        The `SavedMap`, or None (with the reason logged) when there is none or it does not hold.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        meta = json.loads(str(arrays["meta"]))
    except (OSError, ValueError, KeyError) as error:
        logger.warning("the saved map %s cannot be read (%s): not used", path, error)
        return None
    saved_source = Source.from_dict(meta.get("source"))
    differences = ["source"] if saved_source is None else saved_source.differences(source)
    if meta.get("format") != FORMAT or differences:
        logger.info("the saved map %s was made on another collection (%s): not used", path, differences)
        return None
    ids, hashes = arrays["ids"], _unpacked(arrays["hashes"])
    probe = {int(row): float(cosine) for row, cosine in meta.get("probe", {}).items()}
    if not probe_holds(store, probe, dict(zip(ids.tolist(), hashes, strict=True))):
        logger.info("the collection's vectors changed since the map %s was made: not used", path)
        return None
    layout = _layout(arrays, meta) if with_layout else None
    return SavedMap(
        ids,
        _unpacked(arrays["paths"]),
        hashes,
        arrays["positions"],
        layout,
        probe,
        meta.get("created", ""),
        meta["method"],
        int(meta["fitted_on"]),
    )


def _layout(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> FittedLayout:
    """The fitted layout saved with a map."""
    pca = None
    if arrays["pca_components"].size:
        fitted_on, explained = arrays["pca_fit"].tolist()
        pca = Projection(arrays["pca_mean"], arrays["pca_components"], int(fitted_on), float(explained))
    return FittedLayout(meta["method"], pca, arrays["anchors"], arrays["anchor_positions"], int(meta["fitted_on"]))


def _packed(strings: list[str]) -> np.ndarray:
    """Strings as one uint8 array, UTF-8, each ended by a NUL (no path holds one): 1 byte a character
    where numpy's fixed-width strings take 4 bytes times the longest.

    Example:
        >>> _unpacked(_packed(["/d/caf\u00e9.jpg", ""]))
        ['/d/caf\u00e9.jpg', '']
    """
    data = "".join(f"{text}\0" for text in strings).encode("utf-8", "surrogateescape")
    return np.frombuffer(data, dtype=np.uint8)


def _unpacked(packed: np.ndarray) -> list[str]:
    """The strings `_packed` made."""
    return packed.tobytes().decode("utf-8", "surrogateescape").split("\0")[:-1]
