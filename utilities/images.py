"""Finding image files and decoding them into the arrays the model expects.

Decoding never raises anything but `ImageLoadError`: a truncated, empty, unreadable
or oversized file becomes one recorded failure, not the end of a run.

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
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from utilities.errors import ImageLoadError

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
"""File name endings treated as images, compared case-insensitively."""

DEFAULT_IMAGE_SIZE = 224
"""Side of the square image ResNet50 is fed."""

_BACKGROUND = (255, 255, 255)


def is_image_name(path: str | os.PathLike) -> bool:
    """Tell whether a file name has one of the `IMAGE_EXTENSIONS` (any case)."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def find_images(folder: str | os.PathLike) -> list[Path]:
    """List the image files under a folder, recursively, in a stable order.

    Symbolic links to directories are not followed (so a link loop cannot hang the
    walk); links to files are listed, and a broken one fails later, when it is
    loaded, with its reason. Directories whose names look like images are not files
    and are left out.

    Args:
        folder: The folder to walk.

    Returns:
        Absolute paths sorted by their path relative to `folder`.

    Raises:
        NotADirectoryError: If `folder` does not exist or is not a directory.

    Example:
        >>> paths = find_images("../shared/data/imagenet-samples")  # doctest: +SKIP
    """
    return [Path(path) for path in find_image_files(folder)]


def find_image_files(folder: str | os.PathLike) -> list[str]:
    """`find_images` as absolute path strings, in the same order (indexing uses these).

    Building a `Path` for each file costs about 6 µs, which a million files turn into
    seconds: the strings are what the pipeline stores anyway (`ids.stored_path`).

    Raises:
        NotADirectoryError: If `folder` does not exist or is not a directory.
    """
    root = Path(folder).expanduser().absolute()
    if not root.is_dir():
        raise NotADirectoryError(f"image folder {str(root)!r} does not exist or is not a directory")
    # Every path starts with the root and a separator, so sorting the whole strings sorts them by
    # their path relative to the root.
    found = [
        os.path.join(dirpath, name) for dirpath, _dirs, files in os.walk(root) for name in files if is_image_name(name)
    ]
    return sorted(found)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB; transparency is laid on white."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "F" and values.max(initial=0) > 255 else 255.0
        if image.mode == "F":
            top = max(float(values.max(initial=0)), 1.0)
        gray = np.clip(values * (255.0 / top), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, mode="L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, _BACKGROUND)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def load_image(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """Open an image file as an 8-bit RGB Pillow image.

    Handles grayscale, 16-bit, palette, alpha, CMYK and animated files (first frame),
    and applies the EXIF orientation. Pillow's decompression-bomb guard stays on.

    Args:
        path: The image file.
        draft_size: If given, JPEG files are decoded at the smallest power-of-two
            reduction that is still at least this many pixels on each side, which
            is much faster for large photos and loses nothing after resizing.

    Returns:
        The decoded image, fully loaded, in mode `RGB`.

    Raises:
        ImageLoadError: The file is missing, empty, not an image, truncated, or
            larger than Pillow's decompression-bomb limit. Its `reason` says which.

    Example:
        >>> load_image("photo.jpg").mode  # doctest: +SKIP
        'RGB'
    """
    name = os.fspath(path)
    if os.path.islink(name) and not os.path.exists(name):
        raise ImageLoadError(name, "broken symbolic link")
    try:
        if os.path.getsize(name) == 0:
            raise ImageLoadError(name, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(name) as opened:
                if draft_size and opened.format == "JPEG":
                    opened.draft("RGB", (draft_size, draft_size))
                opened.seek(0)
                opened.load()
                oriented = ImageOps.exif_transpose(opened)
                return _to_rgb(oriented).copy()
    except ImageLoadError:
        raise
    except Image.DecompressionBombError as error:
        raise ImageLoadError(name, f"image too large (decompression-bomb guard): {error}") from error
    except UnidentifiedImageError as error:
        raise ImageLoadError(name, "not a recognised image format") from error
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
