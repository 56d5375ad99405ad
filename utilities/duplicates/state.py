"""What a duplicate search leaves for the next one, and whether the next one may use it.

The state lives beside the report, named after the database and the collection
(`duplicates.saved.state_path`: `db/photos.<collection>.duplicates.state.npz` for `db/photos.db`):
every row's content hash, the lists of candidates, the best cosines, the keypoint checks, and what it
was made on. It is used only when all of these hold, otherwise the run is a full one:

- the same database, collection, incarnation of it (not dropped and made again) and kind of vectors
  (dimension, projection): `provenance.Source`;
- the same threshold, neighbours and metric;
- the probe: a few rows' stored vectors, recorded by every run whatever it found, give the cosines to
  a fixed vector they gave then (`provenance.probe_holds`: the collection was not indexed again with
  another model), and a few saved cosines between candidates still hold (checked by
  `incremental.update_candidates`).

A state of an earlier version (`STATE_VERSION`) is never used. `finder` loads and saves the state;
`incremental` re-runs a search from it.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from utilities.atomic import replaced_atomically
from utilities.duplicates.provenance import Source, probe_holds
from utilities.milvus.collection import ImageCollection

logger = logging.getLogger(__name__)

STATE_VERSION = 2
"""Version 2 records the `provenance.Source` and the probe; a state of version 1 is not used."""

Check = tuple[bool, int, float, float, bool, float, float]
"""A keypoint check's outcome: (verified, inliers, covered_first, covered_second, related, fill_first,
fill_second), the first file being the one with the smaller content hash."""


@dataclass
class DuplicateState:
    """What a duplicate search leaves for the next one (see the module's notes).

    Attributes:
        source: The database, collection, incarnation and kind of vectors searched.
        threshold: Cosine the pairs had to reach.
        neighbours: Nearest rows searched for each row.
        metric: The collection's metric.
        hashes: Every row's content hash, by id.
        found_by: Each searched row's candidates with their exact cosines.
        nearest: Each searched row's best cosine to another row.
        checks: Keypoint checks by the sorted content hashes of the two files.
        check_rule: The rule those checks were made under (`verification.check_rule`); a run under
            another rule checks again.
        probe: A few rows' stored vectors' cosines to a fixed vector, by id (`provenance.probe_cosines`).
    """

    source: Source
    threshold: float
    neighbours: int
    metric: str
    hashes: dict[int, str] = field(default_factory=dict)
    found_by: dict[int, dict[int, float]] = field(default_factory=dict)
    nearest: dict[int, float] = field(default_factory=dict)
    checks: dict[tuple[str, str], Check] = field(default_factory=dict)
    check_rule: str = ""
    probe: dict[int, float] = field(default_factory=dict)

    @property
    def collection(self) -> str:
        """The collection's name."""
        return self.source.collection

    def save(self, path: str | os.PathLike) -> Path:
        """Write the state as one `.npz` file, atomically (a reader sees the old file or the new one)."""
        target = Path(path)
        edges = [
            (source, other, cosine) for source, others in self.found_by.items() for other, cosine in others.items()
        ]
        checks = sorted(self.checks.items())
        meta = {
            "version": STATE_VERSION,
            "source": self.source.as_dict(),
            "threshold": self.threshold,
            "neighbours": self.neighbours,
            "metric": self.metric,
            "check_rule": self.check_rule,
        }
        arrays = {
            "meta": np.array(json.dumps(meta)),
            "ids": np.array(list(self.hashes), dtype=np.int64),
            "hashes": np.array(list(self.hashes.values()), dtype=str),
            "searched": np.array(list(self.found_by), dtype=np.int64),
            "nearest_ids": np.array(list(self.nearest), dtype=np.int64),
            "nearest": np.array(list(self.nearest.values()), dtype=np.float32),
            "edge_source": np.array([edge[0] for edge in edges], dtype=np.int64),
            "edge_other": np.array([edge[1] for edge in edges], dtype=np.int64),
            "edge_cosine": np.array([edge[2] for edge in edges], dtype=np.float64),
            "check_hashes": np.array([list(key) for key, _ in checks], dtype=str).reshape(-1, 2),
            "check_verified": np.array([value[0] for _, value in checks], dtype=bool),
            "check_inliers": np.array([value[1] for _, value in checks], dtype=np.int32),
            "check_covered": np.array(
                [(value[2], value[3], value[5], value[6]) for _, value in checks], dtype=np.float32
            ).reshape(-1, 4),
            "check_related": np.array([value[4] for _, value in checks], dtype=bool),
            "probe_ids": np.array(list(self.probe), dtype=np.int64),
            "probe_cosines": np.array(list(self.probe.values()), dtype=np.float64),
        }
        with replaced_atomically(target, suffix=".npz") as temporary:
            np.savez(temporary, **arrays)
        return target

    @classmethod
    def load(cls, path: str | os.PathLike) -> DuplicateState | None:
        """The state saved at `path`, or None (with the reason logged) if it is missing or unreadable."""
        target = Path(path)
        if not target.exists():
            return None
        try:
            with np.load(target, allow_pickle=False) as saved:
                meta = json.loads(str(saved["meta"]))
                if meta.get("version") != STATE_VERSION:
                    logger.info(
                        "%s has state version %s, not %s: a full run", target, meta.get("version"), STATE_VERSION
                    )
                    return None
                origin = Source.from_dict(meta.get("source"))
                if origin is None:
                    raise ValueError("it names no source")
                state = cls(
                    source=origin,
                    threshold=float(meta["threshold"]),
                    neighbours=int(meta["neighbours"]),
                    metric=meta["metric"],
                    check_rule=meta.get("check_rule", ""),
                    hashes=dict(zip(saved["ids"].tolist(), saved["hashes"].tolist(), strict=True)),
                    nearest=dict(zip(saved["nearest_ids"].tolist(), saved["nearest"].tolist(), strict=True)),
                    probe=dict(zip(saved["probe_ids"].tolist(), saved["probe_cosines"].tolist(), strict=True)),
                )
                state.found_by = {int(source): {} for source in saved["searched"].tolist()}
                for source, other, cosine in zip(
                    saved["edge_source"].tolist(),
                    saved["edge_other"].tolist(),
                    saved["edge_cosine"].tolist(),
                    strict=True,
                ):
                    state.found_by.setdefault(source, {})[other] = cosine
                for (first, second), verified, inliers, (covered_first, covered_second, *fills), related in zip(
                    saved["check_hashes"].tolist(),
                    saved["check_verified"].tolist(),
                    saved["check_inliers"].tolist(),
                    saved["check_covered"].tolist(),
                    saved["check_related"].tolist(),
                    strict=True,
                ):
                    state.checks[(first, second)] = (
                        bool(verified),
                        int(inliers),
                        round(float(covered_first), 3),
                        round(float(covered_second), 3),
                        bool(related),
                        round(float(fills[0]), 3) if fills else -1.0,
                        round(float(fills[1]), 3) if len(fills) > 1 else -1.0,
                    )
                return state
        except (OSError, ValueError, KeyError, TypeError) as error:
            logger.warning("cannot read the saved duplicate search %s (%s): a full run", target, error)
            return None


def state_applies(
    state: DuplicateState, store: ImageCollection, source: Source, threshold: float, neighbours: int
) -> bool:
    """Whether `state` was made on `source` (this database, collection and incarnation, the same kind of
    vectors) with these settings, and its probe still holds (the module's notes); logs why not."""
    settings = (("threshold", state.threshold, threshold), ("neighbours", state.neighbours, neighbours))
    differ = state.source.differences(source) + [name for name, saved, now in settings if saved != now]
    differ += ["metric"] if state.metric != store.metric else []
    if differ:
        logger.info("the saved duplicate search differs in its %s: a full run", ", ".join(differ))
        return False
    if not probe_holds(store, state.probe, state.hashes):
        logger.info("the stored vectors of %s changed since the last duplicate search: a full run", store.name)
        return False
    return True
