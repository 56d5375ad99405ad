"""Generators of odd and broken image files for tests."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def gradient(width: int, height: int, seed: int = 0) -> Image.Image:
    """A colourful RGB image that differs by seed."""
    rng = np.random.default_rng(seed)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    base = (x * rng.random(3) + y * rng.random(3)) % 256
    return Image.fromarray(base.astype(np.uint8), "RGB")


def huge_png_header(path: Path, width: int = 100_000, height: int = 100_000) -> None:
    """A tiny PNG file whose header declares an enormous size."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) + chunk(b"IEND", b"")
    )


def truncated_jpeg(path: Path) -> None:
    """A JPEG cut in half."""
    buffer = io.BytesIO()
    gradient(200, 150, 3).save(buffer, "JPEG", quality=90)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


def exif_rotated_jpeg(path: Path) -> None:
    """A 40x20 JPEG with EXIF orientation 6 (displayed rotated: 20x40)."""
    image = gradient(40, 20, 4)
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, "JPEG", exif=exif.tobytes())


def make_bad_files(folder: Path) -> dict[str, Path]:
    """Files that cannot be decoded, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    bad = {
        "truncated": folder / "truncated.jpg",
        "empty": folder / "empty.jpg",
        "text": folder / "notes.jpg",
        "random": folder / "noise.png",
        "bomb": folder / "bomb.png",
        "broken_link": folder / "dangling.jpg",
    }
    truncated_jpeg(bad["truncated"])
    bad["empty"].write_bytes(b"")
    bad["text"].write_text("this is not an image\n")
    bad["random"].write_bytes(np.random.default_rng(1).bytes(4096))
    huge_png_header(bad["bomb"])
    bad["broken_link"].symlink_to(folder / "does-not-exist.jpg")
    return bad


def make_odd_good_files(folder: Path) -> dict[str, Path]:
    """Files that are valid images in awkward formats, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    good = {
        "gray": folder / "gray.png",
        "gray16": folder / "gray16.png",
        "palette_transparent": folder / "palette.png",
        "la": folder / "la.png",
        "rgba": folder / "rgba.webp",
        "cmyk": folder / "cmyk.jpg",
        "animated": folder / "animated.gif",
        "exif": folder / "rotated.jpg",
        "tiny": folder / "one pixel.bmp",
        "thin": folder / "thin 'quoted'.tiff",
        "unicode": folder / "ünïcødé 画像.JPG",
        "png_named_jpg": folder / "actually_png.jpg",
    }
    gradient(64, 48, 1).convert("L").save(good["gray"])
    Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)).save(good["gray16"])
    palette = gradient(64, 48, 2).convert("P")
    palette.info["transparency"] = 0
    palette.save(good["palette_transparent"], transparency=0)
    gradient(32, 32, 5).convert("LA").save(good["la"])
    gradient(32, 32, 6).convert("RGBA").save(good["rgba"])
    gradient(64, 48, 7).convert("CMYK").save(good["cmyk"], "JPEG")
    frames = [gradient(40, 30, s) for s in (8, 9, 10)]
    frames[0].save(good["animated"], save_all=True, append_images=frames[1:], duration=50)
    exif_rotated_jpeg(good["exif"])
    Image.new("RGB", (1, 1), (200, 10, 10)).save(good["tiny"])
    gradient(1000, 2, 11).save(good["thin"])
    gradient(50, 50, 12).save(good["unicode"], "JPEG")
    gradient(50, 50, 13).save(good["png_named_jpg"], "PNG")
    return good


def edited_copy(source: Path, target: Path, seed: int) -> Path:
    """An edited copy of a photo, as people make them: cropped to 85-95 %, shrunk to 60-90 %,
    maybe mirrored, brightened or darkened by up to 15 %, turned by up to 4 degrees, saved as a
    JPEG of quality 50-85 (so always smaller than its source)."""
    import random

    from PIL import ImageEnhance

    rng = random.Random(seed)
    image = Image.open(source).convert("RGB")
    width, height = image.size
    keep = rng.uniform(0.85, 0.95)
    crop_w, crop_h = int(width * keep), int(height * keep)
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    image = image.crop((left, top, left + crop_w, top + crop_h))
    scale = rng.uniform(0.6, 0.9)
    image = image.resize((int(crop_w * scale), int(crop_h * scale)))
    if rng.random() < 0.5:
        image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.85, 1.15))
    image = image.rotate(rng.uniform(-4, 4), resample=Image.Resampling.BILINEAR)
    target.parent.mkdir(parents=True, exist_ok=True)
    image.save(target, quality=rng.randint(50, 85))
    return target
