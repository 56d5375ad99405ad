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
2. **Coverage** (`overlay.coverage`): with that transform each image is laid over the other and
   compared cell by cell. `covered_a` is the share of the first image's cells found in place in the
   second; `covered_b` the reverse. An edited copy cropped from a photo is covered in full by it; a
   collage of two photos, a photo beside another, a photo inside a screenshot are only partly.
3. **Same picture**: the pair is a copy when one image is nearly all (`CONTAINED`) found in the
   other or blank fill (a border, a turned copy's corners: flat and outside the other), and the
   other image is found at least `OVERLAP` in it (it is not a small part of a larger picture). A
   pair whose keypoints agree but whose coverage does not is `related`: reported, never a copy.

This module holds steps 1 and 3 and the images they read (`grey_or_error`, cached); `overlay` holds
step 2. `finder` runs `compare_pairs` in worker processes; `grouping` and `keeper` read the `Verdict`s.

The constants were chosen on the committed samples and their edited copies, collages, side-by-sides,
padded and pasted copies (`benchmarks/duplicates.py`; the tables are in `benchmarks/results/`).

Needs OpenCV (`pip install 'milvus-image-similarity[duplicates]'`: the headless wheel).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from utilities.duplicates.overlay import (
    BLANK_DEVIATION,
    CELL_CORRELATION,
    CELL_PIXELS,
    FAINT_DEVIATION,
    FILL_LEVELS,
    FLAT_DEVIATION,
    FLAT_DIFFERENCE,
    GRID,
    MIN_CELL_PIXELS,
    MIN_GRID,
    coverage,
)
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

MAX_FILL = 0.35
"""Most of an image that blank fill may make up and the image still count as a copy (a photo pasted
on a larger blank canvas is not one)."""

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
