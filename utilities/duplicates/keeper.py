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

Measured on edited copies that include enlarged and re-encoded ones: `benchmarks/duplicates_keeper.py`
(`benchmarks/results/duplicates-keeper.md`); the margins below were read from that set's pairs.
"""

from __future__ import annotations

import functools
import io
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utilities.duplicates.verification import Verdict, grey_or_error
from utilities.files import size_and_mtime
from utilities.records import ImageRecord

logger = logging.getLogger(__name__)

POLICIES = ("original", "largest", "oldest")
"""Keeper policies `choose` knows."""

SAME_EXTENT = 0.03
"""Relative difference of content extent (in one frame) under which two files show the same region."""

MOST_COMPARED = 12
"""Distinct files of one group the policy compares pair by pair; in a larger group, those with the most
pixels (then bytes) are the candidates."""

MORE_FILL = 0.04
"""Share of a picture by which one copy's blank fill (a border, letterboxing, a turned copy's corners)
must exceed another's for it to count as the edited one (the originals of crops measured up to 0.03)."""

CORNER = 0.015
"""Side of the corner patches `blank_corners` reads, as a share of the image's shorter side (a copy
turned by 2 degrees or more leaves a blank triangle that holds it)."""

BLANK_CORNER_DEVIATION = 3.0
"""Grey-level standard deviation under which a corner patch is blank."""

BLANK_CORNER_CONTRAST = 15.0
"""Difference of mean grey levels between a blank corner and the picture just inside it."""

FILLED_CORNER = 2
"""Side, in pixels, of the patch at each corner that `filled_corners` reads: a copy turned by a fraction
of a degree on its own canvas already has its fill there (on the benchmark's set, 275 of 408 pairs of a
turned copy and another file of its size were found, and 2 of 2,196 pairs without a turned copy)."""

ONE_FILL = 12.0
"""Largest spread of the 4 corner patches' mean grey levels for them to hold one fill colour (after JPEG)."""

BORDER_FOUND = 0.5
"""Share of a file's flat edges that the check must find as blank fill outside another copy for all of
them to count as a border (the check leaves out a band where a border meets the picture: it finds 0.39 of
a padded copy's 0.43; outside a crop, it finds 0.10 of a white background's 0.25)."""

MORE_CONTENT = 0.04
"""Share of a picture (grid cells) by which one copy must hold more content than another to count as
holding more: a crop's original 0.10-0.31 more; two copies of the same content differ by up to 0.036
in 19 pairs of 20 (a cell of a 224 px photo is 0.012 of it)."""

ANALYSIS_MAX_PIXELS = 16_000_000
"""Largest image the enlargement and re-encoding tests decode (bigger ones skip those steps)."""

ALIGNED_LEVELS = 8.0
"""Largest mean difference, in levels of 255, of two JPEGs laid over each other for them to be one picture
saved twice (JPEG quality 40 differs by about 3 to 6)."""

CLEARER_RETURN = 0.8
"""Largest ratio of the two directions' differences (`is_reencoded_from`) for the closer one to decide:
a JPEG saved again from another (at another quality, or mirrored) comes back under 0.4 as far as the
other way round in 9 pairs of 10, brightened or darkened under 0.66; a copy turned a little and its
original come back 0.94 to 1.07 as far in 8 pairs of 10, either way."""

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
    facts.picture_share = _picture_share(record.path)
    return facts


def is_under(path: str, folders: Sequence[str | os.PathLike]) -> bool:
    """Whether `path` lies under one of `folders` (both resolved)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(Path(folder).resolve()) for folder in folders)


def _grey(path: str) -> np.ndarray | None:
    """The full image in greyscale as float32 (None when it cannot be read or is too large)."""
    return _grey_of(path, size_and_mtime(path))


@functools.lru_cache(maxsize=8)
def _grey_of(path: str, stamp: tuple[int, int] | None) -> np.ndarray | None:
    from utilities.errors import ImageLoadError
    from utilities.images.decoding import load_image

    try:
        return np.asarray(load_image(path, max_pixels=ANALYSIS_MAX_PIXELS).convert("L"), dtype=np.float32)
    except ImageLoadError:
        return None


def _lost_detail(image: np.ndarray, factor: float) -> float:
    """Mean grey-level change when `image` is reduced by `factor` and enlarged back (bicubic)."""
    from PIL import Image

    height, width = image.shape
    picture = Image.fromarray(image.astype(np.uint8))
    small = picture.resize((max(1, round(width / factor)), max(1, round(height / factor))), Image.Resampling.BICUBIC)
    back = np.asarray(small.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
    return float(np.abs(image - back).mean())


def enlargement_limit(factor: float) -> float:
    """Detail ratio under which the larger of two files, `factor` times the other's side, is an enlargement.

    Measured on 36 photos enlarged 1.1-2x and saved at JPEG quality 60-95 against the same photos
    shrunk by the same factors: ratios of enlargements reached 0.68 at 1.1x, 0.61 at 1.3x, 0.35 at
    2x; of originals over shrunk copies they were at least 0.90, 0.71 and 0.56.
    """
    return max(0.35, 0.8 - 0.35 * (factor - 1.0))


def is_enlargement(larger: str, smaller: str, factor: float) -> bool:
    """Whether the file `larger` (sides `factor` times `smaller`'s) is `smaller`'s picture enlarged.

    An enlarged copy has no detail finer than its source's pixels: reduced by `factor` and enlarged
    back it changes much less than a photo at its own resolution does. The change of `larger`
    is compared with that of `smaller` under the same round trip (`enlargement_limit`).
    """
    big, small = _grey(larger), _grey(smaller)
    if big is None or small is None or factor < 1.05:
        return False
    own = _lost_detail(small, factor)
    return own > 0 and _lost_detail(big, factor) / own < enlargement_limit(factor)


def is_reencoded_from(copy: str, source: str) -> bool:
    """Whether the JPEG `copy` is the JPEG `source` decoded, perhaps mirrored or brightened, and saved again.

    Both must have one size. Saving `source` (laid over `copy`: mirrored if that fits better, its
    levels fitted) again with `copy`'s quantisation tables and sampling gives back nearly `copy`
    itself when `copy` was made that way; saving `copy` the same way with `source`'s tables gives
    back `source` only when `source` was made from `copy`. The direction that comes back clearly
    closer (`CLEARER_RETURN`) wins; pairs that are not one picture pixel for pixel (`ALIGNED_LEVELS`)
    say nothing, nor do two copies edited apart, which come back about as far either way. Headers
    are compared first: files of other sizes, or with the same tables, are never decoded.
    """
    first, second = _jpeg_header(copy), _jpeg_header(source)
    if first is None or second is None or first.size != second.size:
        return False
    if first.tables == second.tables and first.sampling == second.sampling:
        return False
    copy_pixels, source_pixels = _rgb(copy), _rgb(source)
    if copy_pixels is None or source_pixels is None or copy_pixels.shape != source_pixels.shape:
        return False
    laid_source, mirrored = _laid_over(source_pixels, copy_pixels)
    laid_copy, _ = _laid_over(copy_pixels, source_pixels, mirrored)
    if np.abs(laid_source - copy_pixels).mean() > ALIGNED_LEVELS:
        return False  # not one picture pixel for pixel (moved, cropped, edited): the test says nothing
    towards_copy = np.abs(_saved_again(laid_source, first) - copy_pixels).mean()
    towards_source = np.abs(_saved_again(laid_copy, second) - source_pixels).mean()
    return bool(towards_copy < CLEARER_RETURN * towards_source)


@dataclass(frozen=True)
class _JpegHeader:
    size: tuple[int, int]
    tables: dict[int, list[int]]
    sampling: int


def _jpeg_header(path: str) -> _JpegHeader | None:
    """A JPEG's size, quantisation tables and chroma sampling, from its header (None if not a readable JPEG)."""
    return _jpeg_header_of(path, size_and_mtime(path))


@functools.lru_cache(maxsize=256)
def _jpeg_header_of(path: str, stamp: tuple[int, int] | None) -> _JpegHeader | None:
    from PIL import Image, JpegImagePlugin

    try:
        with Image.open(path) as image:
            if image.format != "JPEG" or image.size[0] * image.size[1] > ANALYSIS_MAX_PIXELS:
                return None
            return _JpegHeader(image.size, dict(image.quantization), JpegImagePlugin.get_sampling(image))
    except (OSError, ValueError, SyntaxError):
        return None


def _rgb(path: str) -> np.ndarray | None:
    """The image's RGB pixels as float32 (cached for the few files a group compares)."""
    return _rgb_of(path, size_and_mtime(path))


@functools.lru_cache(maxsize=8)
def _rgb_of(path: str, stamp: tuple[int, int] | None) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError):
        return None


def _laid_over(moving: np.ndarray, fixed: np.ndarray, mirrored: bool | None = None) -> tuple[np.ndarray, bool]:
    """`moving` mirrored (when that fits `fixed` better, or as told) and its levels fitted to `fixed`'s."""
    options = (False, True) if mirrored is None else (mirrored,)
    best: tuple[float, np.ndarray, bool] | None = None
    for flip in options:
        laid = moving[:, ::-1] if flip else moving
        # levels clipped at 0 or 255 in either image (a brightened copy's highlights) tell nothing of the fit
        unclipped = (laid > 0) & (laid < 255) & (fixed > 0) & (fixed < 255)
        if 2 * unclipped.sum() < laid.size:
            unclipped = np.ones(laid.shape, dtype=bool)
        source, target = laid[unclipped], fixed[unclipped]
        spread = float(source.std())
        if spread > 0:
            slope = float(((source - source.mean()) * (target - target.mean())).mean()) / spread**2
            laid = np.clip((laid - source.mean()) * slope + target.mean(), 0, 255)
        error = float(np.abs(laid - fixed).mean())
        if best is None or error < best[0]:
            best = (error, laid, flip)
    assert best is not None
    return best[1], best[2]


def _saved_again(pixels: np.ndarray, like: _JpegHeader) -> np.ndarray:
    """`pixels` saved as JPEG with `like`'s tables and sampling, and decoded."""
    from PIL import Image

    buffer = io.BytesIO()
    options = {"qtables": like.tables} | ({"subsampling": like.sampling} if like.sampling >= 0 else {})
    Image.fromarray(np.round(pixels).astype(np.uint8)).save(buffer, "JPEG", **options)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded.convert("RGB"), dtype=np.float32)


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


def blank_corners(path: str) -> int:
    """How many of the image's 4 corners are blank and unlike the picture just inside them: what
    turning a copy on its own canvas leaves (-1 when the image cannot be read)."""
    found = grey_or_error(path)
    if isinstance(found, str):
        return -1
    image = found.astype(np.float32)
    height, width = image.shape
    side = max(3, round(CORNER * min(height, width)))
    if min(height, width) < 5 * side:
        return 0
    blank = 0
    for rows, columns in ((slice(0, side), slice(0, side)), (slice(0, side), slice(-side, None))) + (
        (slice(-side, None), slice(0, side)),
        (slice(-side, None), slice(-side, None)),
    ):
        inner_rows = slice(3 * side, 4 * side) if rows.start == 0 else slice(-4 * side, -3 * side)
        inner_columns = slice(3 * side, 4 * side) if columns.start == 0 else slice(-4 * side, -3 * side)
        corner, inner = image[rows, columns], image[inner_rows, inner_columns]
        blank += corner.std() < BLANK_CORNER_DEVIATION and abs(corner.mean() - inner.mean()) > BLANK_CORNER_CONTRAST
    return blank


def _no_blank_corners(facts: list[_Facts]) -> list[_Facts]:
    """Drop files with at least 2 more blank corners than another, or with `filled_corners` against a file
    of their size: copies turned on their canvas."""
    counts = [blank_corners(fact.record.path) for fact in facts]
    known = [count for count in counts if count >= 0]
    fewest = min(known, default=0)
    kept = [fact for fact, count in zip(facts, counts, strict=True) if len(known) < 2 or count < fewest + 2]
    patches = {id(fact): _corner_levels(fact.record.path) for fact in kept}
    turned = {
        id(fact)
        for fact in kept
        for other in kept
        if other is not fact and filled_corners(patches[id(fact)], patches[id(other)])
    }
    return [fact for fact in kept if id(fact) not in turned] or kept or facts


def _corner_levels(path: str) -> np.ndarray | None:
    """Mean grey levels of the `FILLED_CORNER` patches at the image's 4 corners, with its size (None when
    it cannot be read)."""
    image = _grey(path)
    if image is None:
        return None
    side = FILLED_CORNER
    levels = [
        image[rows, columns].mean()
        for rows in (slice(0, side), slice(-side, None))
        for columns in (slice(0, side), slice(-side, None))
    ]
    return np.array([*levels, *image.shape], dtype=np.float64)


def filled_corners(levels: np.ndarray | None, other: np.ndarray | None) -> bool:
    """Whether a file, of `other`'s size, shows one fill colour at its 4 corners where `other` shows
    picture (3 corners or more unlike it, and not one colour): a copy turned on its own canvas, even by
    a fraction of a degree (`_corner_levels` gives both)."""
    if levels is None or other is None or tuple(levels[4:]) != tuple(other[4:]):
        return False
    mine, theirs = levels[:4], other[:4]
    unlike = int((np.abs(mine - theirs) > BLANK_CORNER_CONTRAST).sum())
    return bool(np.ptp(mine) <= ONE_FILL and np.ptp(theirs) > ONE_FILL and unlike >= 3)


def _picture_share(path: str) -> float:
    """Share of the image inside its blank border: edge rows and columns that are flat (a border,
    letterboxing) are trimmed off, from each side in turn."""
    found = grey_or_error(path)
    if isinstance(found, str):
        return 1.0
    image = found.astype(np.float32)
    top, bottom, left, right = 0, image.shape[0], 0, image.shape[1]
    while bottom - top > 8 and image[top, left:right].std() < BLANK_CORNER_DEVIATION:
        top += 1
    while bottom - top > 8 and image[bottom - 1, left:right].std() < BLANK_CORNER_DEVIATION:
        bottom -= 1
    while right - left > 8 and image[top:bottom, left].std() < BLANK_CORNER_DEVIATION:
        left += 1
    while right - left > 8 and image[top:bottom, right - 1].std() < BLANK_CORNER_DEVIATION:
        right -= 1
    return (bottom - top) * (right - left) / image.size


def _borders(facts: list[_Facts], check: PairCheck) -> list[float]:
    """Share of each file that is a blank border: its flat edge rows and columns (`_picture_share`) when
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
