"""Files decoded at full size for the keeper's tests, cached for the few files a group compares.

`keeper` picks the original of a group of copies; its pixel tests (`enlargement`, `reencoding`,
`blank_fill`) read the files at their own resolution, where `verification` reads them reduced to
`verification.SIDE` px. Each decoded file is cached by its path, size and modification time, so a
file changed meanwhile is read again.
"""

from __future__ import annotations

import functools

import numpy as np

from utilities.files import size_and_mtime

ANALYSIS_MAX_PIXELS = 16_000_000
"""Largest image the enlargement and re-encoding tests decode (bigger ones skip those steps)."""


def full_grey(path: str) -> np.ndarray | None:
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


def full_rgb(path: str) -> np.ndarray | None:
    """The image's RGB pixels as float32 (None when it cannot be read; any size: the caller checks it)."""
    return _rgb_of(path, size_and_mtime(path))


@functools.lru_cache(maxsize=8)
def _rgb_of(path: str, stamp: tuple[int, int] | None) -> np.ndarray | None:
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), dtype=np.float32)
    except (OSError, ValueError, SyntaxError):
        return None
