"""What an audit found: four lists, each sorted most suspicious first, with the cut each was made at.

`AuditReport.as_dict()` is what `python -m utilities audit --json` prints; `write_csv` writes every
item of every list to one table. `top` limits what is printed, never what was computed.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from utilities.atomic import replaced_atomically

LISTS = ("leaks", "label_errors", "outliers", "quality")
"""The report's lists, in the order they are printed."""

CSV_COLUMNS = ("list", "path", "other", "kind", "cosine", "verified", "folder", "suggested", "score", "issues")
"""Columns of `AuditReport.write_csv`: the list an item is in, then the fields of every list's items."""

SHOWN = 10
"""Items of each list printed as text when no `top` is given."""


@dataclass(frozen=True)
class Leak:
    """Two copies of one picture in different splits.

    Attributes:
        a: The file in the split whose name sorts first (`test` before `train`).
        b: The other file.
        kind: `"exact"` (the same bytes) or `"near"` (an edited copy).
        cosine: Cosine of the two stored vectors (1.0 for exact copies).
        verified: True when identical bytes or the keypoint check confirm the copy; None when unchecked.
    """

    a: str
    b: str
    kind: str
    cosine: float
    verified: bool | None


@dataclass(frozen=True)
class LabelError:
    """An image whose class folder the stored vectors disagree with.

    Attributes:
        path: The file.
        folder: The class it is filed under.
        suggested: The class the data says (its nearest rows' majority, or the model's).
        score: 1 minus the out-of-fold probability of `folder` (1: the folder is unlikely).
    """

    path: str
    folder: str
    suggested: str
    score: float


@dataclass(frozen=True)
class Outlier:
    """An image far from every class.

    Attributes:
        path: The file.
        score: 1 minus its best cosine to a class centroid.
    """

    path: str
    score: float


@dataclass(frozen=True)
class QualityIssue:
    """An image with pixel-level problems.

    Attributes:
        path: The file.
        issues: `dark`, `light`, `blurry`, `low_information`, `tiny`, `odd_aspect` (those it has).
        scores: Its measures (`quality.QualityScores.as_dict`).
        score: How far past its threshold its worst issue is (0 to 1).
    """

    path: str
    issues: list[str]
    scores: dict[str, float]
    score: float


@dataclass
class AuditReport:
    """The result of `auditor.audit_collection`.

    Attributes:
        collection: The collection audited.
        rows: Rows read.
        root: The folder the splits and classes were read under.
        splits: Rows per split (empty for a `<class>/...` layout).
        classes: Number of class folders.
        leaks: Copies across splits, exact first, then near by cosine.
        label_errors: Images in the wrong class folder, most unlikely folder first.
        outliers: Images far from every class, farthest first.
        quality: Images with pixel-level issues, worst first.
        cuts: For each list, the threshold or rule it was cut at, and counts of what was left out.
        unreadable: Files that could not be read (for the keypoint check or the pixel measures), with the reason.
        notes: Checks that could not run, and why.
        seconds: Wall time.
        top: Items of each list to print (None: all in `as_dict`, `SHOWN` as text); nothing else is cut by it.
    """

    collection: str
    rows: int = 0
    root: str = ""
    splits: dict[str, int] = field(default_factory=dict)
    classes: int = 0
    leaks: list[Leak] = field(default_factory=list)
    label_errors: list[LabelError] = field(default_factory=list)
    outliers: list[Outlier] = field(default_factory=list)
    quality: list[QualityIssue] = field(default_factory=list)
    cuts: dict[str, dict[str, Any]] = field(default_factory=dict)
    unreadable: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    top: int | None = None

    def items(self, name: str) -> list[Any]:
        """The list called `name` (one of `LISTS`)."""
        return getattr(self, name)

    def as_dict(self, top: int | None = None) -> dict[str, Any]:
        """The report as JSON-ready data: the four lists (their first `top` items, default `self.top`),
        `cuts`, `counts` (each list's full length) and what the audit ran on."""
        top = self.top if top is None else top
        return {
            **{name: [asdict(item) for item in self.items(name)[:top]] for name in LISTS},
            "counts": {name: len(self.items(name)) for name in LISTS},
            "cuts": self.cuts,
            "collection": self.collection,
            "rows": self.rows,
            "root": self.root,
            "splits": self.splits,
            "classes": self.classes,
            "unreadable": self.unreadable,
            "notes": self.notes,
            "seconds": round(self.seconds, 3),
        }

    def write_csv(self, path: str | os.PathLike) -> Path:
        """Write every item of every list (never cut by `top`) to one CSV, atomically, with the columns
        `CSV_COLUMNS` (cells a list does not use left empty)."""
        target = Path(path)
        with replaced_atomically(target) as temporary, temporary.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, CSV_COLUMNS, restval="")
            writer.writeheader()
            writer.writerows(self._csv_rows())
        return target

    def _csv_rows(self) -> Iterator[dict[str, Any]]:
        """Each item as a row of `write_csv`."""
        for leak in self.leaks:
            verified = "" if leak.verified is None else leak.verified
            yield {
                "list": "leaks",
                "path": leak.a,
                "other": leak.b,
                "kind": leak.kind,
                "cosine": leak.cosine,
                "verified": verified,
            }
        for error in self.label_errors:
            yield {"list": "label_errors", **asdict(error)}
        for outlier in self.outliers:
            yield {"list": "outliers", **asdict(outlier)}
        for issue in self.quality:
            yield {"list": "quality", "path": issue.path, "score": issue.score, "issues": " ".join(issue.issues)}

    def __str__(self) -> str:
        shown = SHOWN if self.top is None else self.top
        split_text = ", ".join(f"{name} {rows}" for name, rows in sorted(self.splits.items())) or "no splits"
        lines = [
            f"{self.collection}: {self.rows} images under {self.root} ({split_text}; {self.classes} classes), "
            f"audited in {self.seconds:.1f} s"
        ]
        for name in LISTS:
            items = self.items(name)
            cut = self.cuts.get(name, {}).get("rule", "")
            lines.append(f"{name.replace('_', ' ')}: {len(items)}" + (f"  ({cut})" if cut else ""))
            lines += [f"  {_line(item)}" for item in items[:shown]]
            if len(items) > shown:
                lines.append(f"  ... and {len(items) - shown} more (--top N, --json or --csv FILE for them)")
        lines += [f"note: {note}" for note in self.notes]
        lines += [f"unreadable: {path}: {reason}" for path, reason in sorted(self.unreadable.items())]
        return "\n".join(lines)


def _line(item: Leak | LabelError | Outlier | QualityIssue) -> str:
    """One item as a line of text."""
    if isinstance(item, Leak):
        return f"{item.kind} {item.cosine:.3f}  {item.a}  =  {item.b}"
    if isinstance(item, LabelError):
        return f"{item.score:.3f}  {item.path}  (in {item.folder}, looks like {item.suggested})"
    if isinstance(item, Outlier):
        return f"{item.score:.3f}  {item.path}"
    return f"{', '.join(item.issues)}  {item.path}"
