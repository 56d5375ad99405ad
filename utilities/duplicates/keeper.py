"""Which file of a group of copies to keep: the original, found from the files themselves.

The default policy, `"original"`, ranks a group's files by what an edit cannot add back:

1. **preferred folder**: files under a `prefer` folder first (the master library over `Downloads/`);
2. **content**: a file lacking content most of the others have (a crop) is not the original; a flat
   fill (a border, letterboxing) is no content;
3. **no blank corners**: a file with 2 or more blank corners more than another, or with one fill colour
   at its 4 corners where a file of its size shows picture (a copy turned on its own canvas), is not
   the original;
4. **native pixels**: the most pixels of picture (a border that other copies lack does not count),
   unless the larger file is an enlargement of a smaller one (`is_enlargement`: it holds no detail the
   smaller one lacks);
5. **camera metadata**: a file with the camera's EXIF tags (make, model, time taken) over one without;
6. **JPEG generation**: of two aligned JPEGs of one size, one clearly re-encoded from the other (at a
   higher quality, so with more bytes) is not the original (`is_reencoded_from`);
7. **oldest** modification time, then **most bytes**, then the **shortest path**, then the first path.

`"largest"` keeps the most bytes (then the shortest path), `"oldest"` the oldest modification time.
Each choice comes with the step that decided it (`Choice.reason`).

This module holds the policies and the steps that compare a group's files pair by pair; the tests of
one file against another live beside it: `blank_fill` (steps 3 and 4: blank corners, borders),
`enlargement` (step 4), `reencoding` (step 6), and `full_size` (the files they decode, cached).
`grouping` calls `choose` for each group.

Measured on edited copies that include enlarged and re-encoded ones: `benchmarks/duplicates_keeper.py`
(`benchmarks/results/duplicates-keeper.md`); the margins below were read from that set's pairs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utilities.duplicates.blank_fill import blank_corners, corner_levels, filled_corners, picture_share
from utilities.duplicates.enlargement import is_enlargement
from utilities.duplicates.reencoding import is_reencoded_from
from utilities.duplicates.verification import Verdict
from utilities.records import ImageRecord

logger = logging.getLogger(__name__)

POLICIES = ("original", "largest", "oldest")
"""Keeper policies `choose` knows."""

SAME_EXTENT = 0.03
"""Relative difference of content extent (in one frame) under which two files show the same region."""

MOST_COMPARED = 12
"""Distinct files of one group the policy compares pair by pair; in a larger group, those with the most
pixels (then bytes) are the candidates."""

BORDER_FOUND = 0.5
"""Share of a file's flat edges that the check must find as blank fill outside another copy for all of
them to count as a border (the check leaves out a band where a border meets the picture: it finds 0.39 of
a padded copy's 0.43; outside a crop, it finds 0.10 of a white background's 0.25)."""

MORE_CONTENT = 0.04
"""Share of a picture (grid cells) by which one copy must hold more content than another to count as
holding more: a crop's original 0.10-0.31 more; two copies of the same content differ by up to 0.036
in 19 pairs of 20 (a cell of a 224 px photo is 0.012 of it)."""

CAMERA_TAGS = (271, 272, 36867)
"""EXIF Make, Model, DateTimeOriginal."""

PairCheck = Callable[[str, str], Verdict]
"""A keypoint check of two paths (first, second), as `verification.compare`."""


@dataclass(frozen=True)
class Choice:
    """The file kept in a group, and why.

    Attributes:
        record: The row kept.
        reason: The step of the policy that decided it, in words.
    """

    record: ImageRecord
    reason: str


@dataclass
class _Facts:
    """What the policy reads of one file, once."""

    record: ImageRecord
    pixels: int = 0
    camera: bool = False
    jpeg: bool = False
    picture_share: float = 1.0
    total: int = 0


def _facts(record: ImageRecord) -> _Facts:
    """Pixels, camera tags and format from the file's header (no decoding)."""
    from PIL import Image

    facts = _Facts(record)
    try:
        with Image.open(record.path) as image:
            facts.pixels = image.size[0] * image.size[1]
            facts.jpeg = image.format in ("JPEG", "MPO")
            exif = image.getexif()
            tags = set(exif) | set(exif.get_ifd(0x8769))
            facts.camera = any(tag in tags for tag in CAMERA_TAGS)
    except (OSError, ValueError, SyntaxError) as error:  # unreadable now: it ranks last on these steps
        logger.info("keeper: cannot read %s: %s", record.path, error)
    facts.picture_share = picture_share(record.path)
    return facts


def is_under(path: str, folders: Sequence[str | os.PathLike]) -> bool:
    """Whether `path` lies under one of `folders` (both resolved)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(folder).resolve()) for folder in folders)


def choose(
    records: Sequence[ImageRecord],
    check: PairCheck,
    policy: str = "original",
    prefer: Sequence[str | os.PathLike] = (),
) -> Choice:
    """The file to keep among `records` (copies of one picture), by `policy` (see the module's notes).

    Args:
        records: The group's rows (2 or more; one per distinct content is enough).
        check: The pair check (cached by the caller: the same pairs are asked again for removal).
        policy: One of `POLICIES`.
        prefer: Folders whose files are kept first.

    Raises:
        ValueError: Unknown `policy`, or no records.
    """
    if policy not in POLICIES:
        raise ValueError(f"unknown keeper policy {policy!r}: choose one of {', '.join(POLICIES)}")
    if not records:
        raise ValueError("choose needs at least one record")
    candidates = list(records)
    reasons: list[str] = []
    if prefer:
        preferred = [record for record in candidates if is_under(record.path, prefer)]
        if preferred and len(preferred) < len(candidates):
            candidates = preferred
            reasons.append("under a preferred folder")
    if policy == "largest":
        kept = min(candidates, key=lambda record: (-record.file_size, len(record.path), record.path))
        return Choice(kept, _said(reasons, "most bytes"))
    if policy == "oldest":
        kept = min(candidates, key=lambda record: (record.mtime_ns, len(record.path), record.path))
        return Choice(kept, _said(reasons, "oldest modification time"))
    return _original(candidates, check, reasons)


def _said(reasons: list[str], last: str) -> str:
    return ", then ".join([*reasons, last])


def _original(candidates: list[ImageRecord], check: PairCheck, reasons: list[str]) -> Choice:
    """The `"original"` policy on the candidates left after the preferred folders."""
    facts = [_facts(record) for record in candidates]
    if len(facts) > MOST_COMPARED:  # the steps compare pairs: keep the cost of a large cluster bounded
        facts = sorted(facts, key=lambda fact: (-fact.pixels, -fact.record.file_size, fact.record.path))
        facts = facts[:MOST_COMPARED]
        reasons.append(f"among the {MOST_COMPARED} with the most pixels")
    steps: list[tuple[str, Callable[[list[_Facts]], list[_Facts]]]] = [
        ("holds the others' content", lambda left: _not_inside_another(left, check)),
        ("no blank corners (a copy turned on its canvas)", _no_blank_corners),
        ("most pixels that are not an enlargement", lambda left: _native_pixels(left, check)),
        ("camera metadata", lambda left: [fact for fact in left if fact.camera] or left),
        ("not a JPEG saved again from another", _first_generation),
    ]
    for reason, step in steps:
        narrowed = step(facts)
        if len(narrowed) < len(facts):
            reasons.append(reason)
            facts = narrowed
        if len(facts) == 1:
            return Choice(facts[0].record, ", then ".join(reasons))
    kept = min(
        facts,
        key=lambda fact: (fact.record.mtime_ns, -fact.record.file_size, len(fact.record.path), fact.record.path),
    )
    reasons.append("oldest, then most bytes, then shortest path")
    return Choice(kept.record, ", then ".join(reasons))


def _not_inside_another(facts: list[_Facts], check: PairCheck) -> list[_Facts]:
    """The files not inside most of the others: of two copies, the one lacking content the other has
    (a crop, a copy turned a little and cut at its corners) is inside it, and is not the original. A
    flat fill (a border, letterboxing, the corners of a copy turned on a larger canvas) is no content.

    One pair's shares are noisy (a few grid cells of a small photo): a file drops out only when it
    lacks content against at least half of the files it was checked with. A crop lacks content
    against every copy of its original; an original that one noisy pair puts inside a copy stays.
    """
    inside, compared = [0] * len(facts), [0] * len(facts)
    for n, first in enumerate(facts):
        for m in range(n + 1, len(facts)):
            verdict = check(first.record.path, facts[m].record.path)
            if not verdict.verified:
                continue
            compared[n] += 1
            compared[m] += 1
            lost_first, lost_second = verdict.lost(True), verdict.lost(False)
            if lost_first + MORE_CONTENT < lost_second:
                inside[n] += 1
            elif lost_second + MORE_CONTENT < lost_first:
                inside[m] += 1
    return [fact for n, fact in enumerate(facts) if not inside[n] or 2 * inside[n] < compared[n]] or facts


def _no_blank_corners(facts: list[_Facts]) -> list[_Facts]:
    """Drop files with at least 2 more blank corners than another, or with `filled_corners` against a file
    of their size: copies turned on their canvas."""
    counts = [blank_corners(fact.record.path) for fact in facts]
    known = [count for count in counts if count >= 0]
    fewest = min(known, default=0)
    kept = [fact for fact, count in zip(facts, counts, strict=True) if len(known) < 2 or count < fewest + 2]
    patches = {id(fact): corner_levels(fact.record.path) for fact in kept}
    turned = {
        id(fact)
        for fact in kept
        for other in kept
        if other is not fact and filled_corners(patches[id(fact)], patches[id(other)])
    }
    return [fact for fact in kept if id(fact) not in turned] or kept or facts


def _borders(facts: list[_Facts], check: PairCheck) -> list[float]:
    """Share of each file that is a blank border: its flat edge rows and columns (`blank_fill.picture_share`) when
    the check found most of them (`BORDER_FOUND`) as blank fill outside another copy, else only the
    largest fill it found. A border added to a copy lies outside the others; a white or dark background
    that the other copies show too lies inside them, and is picture. Without measured fills (checks
    kept from a run), the flat edges alone."""
    fills: list[list[float]] = [[] for _ in facts]
    for n, first in enumerate(facts):
        for m in range(n + 1, len(facts)):
            verdict = check(first.record.path, facts[m].record.path)
            if verdict.verified:
                fills[n].append(verdict.fill_a)
                fills[m].append(verdict.fill_b)
    borders = []
    for fact, found in zip(facts, fills, strict=True):
        edges = 1.0 - fact.picture_share
        unshared = max(found) if found and min(found) >= 0 else edges
        borders.append(edges if unshared >= BORDER_FOUND * edges else unshared)
    return borders


def _native_pixels(facts: list[_Facts], check: PairCheck) -> list[_Facts]:
    """The files with the most pixels of picture (inside any blank border: `_borders`), after dropping
    those that are enlargements of a smaller one; of files with as many, those with the fewest pixels
    in all."""
    for fact, border in zip(facts, _borders(facts, check), strict=True):
        fact.pixels, fact.total = round(fact.pixels * (1.0 - border)), fact.pixels
    ordered = sorted(facts, key=lambda fact: -fact.pixels)
    enlarged: set[int] = set()
    for n, larger in enumerate(ordered):
        for smaller in ordered[n + 1 :]:
            if smaller.pixels <= 0 or larger.pixels <= smaller.pixels * (1 + SAME_EXTENT) ** 2:
                continue
            if check(larger.record.path, smaller.record.path).verified:
                factor = float(np.sqrt(larger.pixels / smaller.pixels))
                if is_enlargement(larger.record.path, smaller.record.path, factor):
                    enlarged.add(id(larger))
                    break
    left = [fact for fact in ordered if id(fact) not in enlarged] or ordered
    most = left[0].pixels
    left = [fact for fact in left if fact.pixels >= most / (1 + SAME_EXTENT) ** 2]
    fewest = min(fact.total for fact in left)
    return [fact for fact in left if fact.total <= fewest * (1 + SAME_EXTENT) ** 2]


def _first_generation(facts: list[_Facts]) -> list[_Facts]:
    """Drop JPEGs that are another one of the same size saved again."""
    saved_again: set[int] = set()
    for first in facts:
        for second in facts:
            if first is second or not (first.jpeg and second.jpeg) or id(second) in saved_again:
                continue
            if is_reencoded_from(first.record.path, second.record.path):
                saved_again.add(id(first))
                break
    return [fact for fact in facts if id(fact) not in saved_again] or facts
