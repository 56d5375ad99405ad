"""Checking that two images are copies of each other: keypoints matched, then a geometric model fitted.

Vectors alone cannot tell an edited copy from a photo that merely looks alike (two photos of
the same kind of scene). A copy, cropped, resized, re-encoded, mirrored, brightened or turned
a little, still shows the same points in the same arrangement: ORB keypoints are found in both
images (greyscale, longest side `SIDE` px), cross-checked matches are kept, and a similarity
transform (rotation, uniform scale, shift: `cv2.estimateAffinePartial2D`) is fitted to them with
RANSAC. The pair is a copy when at least `MIN_INLIERS` matches agree with one plausible
transform, scaled by `MIN_SCALE` to `1 / MIN_SCALE` and turned by at most `MAX_ROTATION`
degrees (matches between unrelated photos agree, when they do, on arbitrary ones), and when those
are at least `MIN_INLIER_SHARE` of the cross-checked matches: in a copy most of the points
matched are the same points; two photos that merely share a part (a logo, a sign, the same
building seen again, a region pasted in) agree only there. Both orientations are tried: ORB's
descriptors are not mirror-invariant, so the second image is also matched mirrored.

Chosen on the committed samples and 3 edited copies of each (crop to 80-95 %, resize 0.6-1.3x,
JPEG quality 40-90, mirror, brightness +-20 %, rotation +-5 degrees): the 36 pairs of copies had
19 or more inliers, the 240 pairs of different photos 13 or fewer (at 256 px and 1,000
keypoints: 12 against 10).

The share was added after a larger set (2,000 Imagenette photos, 1,200 edited and 200 exact
copies: 3,200 images, EfficientNet-Lite0 vectors, 18,785 candidate pairs at cosine 0.6): the
inlier count alone passed 215 of the look-alike pairs at 0.7 (precision 0.846). The edited copies'
inliers were 0.68 or more of their matches; those look-alikes' a median 0.11 (99 % below 0.42).
With a share of 0.4: precision 0.998 at recall 0.983 at cosine 0.65
(`benchmarks/results/duplicates-efficientnet-3200-share.md`). Of the four look-alike pairs left at
0.6, two are shots of the same scene seconds apart (a puppy, a fisherman), which the set counts as
different photos, and two are edited copies of different photos matched on their black
rotation corners.

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
"""Longest side, in pixels, of the greyscale images compared."""

FEATURES = 1500
"""ORB keypoints looked for in each image."""

MIN_INLIERS = 16
"""Matches that must agree with one plausible transform for a pair to count as a copy."""

MIN_SCALE = 1 / 3
"""Smallest scale of a plausible transform (and 1 / MIN_SCALE the largest)."""

MAX_ROTATION = 20.0
"""Largest rotation of a plausible transform, in degrees."""

MIN_INLIER_SHARE = 0.4
"""Share of the cross-checked matches that must agree with that transform."""

REPROJECTION_PIXELS = 4.0
"""How far (at `SIDE` px) a match may land from where the transform puts it, to agree with it."""


@dataclass(frozen=True)
class Verdict:
    """What the geometric check found for one pair.

    Attributes:
        verified: The two are copies (enough matches, and enough of them, agree with one plausible
            transform).
        inliers: Matches that agree with the best plausible transform (of either orientation).
        matches: Cross-checked matches in that orientation.
        mirrored: The best transform was found with the second image mirrored.
        error: Why the pair could not be checked (a file missing or not decodable), else "".
    """

    verified: bool
    inliers: int = 0
    matches: int = 0
    mirrored: bool = False
    error: str = ""


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
    """The image as uint8 greyscale, its longest side at most `side` px (decoded in bounded memory).

    Raises:
        ImageLoadError: As `images.decoding.load_image`.
    """
    from PIL import Image

    from utilities.images.decoding import load_image

    image = load_image(path, draft_size=side // 2).convert("L")
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def _inliers(cv2: Any, first: tuple[Any, Any], second: tuple[Any, Any]) -> tuple[int, int]:
    """(inliers, matches) of the best similarity transform from `first`'s keypoints to `second`'s
    (no inliers when that transform is not plausible)."""
    (points_a, descriptors_a), (points_b, descriptors_b) = first, second
    if descriptors_a is None or descriptors_b is None or len(points_a) < 3 or len(points_b) < 3:
        return 0, 0
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(descriptors_a, descriptors_b)
    if len(matches) < 3:
        return 0, len(matches)
    source = np.float32([points_a[m.queryIdx].pt for m in matches])
    target = np.float32([points_b[m.trainIdx].pt for m in matches])
    cv2.setRNGSeed(0)  # RANSAC samples at random: the same pair gets the same verdict in every run
    transform, mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PIXELS
    )
    if transform is None or mask is None:
        return 0, len(matches)
    scale = math.hypot(transform[0, 0], transform[1, 0])
    rotation = math.degrees(math.atan2(transform[1, 0], transform[0, 0]))
    if not (MIN_SCALE <= scale <= 1 / MIN_SCALE and abs(rotation) <= MAX_ROTATION):
        return 0, len(matches)
    return int(mask.sum()), len(matches)


def _features(path: str) -> tuple[Any, Any] | str:
    """ORB keypoints of the image and of its mirror image, or why it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return _features_of(path, None)
    return _features_of(path, (status.st_size, status.st_mtime_ns))


@functools.lru_cache(maxsize=64)
def _features_of(path: str, stamp: tuple[int, int] | None) -> tuple[Any, Any] | str:
    """`_features`, cached by path and `(size, mtime_ns)` (a file is in several pairs, and a worker
    gets the pairs sorted by their first file; a file changed meanwhile is read again)."""
    cv2 = _cv2()
    try:
        image = grey(path)
    except ImageLoadError as error:
        return f"{error.path}: {error.reason}"
    orb = cv2.ORB_create(nfeatures=FEATURES)
    return orb.detectAndCompute(image, None), orb.detectAndCompute(np.ascontiguousarray(image[:, ::-1]), None)


def compare(path_a: str, path_b: str) -> Verdict:
    """Whether the images at `path_a` and `path_b` are copies of each other (see the module's notes).

    A file that cannot be read gives an unverified `Verdict` with its `error`, never an exception.
    """
    cv2 = _cv2()
    first, second = _features(path_a), _features(path_b)
    for found in (first, second):
        if isinstance(found, str):
            return Verdict(False, error=found)
    best = (0, 0, False)
    for mirrored, found_b in ((False, second[0]), (True, second[1])):
        inliers, matches = _inliers(cv2, first[0], found_b)
        if inliers > best[0] or (not mirrored and not best[1]):
            best = (inliers, matches, mirrored)
    inliers, matches, mirrored = best
    return Verdict(is_copy(inliers, matches), inliers, matches, mirrored)


def is_copy(inliers: int, matches: int) -> bool:
    """The rule: at least `MIN_INLIERS` inliers, and at least `MIN_INLIER_SHARE` of the matches.

    Example:
        >>> is_copy(40, 60), is_copy(40, 300), is_copy(12, 14)
        (True, False, False)
    """
    return inliers >= MIN_INLIERS and inliers >= MIN_INLIER_SHARE * matches


def check_rule() -> str:
    """The check's settings in one string: a saved verdict is reused only under the same rule."""
    return (
        f"orb {FEATURES} at {SIDE} px; inliers >= {MIN_INLIERS} and >= {MIN_INLIER_SHARE} of matches; "
        f"scale {MIN_SCALE:.3f}-{1 / MIN_SCALE:.3f}, rotation <= {MAX_ROTATION}, {REPROJECTION_PIXELS} px"
    )


def compare_pairs(pairs: list[tuple[str, str]]) -> list[Verdict]:
    """`compare` for each pair (what one worker process runs)."""
    return [compare(a, b) for a, b in pairs]
