"""Decoding image files into the arrays the model expects, in bounded memory.

Decoding never raises anything but `ImageLoadError`: a truncated, empty, unreadable
or oversized file becomes one recorded failure, not the end of a run.

Memory per image is bounded, whoever sends the file (a folder being indexed, a query, an upload
to the web page):
- only the formats the package lists are opened (`FORMATS`: never EPS, which runs Ghostscript);
- JPEGs are decoded reduced (`draft`: 1/2, 1/4 or 1/8 scale in the decoder itself) to the
  smallest size still at least the model's side, so a 100-megapixel photo costs a 1.6-megapixel
  decode;
- an image that would still decode to more than `max_image_pixels()` pixels (default
  `MAX_IMAGE_PIXELS`, 40 megapixels; `UTILITIES_MAX_IMAGE_PIXELS` changes it) is refused before
  decoding, with its size and the limit in the reason;
- other formats are reduced right after decoding (`Image.reduce`), and 16-bit and float images
  are converted to 8 bits in integer steps or in place, never through a float64 copy.

How an image becomes a square model input: its short side is resized to
`size` (bilinear, with Pillow's antialiasing when shrinking) and the centre
`size x size` square is cropped. The same function serves indexing and querying,
so the two never disagree. Squashing the whole image to a square would distort
shapes and make the same object look different at different aspect ratios.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from utilities.errors import ImageLoadError

DEFAULT_IMAGE_SIZE = 224
"""Side of the square image ResNet50 is fed."""

MAX_IMAGE_PIXELS = 40_000_000
"""Most pixels an image may decode to (after a JPEG's reduced decoding): 40 megapixels, about
160 MB at 4 bytes a pixel. Larger images are refused with a reason; see `max_image_pixels`."""

MAX_PIXELS_ENV = "UTILITIES_MAX_IMAGE_PIXELS"
"""Environment variable that replaces `MAX_IMAGE_PIXELS` (a whole number of pixels)."""

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF")
"""The Pillow formats opened: those of `images.finding.IMAGE_EXTENSIONS` (a multi-picture camera JPEG opens as JPEG)."""

_BACKGROUND = (255, 255, 255)


def max_image_pixels() -> int:
    """The pixel limit in force: `$UTILITIES_MAX_IMAGE_PIXELS` if set, else `MAX_IMAGE_PIXELS`.

    Raises:
        ValueError: The variable is not a positive whole number.
    """
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return MAX_IMAGE_PIXELS
    try:
        limit = int(value.replace("_", ""))
    except ValueError:
        limit = 0
    if limit < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={value!r} is not a positive whole number of pixels (e.g. 40000000)")
    return limit


def _eight_bit_gray(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float image as 8-bit grey, without a float64 copy of it."""
    values = np.asarray(image)
    if image.mode == "F":
        top = max(float(np.nanmax(values, initial=0.0)), 1e-12)
        scaled = np.nan_to_num(values, nan=0.0).astype(np.float32, copy=True)  # one float32 copy
        scaled *= 255.0 / top
        np.clip(scaled, 0, 255, out=scaled)
        return Image.fromarray(scaled.astype(np.uint8), mode="L")
    top = int(values.max(initial=0))
    if top <= 255:  # 8-bit values stored in a wider mode
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), mode="L")
    clipped = np.clip(values, 0, 65535) if values.dtype.kind == "i" else values
    return Image.fromarray((clipped >> 8).astype(np.uint8), mode="L")  # the high byte of 16-bit values


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is laid on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _eight_bit_gray(image).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def _reduced(image: Image.Image, draft_size: int) -> Image.Image:
    """`image` shrunk by a whole factor while both sides stay at least `draft_size` (as it is if none)."""
    factor = min(image.size) // draft_size
    if factor < 2:
        return image
    try:
        return image.reduce(factor)
    except (ValueError, NotImplementedError):  # a mode reduce does not take: convert first
        return _to_rgb(image).reduce(factor)


def load_image(
    path: str | os.PathLike | BinaryIO, draft_size: int | None = None, max_pixels: int | None = None
) -> Image.Image:
    """Open an image file as an 8-bit RGB Pillow image, in bounded memory.

    Handles grayscale, 16-bit, palette, alpha, CMYK and animated files (first frame),
    and applies the EXIF orientation. Only `FORMATS` are opened, and Pillow's
    decompression-bomb guard stays on.

    Args:
        path: The image file, or a binary file already open on it (read from where it stands, and
            left open: the web server decodes the very file it checked, never the path again).
        draft_size: If given, the image is decoded (JPEG) or reduced right after decoding (the
            other formats) by the largest whole factor that keeps both sides at least this many
            pixels: much faster and leaner for large photos, and nothing is lost once the image
            is resized to that size.
        max_pixels: Refuse images that would decode to more pixels than this (after a JPEG's
            reduced decoding); default `max_image_pixels()`.

    Returns:
        The decoded image, fully loaded, in mode `RGB`.

    Raises:
        ImageLoadError: The file is missing, empty, not an image of a supported format,
            truncated, or too large (the pixel limit, or Pillow's decompression-bomb limit).
            Its `reason` says which.
        ValueError: `$UTILITIES_MAX_IMAGE_PIXELS` is not a positive whole number.

    Example:
        >>> load_image("photo.jpg").mode  # doctest: +SKIP
        'RGB'
    """
    is_open = not isinstance(path, (str, os.PathLike))
    name = str(getattr(path, "name", "file")) if is_open else os.fspath(path)
    limit = max_pixels or max_image_pixels()  # a wrong setting is the caller's error, not this file's
    if not is_open and os.path.islink(name) and not os.path.exists(name):
        raise ImageLoadError(name, "broken symbolic link")
    try:
        if (os.fstat(path.fileno()).st_size if is_open else os.path.getsize(name)) == 0:
            raise ImageLoadError(name, "empty file (0 bytes)")
        with warnings.catch_warnings():
            # the pixel limit below decides; Pillow's own guard still raises at twice its limit
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path if is_open else name, formats=FORMATS) as opened:
                opened.seek(0)
                if draft_size and opened.format in ("JPEG", "MPO"):
                    opened.draft("RGB", (draft_size, draft_size))
                width, height = opened.size
                if width * height > limit:
                    raise ImageLoadError(
                        name,
                        f"image too large: {width} x {height} pixels ({width * height / 1e6:.1f} megapixels) "
                        f"to decode; the limit is {limit / 1e6:.1f} megapixels ({MAX_PIXELS_ENV} raises it)",
                    )
                opened.load()
                image = _reduced(opened, draft_size) if draft_size else opened
                oriented = ImageOps.exif_transpose(image)
                return _to_rgb(oriented).copy()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(name, f"image too large (decompression-bomb guard): {error}") from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(name, f"not an image of a supported format ({', '.join(FORMATS)})") from error
    except FileNotFoundError as error:
        raise ImageLoadError(name, "file not found") from error
    except IsADirectoryError as error:
        raise ImageLoadError(name, "is a directory, not a file") from error
    except (OSError, ValueError, SyntaxError, EOFError, MemoryError) as error:
        raise ImageLoadError(name, f"cannot decode: {error}") from error


def to_model_input(image: Image.Image, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Resize the short side to `size`, centre-crop a square, return uint8 HxWx3.

    Args:
        image: An RGB Pillow image (other modes are converted first).
        size: Side of the square output.

    Returns:
        A `(size, size, 3)` uint8 array.

    Example:
        >>> from PIL import Image
        >>> to_model_input(Image.new("RGB", (640, 480)), 224).shape
        (224, 224, 3)
    """
    rgb = _to_rgb(image) if image.mode != "RGB" else image
    if rgb.size == (size, size):  # already the right square: skip a resampling pass
        return np.asarray(rgb, dtype=np.uint8)
    fitted = ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
    return np.asarray(fitted, dtype=np.uint8)


def decode_for_model(path: str | os.PathLike, size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Load a file and turn it into a model input in one step.

    Args:
        path: The image file.
        size: Side of the square output.

    Returns:
        A `(size, size, 3)` uint8 array.

    Raises:
        ImageLoadError: As `load_image`.
    """
    image = load_image(path, draft_size=size)
    try:
        return to_model_input(image, size)
    except (OSError, ValueError) as error:
        raise ImageLoadError(os.fspath(path), f"cannot resize: {error}") from error


def stack_inputs(arrays: Iterable[np.ndarray], size: int = DEFAULT_IMAGE_SIZE) -> np.ndarray:
    """Stack model inputs into one uint8 batch `(n, size, size, 3)` (`size` shapes an empty one)."""
    items = list(arrays)
    if not items:
        return np.zeros((0, size, size, 3), dtype=np.uint8)
    return np.stack(items).astype(np.uint8, copy=False)
