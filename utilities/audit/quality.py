"""Images that are too dark, too light, blurry, empty, tiny or oddly shaped, measured from their pixels.

Each file is decoded (reduced, as for the model) and measured in greyscale at `WORKING_SIDE` px on
its longest side, so that the measures do not depend on the file's resolution; width and height are
the file's own. The collection stores no pixel measures yet, so they are computed on demand, in
threads, with a progress bar.

| issue | measure | flagged when |
|---|---|---|
| `dark` | 95th percentile of the grey levels | below `DARK_LEVEL` (95 % of the pixels in the darkest quarter) |
| `light` | 5th percentile of the grey levels | above `LIGHT_LEVEL` (95 % of the pixels in the lightest quarter) |
| `blurry` | std of the Laplacian / std of the grey levels | below `BLURRY_RATIO` |
| `low_information` | std of the image reduced to 32 x 32 | below `LOW_INFORMATION_LEVELS` grey levels |
| `tiny` | the file's shorter side | below `TINY_SIDE` px |
| `odd_aspect` | longer side / shorter side | above `ODD_ASPECT` |

The thresholds are definitions, checked on 4,031 real photos (Imagenette's validation split and the
committed test photos, none edited): `dark` flags 0.3 % of them (photos taken at night, the Hubble
deep field), `light` 0.05 %, `blurry` 0.1 %, `low_information` none. On the same photos edited:
`dark` caught all of those darkened to 10-25 %, `light` 99.7 % of those lightened as much; `blurry`
96 % of those blurred by a Gaussian of 1 % of their side, 99 % at 2 % (14 % at 0.5 %, hardly seen
at this size); `low_information` every flat colour with noise and 80 % of those with a faint gradient
too. A photo darkened or lightened that far has little structure left: 6 % of them were
`low_information` as well. `tiny` and `odd_aspect` are sizes, not measured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from utilities.errors import ImageLoadError

WORKING_SIDE = 256
"""Longest side, in pixels, at which the pixel measures are taken (near the model's 224)."""

DARK_LEVEL = 64.0
"""Grey level (0-255) that the 95th percentile must stay under for an image to be dark."""

LIGHT_LEVEL = 192.0
"""Grey level that the 5th percentile must exceed for an image to be light (overexposed, washed out)."""

BLURRY_RATIO = 0.10
"""Sharpness (std of the Laplacian over std of the grey levels) under which an image is blurry. It
measures fine detail against contrast, so a dim or a low-contrast photo is not called blurry."""

LOW_INFORMATION_LEVELS = 4.0
"""Std, in grey levels, of the image reduced to `STRUCTURE_SIDE` squared (noise averaged out) under
which it shows nearly nothing (a flat colour, a faint gradient)."""

STRUCTURE_SIDE = 32
"""Side of the reduced image on which `LOW_INFORMATION_LEVELS` is measured."""

TINY_SIDE = 64
"""Shorter side, in pixels, under which an image is tiny (the model's 224 px input is then an enlargement)."""

ODD_ASPECT = 2.0
"""Longer over shorter side above which the aspect is odd: the model sees the centre square, under
half of such an image."""

ISSUES = ("dark", "light", "blurry", "low_information", "tiny", "odd_aspect")
"""The issues, in the order they are listed."""


@dataclass(frozen=True)
class QualityScores:
    """The pixel measures of one image (grey levels 0-255, at `WORKING_SIDE`).

    Attributes:
        width: The file's width in pixels (as stored, before any EXIF turn).
        height: Its height.
        brightness: Mean grey level.
        dark_level: 95th percentile of the grey levels.
        light_level: 5th percentile of the grey levels.
        sharpness: Std of the Laplacian over std of the grey levels (0 for a flat image).
        structure: Std of the image reduced to `STRUCTURE_SIDE` squared.
    """

    width: int
    height: int
    brightness: float
    dark_level: float
    light_level: float
    sharpness: float
    structure: float

    @property
    def aspect(self) -> float:
        """Longer side over shorter side."""
        return max(self.width, self.height) / max(1, min(self.width, self.height))

    def severities(self) -> dict[str, float]:
        """Each issue the image has, with how far past its threshold it is (0 to 1, 1 the worst).

        Example:
            >>> QualityScores(20, 20, 0.0, 0.0, 0.0, 0.0, 0.0).severities()
            {'dark': 1.0, 'low_information': 1.0, 'tiny': 0.6875}
        """
        found = {
            "dark": (DARK_LEVEL - self.dark_level) / DARK_LEVEL,
            "light": (self.light_level - LIGHT_LEVEL) / (255.0 - LIGHT_LEVEL),
            # a flat image has no detail to blur: low_information says what is wrong with it
            "blurry": (BLURRY_RATIO - self.sharpness) / BLURRY_RATIO if self.structure >= LOW_INFORMATION_LEVELS else 0,
            "low_information": (LOW_INFORMATION_LEVELS - self.structure) / LOW_INFORMATION_LEVELS,
            "tiny": (TINY_SIDE - min(self.width, self.height)) / TINY_SIDE,
            "odd_aspect": 1.0 - ODD_ASPECT / self.aspect,
        }
        return {issue: round(min(1.0, float(value)), 4) for issue, value in found.items() if value > 0}

    def as_dict(self) -> dict[str, float]:
        """The measures, rounded, with the aspect."""
        values = {name: round(float(value), 4) for name, value in vars(self).items()}
        return {**values, "aspect": round(self.aspect, 4)}


def measure_pixels(grey: np.ndarray, width: int, height: int) -> QualityScores:
    """The measures of a greyscale image (uint8 or float, at the working size).

    Args:
        grey: The image, 2-d.
        width: The file's width.
        height: The file's height.

    Returns:
        Its `QualityScores`.

    Example:
        >>> measure_pixels(np.full((8, 8), 128, np.uint8), 8, 8).structure
        0.0
    """
    import cv2

    pixels = np.asarray(grey, dtype=np.float32)
    low, high = np.percentile(pixels, [5, 95])
    spread = float(pixels.std())
    laplacian = cv2.Laplacian(pixels, cv2.CV_32F)
    reduced = cv2.resize(pixels, (STRUCTURE_SIDE, STRUCTURE_SIDE), interpolation=cv2.INTER_AREA)
    return QualityScores(
        width=int(width),
        height=int(height),
        brightness=float(pixels.mean()),
        dark_level=float(high),
        light_level=float(low),
        sharpness=float(laplacian.std()) / spread if spread > 0 else 0.0,
        structure=float(reduced.std()),
    )


def measure_file(path: str | os.PathLike) -> QualityScores:
    """The measures of an image file.

    Raises:
        ImageLoadError: As `images.decoding.load_image`.
    """
    from PIL import Image

    from utilities.images.decoding import load_image

    image = load_image(path, draft_size=WORKING_SIDE)
    try:
        with Image.open(path) as opened:  # the header only: the file's own size, not the reduced one
            width, height = opened.size
    except OSError as error:
        raise ImageLoadError(os.fspath(path), f"cannot read its size: {error}") from error
    grey = image.convert("L")
    grey.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.BILINEAR)
    return measure_pixels(np.asarray(grey), width, height)


def measure_files(
    paths: Sequence[str],
    workers: int | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[dict[str, QualityScores], dict[str, str]]:
    """`measure_file` of each path, in threads (decoding and OpenCV release the GIL).

    Args:
        paths: Image files.
        workers: Threads (default: one a core).
        on_progress: Called with 1 after each file.

    Returns:
        The measures by path, and the files that could not be read, with the reason.
    """
    measured: dict[str, QualityScores] = {}
    unreadable: dict[str, str] = {}

    def one(path: str) -> tuple[str, QualityScores | str]:
        try:
            return path, measure_file(path)
        except ImageLoadError as error:
            return path, error.reason

    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        for path, result in pool.map(one, paths):
            if isinstance(result, str):
                unreadable[path] = result
            else:
                measured[path] = result
            if on_progress is not None:
                on_progress(1)
    return measured, unreadable
