"""Checking that two images are copies of each other: keypoints matched, a geometric fit, then the pixels compared.

Vectors alone cannot tell an edited copy from a photo that merely looks alike, and keypoints alone
cannot tell a copy from a picture that shares a region with another (a collage, a side-by-side, a
photo pasted into a screenshot). The check has three steps, on greyscale images whose longest side
is `SIDE` px:

1. **Keypoints**: ORB keypoints of both images, cross-checked matches, and a similarity transform
   (rotation, uniform scale, shift: `cv2.estimateAffinePartial2D` with RANSAC). Enough matches
   (`MIN_INLIERS`, and `MIN_INLIER_SHARE` of them) must agree with one plausible transform (scale
   `MIN_SCALE` to `1 / MIN_SCALE`, rotation at most `MAX_ROTATION` degrees). ORB is not
   mirror-invariant, so the second image is also matched mirrored, and each orientation is judged
   on its own.
2. **Coverage**: with that transform each image is laid over the other and compared cell by cell
   (a `GRID` x `GRID` grid, normalised cross-correlation after one brightness and contrast fit, flat
   cells by their mean, and so a cell flat in one image and only faint in the other). `covered_a` is
   the share of the first image's cells found in place in the second; `covered_b` the reverse. An
   edited copy cropped from a photo is covered in full by it; a collage of two photos, a photo beside
   another, a photo inside a screenshot are only partly.
3. **Same picture**: the pair is a copy when one image is nearly all (`CONTAINED`) found in the
   other or blank fill (a border, a turned copy's corners: flat and outside the other), and the
   other image is found at least `OVERLAP` in it (it is not a small part of a larger picture). A
   pair whose keypoints agree but whose coverage does not is `related`: reported, never a copy.

The constants were chosen on the committed samples and their edited copies, collages, side-by-sides,
padded and pasted copies (`benchmarks/duplicates.py`; the tables are in `benchmarks/results/`;
`FAINT_DEVIATION` on `duplicates-efficientnet-composites.md`).

Needs OpenCV (`pip install 'milvus-image-similarity[duplicates]'`: the headless wheel).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from utilities.errors import ImageLoadError, ImageSearchError

SIDE = 320
"""Longest side, in pixels, of the greyscale images compared (decoded at that size or more, then reduced)."""

FEATURES = 1500
"""ORB keypoints looked for in each image."""

MIN_INLIERS = 16
"""Matches that must agree with one plausible transform for a pair to be checked further."""

MIN_SCALE = 1 / 3
"""Smallest scale of a plausible transform (and 1 / MIN_SCALE the largest)."""

MAX_ROTATION = 20.0
"""Largest rotation of a plausible transform, in degrees."""

MIN_INLIER_SHARE = 0.4
"""Share of the cross-checked matches that must agree with that transform."""

REPROJECTION_PIXELS = 4.0
"""How far (at `SIDE` px) a match may land from where the transform puts it, to agree with it."""

GRID = 12
"""Cells a side of the grid on which two images laid over each other are compared (at most)."""

MIN_GRID = 4
"""Cells a side at least, however small the image."""

CELL_PIXELS = 24
"""Smallest side of a cell, in pixels: a smaller image gets fewer cells (a correlation over a dozen
blurred, re-encoded pixels says little)."""

CELL_CORRELATION = 0.5
"""Normalised cross-correlation at which a textured cell counts as found in the other image."""

FLAT_DEVIATION = 6.0
"""Grey-level standard deviation under which a cell is flat (compared by its mean instead)."""

FLAT_DIFFERENCE = 16.0
"""Largest difference of means, in grey levels, at which two flat cells match."""

FAINT_DEVIATION = 12.0
"""Grey-level standard deviation under which a cell is compared by its mean when the other image's cell
is flat (a wall at 5.9 in one image and 6.1 in the other is the same wall)."""

BLANK_DEVIATION = 2.0
"""Grey-level standard deviation (9 x 9 pixels) under which a region is blank fill: a border, letterboxing,
a turned copy's corners (a sky or a wall, flat to the eye, varies more)."""

MAX_FILL = 0.35
"""Most of an image that blank fill may make up and the image still count as a copy (a photo pasted
on a larger blank canvas is not one)."""

FILL_LEVELS = 3
"""Grey levels around the commonest one within which blank pixels outside the other image are fill."""

MIN_CELL_PIXELS = 64
"""Pixels of a cell that must lie inside the other image for the cell to be compared."""

EDGE_PIXELS = 8
"""Pixels just outside the other image left out of both shares (where a border meets the picture)."""

CONTAINED = 0.85
"""Share of the better-covered image that must be found in the other for a pair to be copies."""

OVERLAP = 0.6
"""Share of the other image that must be found in the first (a part of a larger picture is no copy)."""


@dataclass(frozen=True)
class Verdict:
    """What the check found for one pair.

    Attributes:
        verified: The two are copies of one picture (see the module's notes).
        inliers: Matches that agree with the transform of the orientation judged.
        matches: Cross-checked matches in that orientation.
        mirrored: That orientation has the second image mirrored.
        covered_a: Share of the first image found in place in the second (0 to 1).
        covered_b: Share of the second image found in place in the first.
        related: The keypoints agree but the coverage does not: the two share a region only.
        error: Why the pair could not be checked (a file missing or not decodable), else "".
        error_path: The file that could not be read, else "".
        fill_a: Share of the first image outside the second and flat (a border, a rotated copy's
            corners): nothing the second lacks (-1 when not measured).
        fill_b: The same for the second image.
    """

    verified: bool
    inliers: int = 0
    matches: int = 0
    mirrored: bool = False
    covered_a: float = 0.0
    covered_b: float = 0.0
    related: bool = False
    error: str = ""
    error_path: str = ""
    fill_a: float = -1.0
    fill_b: float = -1.0

    def lost(self, first: bool) -> float:
        """Share of the first image (or, with False, the second) that the other lacks: neither found in
        it nor a flat fill outside it (-1 when the fills were not measured, e.g. a check kept from a run)."""
        fill = self.fill_a if first else self.fill_b
        if fill < 0:
            return -1.0
        return max(0.0, 1.0 - (self.covered_a if first else self.covered_b) - fill)

    def contains(self, first_in_second: bool) -> bool:
        """Whether the first image (or, with False, the second) is nearly all found in the other or blank
        fill (a border, a turned copy's corners: no content)."""
        covered, fill = (self.covered_a, self.fill_a) if first_in_second else (self.covered_b, self.fill_b)
        return contained(covered, fill)


def contained(covered: float, fill: float) -> bool:
    """Whether an image with `covered` of it found in another and `fill` blank fill outside it is nearly
    all in the other (`CONTAINED`): the fill counts up to `MAX_FILL` (an unmeasured fill, -1, as none).

    Example:
        >>> contained(0.9, 0.0), contained(0.6, 0.3), contained(0.4, 0.9), contained(0.8, -1.0)
        (True, True, False, False)
    """
    return covered + min(max(fill, 0.0), MAX_FILL) >= CONTAINED


def _cv2() -> Any:
    try:
        import cv2
    except ImportError as error:
        raise ImageSearchError(
            f"checking duplicates needs OpenCV ({error}): pip install 'milvus-image-similarity[duplicates]' "
            "(or opencv-python-headless), or skip the check with --no-verify"
        ) from error
    return cv2


def require_opencv() -> None:
    """Raise a clear `ImageSearchError` now, before any work, if OpenCV cannot be imported."""
    _cv2()


def grey(path: str | os.PathLike, side: int = SIDE) -> np.ndarray:
    """The image as uint8 greyscale, its longest side `side` px (smaller images as they are).

    JPEGs are decoded reduced, to no less than `side` px on their shorter side, then resized.

    Raises:
        ImageLoadError: As `images.decoding.load_image`.
    """
    from PIL import Image

    from utilities.images.decoding import load_image

    image = load_image(path, draft_size=side).convert("L")
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


@dataclass(frozen=True)
class _Fit:
    """The transform found between two keypoint sets: inliers, matches and the 2 x 3 matrix (None if none)."""

    inliers: int
    matches: int
    transform: np.ndarray | None = None
    source: np.ndarray | None = None
    target: np.ndarray | None = None

    def overlay(self, cv2: Any) -> np.ndarray | None:
        """The transform to lay the images over each other: a full affine fitted to the inliers (a copy
        squeezed in one direction lines up), or the similarity itself when that fit fails."""
        if self.transform is None or self.source is None or self.target is None or len(self.source) < 6:
            return self.transform
        affine, _ = cv2.estimateAffine2D(
            self.source, self.target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PIXELS
        )
        return self.transform if affine is None else affine


def _fit(cv2: Any, first: tuple[Any, Any], second: tuple[Any, Any]) -> _Fit:
    """The best similarity transform from `first`'s keypoints to `second`'s, if plausible."""
    (points_a, descriptors_a), (points_b, descriptors_b) = first, second
    if descriptors_a is None or descriptors_b is None or len(points_a) < 3 or len(points_b) < 3:
        return _Fit(0, 0)
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(descriptors_a, descriptors_b)
    if len(matches) < 3:
        return _Fit(0, len(matches))
    source = np.float32([points_a[m.queryIdx].pt for m in matches])
    target = np.float32([points_b[m.trainIdx].pt for m in matches])
    cv2.setRNGSeed(0)  # RANSAC samples at random: the same pair gets the same verdict in every run
    transform, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PIXELS
    )
    if transform is None or mask is None:
        return _Fit(0, len(matches))
    scale = math.hypot(transform[0, 0], transform[1, 0])
    rotation = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    if not (MIN_SCALE <= scale <= 1 / MIN_SCALE and abs(rotation) <= MAX_ROTATION):
        return _Fit(0, len(matches))
    agreeing = mask.ravel().astype(bool)
    return _Fit(int(agreeing.sum()), len(matches), transform, source[agreeing], target[agreeing])


def coverage(cv2: Any, image: np.ndarray, other: np.ndarray, transform: np.ndarray) -> tuple[float, float]:
    """Shares of `image`'s area found in place in `other`, and lying outside it but flat (a fill).

    `transform` maps `image` into `other`, which is warped into `image`'s frame; after one linear
    fit of the grey levels (a brightened or contrasted copy matches), each cell of a `GRID` x `GRID`
    grid that lies mostly inside `other` is compared: textured cells by normalised cross-correlation,
    flat ones by their means; the pixels inside `other` of the cells that match are the area found.
    Flat pixels where `other` shows something else (a turned copy's corners inside the original)
    are fill too, and left out of their cell's comparison.
    Pixels outside `other` in a flat neighbourhood (a border, letterboxing, a turned copy's corners)
    hold nothing `other` lacks: they are the fill. Pixels within `EDGE_PIXELS` of `other` count for
    neither (where a border meets the picture, a neighbourhood is never flat).
    """
    height, width = image.shape
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    blurred = cv2.GaussianBlur(other, (5, 5), 0)  # compare structure, not re-encoding noise
    laid = cv2.warpAffine(blurred, transform, (width, height), flags=flags).astype(np.float32)
    inside = cv2.warpAffine(np.ones_like(other), transform, (width, height), flags=flags) > 0
    mine = image.astype(np.float32)
    if inside.sum() < 16:
        return 0.0, 0.0
    slope, offset = np.polyfit(laid[inside], mine[inside], 1) if laid[inside].std() > 0 else (1.0, 0.0)
    mean = cv2.blur(mine, (9, 9))
    spread = np.sqrt(np.maximum(cv2.blur(mine * mine, (9, 9)) - mean * mean, 0))
    laid = laid * slope + offset
    mine = cv2.GaussianBlur(mine, (5, 5), 0)
    near_edge = (cv2.dilate(inside.astype(np.uint8), np.ones((2 * EDGE_PIXELS + 1,) * 2, np.uint8)) > 0) & ~inside
    fill = _uniform_fill(mine[~inside & ~near_edge & (spread < BLANK_DEVIATION)])
    counted = max(1, mine.size - int(near_edge.sum()))
    cells = max(MIN_GRID, min(GRID, min(height, width) // CELL_PIXELS))  # small images: fewer, larger cells
    rows = np.linspace(0, height, cells + 1).astype(int)
    columns = np.linspace(0, width, cells + 1).astype(int)
    flat = spread < FLAT_DEVIATION
    laid_mean = cv2.blur(laid, (9, 9))
    flat_laid = np.sqrt(np.maximum(cv2.blur(laid * laid, (9, 9)) - laid_mean * laid_mean, 0)) < FLAT_DEVIATION
    found = 0
    for top, bottom in zip(rows[:-1], rows[1:], strict=True):
        for left, right in zip(columns[:-1], columns[1:], strict=True):
            within = inside[top:bottom, left:right]
            if within.sum() < MIN_CELL_PIXELS:
                continue
            pixels, over = mine[top:bottom, left:right][within], laid[top:bottom, left:right][within]
            blank = (  # blank here where the other shows something: a turned copy's corner
                flat[top:bottom, left:right][within]
                & ~flat_laid[top:bottom, left:right][within]
                & (np.abs(pixels - over) > FLAT_DIFFERENCE)
            )
            fill += float(blank.sum())
            rest = ~blank
            if rest.sum() >= MIN_CELL_PIXELS and _cell_matches(pixels[rest], over[rest]):
                found += int(rest.sum())
    return found / counted, fill / counted


def _uniform_fill(candidates: np.ndarray) -> float:
    """How many of the blank pixels outside the other image have one colour (within `FILL_LEVELS` of
    the commonest): a border or letterboxing has one; a clear sky, flat to the eye, drifts."""
    if candidates.size == 0:
        return 0.0
    levels = np.clip(np.round(candidates), 0, 255).astype(np.int64)
    commonest = int(np.bincount(levels, minlength=256).argmax())
    return float((np.abs(levels - commonest) <= FILL_LEVELS).sum())


def _cell_matches(mine: np.ndarray, laid: np.ndarray) -> bool:
    """Whether one cell's pixels and the other image's pixels laid over them show the same thing: by
    correlation when both are textured, by their means when one is flat and the other at most faint.

    Example:
        >>> wall = np.tile([100.0, 110.0], 50)  # standard deviation 5
        >>> _cell_matches(wall, wall * 1.4 - 44), _cell_matches(wall, wall * 4 - 315)  # deviation 7, 20
        (True, False)
    """
    deviation_mine, deviation_laid = float(mine.std()), float(laid.std())
    if deviation_mine < FLAT_DEVIATION or deviation_laid < FLAT_DEVIATION:
        faint = max(deviation_mine, deviation_laid) < FAINT_DEVIATION
        return faint and abs(float(mine.mean()) - float(laid.mean())) <= FLAT_DIFFERENCE
    correlation = float(((mine - mine.mean()) * (laid - laid.mean())).mean()) / (deviation_mine * deviation_laid)
    return correlation >= CELL_CORRELATION


def _stamp(path: str) -> tuple[int, int] | None:
    """The file's `(size, mtime_ns)`, None when it cannot be read: a cache key that a changed file misses."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_size, status.st_mtime_ns


def grey_or_error(path: str) -> np.ndarray | str:
    """`grey(path)`, or why it cannot be read (`"path\\0reason"`), cached by path, size and time."""
    return _grey_of(path, _stamp(path))


@functools.lru_cache(maxsize=64)
def _grey_of(path: str, stamp: tuple[int, int] | None) -> np.ndarray | str:
    """`grey_or_error`, cached by path and `(size, mtime_ns)` (a file is in several pairs, and a worker
    gets the pairs sorted by their first file; a file changed meanwhile is read again)."""
    try:
        return grey(path)
    except ImageLoadError as error:
        return f"{error.path}\0{error.reason}"


def _features(path: str) -> tuple[np.ndarray, Any, Any] | str:
    """The greyscale image and ORB keypoints of it and of its mirror image, or why it cannot be read."""
    return _features_of(path, _stamp(path))


@functools.lru_cache(maxsize=64)
def _features_of(path: str, stamp: tuple[int, int] | None) -> tuple[np.ndarray, Any, Any] | str:
    """`_features`, cached like `grey_or_error`."""
    cv2 = _cv2()
    image = _grey_of(path, stamp)
    if isinstance(image, str):
        return image
    orb = cv2.ORB_create(nfeatures=FEATURES)
    mirrored = np.ascontiguousarray(image[:, ::-1])
    return image, orb.detectAndCompute(image, None), orb.detectAndCompute(mirrored, None)


def compare(path_a: str, path_b: str) -> Verdict:
    """Whether the images at `path_a` and `path_b` are copies of each other (see the module's notes).

    A file that cannot be read gives an unverified `Verdict` with its `error`, never an exception.
    """
    cv2 = _cv2()
    first, second = _features(path_a), _features(path_b)
    for found in (first, second):
        if isinstance(found, str):
            path, _, reason = found.partition("\0")
            return Verdict(False, error=reason, error_path=path)
    return judge(cv2, first, second)  # type: ignore[arg-type]


def judge(cv2: Any, first: tuple[np.ndarray, Any, Any], second: tuple[np.ndarray, Any, Any]) -> Verdict:
    """The verdict on two images' `_features`: each orientation judged, the best one kept."""
    best = Verdict(False)
    for mirrored in (False, True):
        fit = _fit(cv2, first[1], second[2] if mirrored else second[1])
        verdict = Verdict(False, fit.inliers, fit.matches, mirrored)
        if fit.transform is not None and is_copy(fit.inliers, fit.matches):
            other = np.ascontiguousarray(second[0][:, ::-1]) if mirrored else second[0]
            overlay = fit.overlay(cv2)
            inverse = cv2.invertAffineTransform(overlay)
            covered_a, fill_a = coverage(cv2, first[0], other, overlay)
            covered_b, fill_b = coverage(cv2, other, first[0], inverse)
            same = same_picture(covered_a, covered_b, fill_a, fill_b)
            verdict = Verdict(
                same,
                fit.inliers,
                fit.matches,
                mirrored,
                round(covered_a, 3),
                round(covered_b, 3),
                related=not same,
                fill_a=round(fill_a, 3),
                fill_b=round(fill_b, 3),
            )
        if _rank(verdict) > _rank(best):
            best = verdict
    return best


def _rank(verdict: Verdict) -> tuple[bool, bool, int]:
    """Orders verdicts: a copy first, then a related pair, then by inliers."""
    return verdict.verified, verdict.related, verdict.inliers


def is_copy(inliers: int, matches: int) -> bool:
    """The keypoint rule: at least `MIN_INLIERS` inliers, and at least `MIN_INLIER_SHARE` of the matches.

    Example:
        >>> is_copy(40, 60), is_copy(40, 300), is_copy(12, 14)
        (True, False, False)
    """
    return inliers >= MIN_INLIERS and inliers >= MIN_INLIER_SHARE * matches


def same_picture(covered_a: float, covered_b: float, fill_a: float = 0.0, fill_b: float = 0.0) -> bool:
    """The coverage rule: one image nearly all in the other or blank fill (`CONTAINED`), and the other
    found at least `OVERLAP` in the first (it is not a small part of a larger picture).

    Example:
        >>> same_picture(1.0, 0.7), same_picture(1.0, 0.5), same_picture(0.6, 0.6), same_picture(0.7, 1.0, 0.3)
        (True, False, False, True)
    """
    return (contained(covered_a, fill_a) and covered_b >= OVERLAP) or (
        contained(covered_b, fill_b) and covered_a >= OVERLAP
    )


def check_rule() -> str:
    """The check's settings in one string: a saved verdict is reused only under the same rule."""
    return (
        f"orb {FEATURES} at {SIDE} px; inliers >= {MIN_INLIERS} and >= {MIN_INLIER_SHARE} of matches, "
        "either orientation; "
        f"scale {MIN_SCALE:.3f}-{1 / MIN_SCALE:.3f}, rotation <= {MAX_ROTATION}, {REPROJECTION_PIXELS} px; "
        f"grid {MIN_GRID}-{GRID} ({CELL_PIXELS} px cells, {MIN_CELL_PIXELS} px inside), ncc {CELL_CORRELATION}, "
        f"flat {FLAT_DEVIATION}/{FLAT_DIFFERENCE} (faint {FAINT_DEVIATION}), "
        f"blank {BLANK_DEVIATION} one colour +-{FILL_LEVELS}, blurred 5; "
        f"contained {CONTAINED} (fill at most {MAX_FILL}), overlap {OVERLAP}"
    )


def compare_pairs(pairs: list[tuple[str, str]]) -> list[Verdict]:
    """`compare` for each pair (what one worker process runs)."""
    return [compare(a, b) for a, b in pairs]
