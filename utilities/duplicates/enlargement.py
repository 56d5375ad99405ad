"""Whether the larger of two copies is the smaller one enlarged: it holds no detail the smaller one lacks.

One of the tests `keeper` runs to find a group's original (its step **native pixels**): a file with
more pixels than another copy is not the original when those pixels were made by enlarging it.
Its siblings: `reencoding` (a JPEG saved again from another), `blank_fill` (borders and turned copies'
corners), `full_size` (the decoded files they read).
"""

from __future__ import annotations

import numpy as np

from utilities.duplicates.full_size import full_grey


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
    big, small = full_grey(larger), full_grey(smaller)
    if big is None or small is None or factor < 1.05:
        return False
    own = _lost_detail(small, factor)
    return own > 0 and _lost_detail(big, factor) / own < enlargement_limit(factor)
