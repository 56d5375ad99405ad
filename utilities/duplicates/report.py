"""What a duplicate search found: pairs, groups, one file to keep in each, the files one could remove.

A group holds its kept file and the files nearly all found inside it (`grouping`); files that only
share a region with it, or were linked to it through other files, are `related`, never removable.
Which file is kept: `keeper` (by default the original). The search itself never moves or deletes
a file; `moving` moves removable files aside, with an undo.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from utilities.atomic import replaced_atomically


@dataclass(frozen=True)
class DuplicatePair:
    """Two stored images that are copies of each other.

    Attributes:
        a: The first file (the smaller row id).
        b: The second file.
        cosine: Cosine similarity of their stored vectors (1.0 for exact copies).
        kind: `"exact"` (the same content hash) or `"near"` (an edited copy).
        verified: True when the geometric check confirmed a near copy; None when it did not run
            (exact copies, or `verify=False`).
        inliers: Keypoint matches that agreed with one transform (0 when not checked).
    """

    a: str
    b: str
    cosine: float
    kind: str
    verified: bool | None = None
    inliers: int = 0


@dataclass(frozen=True)
class DuplicateGroup:
    """A kept file and its copies: each removable file was checked against the kept one and is inside it.

    Attributes:
        files: Its files (the keeper and the removable ones, and without the check the candidates linked
            to the keeper), sorted.
        keeper: The file to keep (`keeper.choose`).
        removable: The others: copies of the keeper, nearly all found inside it.
        exact: True when every file has the same content.
        keeper_reason: Why this file was kept (the step of the keeper policy that decided).
    """

    files: list[str]
    keeper: str
    removable: list[str]
    exact: bool
    keeper_reason: str = ""


@dataclass(frozen=True)
class RelatedPair:
    """A file linked to a group's kept file that is not a removable copy of it.

    Attributes:
        a: The file.
        b: The kept file it relates to.
        reason: Why it is not removable.
        covered_a: Share of `a` found inside `b` by the check (0 when not checked).
        covered_b: Share of `b` found inside `a`.
        inliers: Keypoint matches that agreed.
    """

    a: str
    b: str
    reason: str
    covered_a: float = 0.0
    covered_b: float = 0.0
    inliers: int = 0


@dataclass
class DuplicateReport:
    """The result of `engine.ImageSearchEngine.find_duplicates` (also printed and written by the CLI's `duplicates`).

    Attributes:
        collection: The collection searched.
        rows: Rows read.
        threshold: Cosine a near pair had to reach (None for `exact_only`).
        verified: Whether near pairs went through the geometric check.
        pairs: Every pair found (exact ones and, when verified, only the confirmed near ones).
        groups: Groups of copies, largest first.
        related: Files linked to a kept file without being removable copies of it (a shared region, a
            collage, a chain of checks), each with the reason.
        keep: The keeper policy used (`keeper.POLICIES`).
        checks_on_demand: Pairs checked while grouping (a file against its group's kept file).
        rejected: Near candidates the check did not confirm.
        unreadable: Files that could not be read for the check, with the reason (never fatal).
        nearest: Each row's best cosine to another row, for choosing a threshold.
        searched: Rows whose vectors were searched (all of them in a full run).
        incremental: Whether the run started from the last run's state and searched only what changed.
        changed: Rows added, changed, moved or removed since that run (incremental runs).
        checks_reused: Near pairs whose keypoint check was kept from that run (neither file changed).
        seconds: Wall time.
        created: When the search finished (POSIX seconds; None for a report not made by a search): a file
            modified after it is not acted on (`moving`).
    """

    collection: str
    rows: int = 0
    threshold: float | None = None
    verified: bool = False
    pairs: list[DuplicatePair] = field(default_factory=list)
    groups: list[DuplicateGroup] = field(default_factory=list)
    related: list[RelatedPair] = field(default_factory=list)
    keep: str = "original"
    checks_on_demand: int = 0
    rejected: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)
    nearest: list[float] = field(default_factory=list, repr=False)
    searched: int = 0
    incremental: bool = False
    changed: int = 0
    checks_reused: int = 0
    seconds: float = 0.0
    created: float | None = None

    @property
    def removable(self) -> list[str]:
        """Every file one could remove, keeping one file of each group."""
        return sorted(path for group in self.groups for path in group.removable)

    def duplicates_map(self) -> dict[str, list[str]]:
        """imagededup's shape: each file in a group, mapped to the other files of its group."""
        mapping: dict[str, list[str]] = {}
        for group in self.groups:
            for path in group.files:
                mapping[path] = [other for other in group.files if other != path]
        return dict(sorted(mapping.items()))

    def as_dict(self) -> dict[str, Any]:
        """The report as plain JSON-ready data; `duplicates` holds imagededup's `{file: [duplicates]}`."""
        return {
            "collection": self.collection,
            "rows": self.rows,
            "threshold": self.threshold,
            "verified": self.verified,
            "keep": self.keep,
            "groups": [vars(group) for group in self.groups],
            "pairs": [vars(pair) for pair in self.pairs],
            "duplicates": self.duplicates_map(),
            "removable": self.removable,
            "related": [vars(pair) for pair in self.related],
            "rejected_candidates": self.rejected,
            "unreadable": self.unreadable,
            "searched": self.searched,
            "incremental": self.incremental,
            "changed": self.changed,
            "checks_reused": self.checks_reused,
            "checks_on_demand": self.checks_on_demand,
            "seconds": round(self.seconds, 3),
        }

    def save(self, path: str | os.PathLike) -> Path:
        """Write the report as JSON (`as_dict` and the time it was made), atomically."""
        import datetime as dt
        import json

        target = Path(path)
        made = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        with replaced_atomically(target) as temporary:
            temporary.write_text(json.dumps({"created": made, **self.as_dict()}, indent=1), encoding="utf-8")
        return target

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write the pairs as CSV: `a, b, cosine, kind, verified, inliers`."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["a", "b", "cosine", "kind", "verified", "inliers"])
            for pair in self.pairs:
                verified = "" if pair.verified is None else pair.verified
                writer.writerow([pair.a, pair.b, f"{pair.cosine:.6f}", pair.kind, verified, pair.inliers])
        return target

    def __str__(self) -> str:
        exact = sum(group.exact for group in self.groups)
        how = "exact copies only" if self.threshold is None else f"cosine >= {self.threshold:g}"
        check = ", checked by keypoints" if self.verified else (", not checked" if self.threshold is not None else "")
        lines = [
            f"{self.collection}: {len(self.groups)} groups of copies ({exact} exact) among {self.rows} images "
            f"({how}{check}); {len(self.removable)} files could be removed, keeping one a group ({self.seconds:.1f} s)"
        ]
        if self.incremental:
            lines.append(
                f"incremental: {self.changed} rows changed since the last search; {self.searched} searched again, "
                f"{self.checks_reused} checks kept"
            )
        if self.rejected:
            lines.append(f"{self.rejected} look-alike pairs were not copies (the keypoint check rejected them)")
        for group in self.groups:
            lines.append(f"keep {group.keeper}" + (f"  ({group.keeper_reason})" if group.keeper_reason else ""))
            lines += [f"     {path}" for path in group.removable]
        if self.related:
            lines.append(f"{len(self.related)} files are related to a kept file but not removable copies of it:")
            lines += [f"  {pair.a} ~ {pair.b}: {pair.reason}" for pair in self.related]
        lines += [f"unreadable: {path}: {reason}" for path, reason in sorted(self.unreadable.items())]
        return "\n".join(lines)
