"""Whether a JPEG is another one of the same size decoded, perhaps mirrored or brightened, and saved again.

One of the tests `keeper` runs to find a group's original (its step **JPEG generation**): of two
aligned JPEGs, one saved again from the other is not the original, whatever its quality or size.
The margins were read from the pairs of `benchmarks/duplicates_keeper.py`
(`benchmarks/results/duplicates-keeper.md`). Its siblings: `enlargement` (a copy enlarged from
another), `blank_fill` (borders and turned copies' corners), `full_size` (the decoded files they read).
"""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import numpy as np

from utilities.duplicates.full_size import ANALYSIS_MAX_PIXELS, full_rgb
from utilities.files import size_and_mtime

ALIGNED_LEVELS = 8.0
"""Largest mean difference, in levels of 255, of two JPEGs laid over each other for them to be one picture
saved twice (JPEG quality 40 differs by about 3 to 6)."""

CLEARER_RETURN = 0.8
"""Largest ratio of the two directions' differences (`is_reencoded_from`) for the closer one to decide:
a JPEG saved again from another (at another quality, or mirrored) comes back under 0.4 as far as the
other way round in 9 pairs of 10, brightened or darkened under 0.66; a copy turned a little and its
original come back 0.94 to 1.07 as far in 8 pairs of 10, either way."""


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
    copy_pixels, source_pixels = full_rgb(copy), full_rgb(source)
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
