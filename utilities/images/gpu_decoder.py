"""Decode JPEG batches on an NVIDIA GPU (nvJPEG through torchvision).

On a GPU machine, decoding JPEGs on the CPU is what limits indexing: the model
embeds faster than the cores decode. `GpuJpegDecoder` reads a batch's files,
decodes the JPEGs on the GPU in one `torchvision.io.decode_jpeg` call (the H100 and
A100 have hardware JPEG engines), crops the centre square, resizes it with
antialiasing and returns the same `(n, size, size, 3)` uint8 batch as the CPU path.

It is optional: it needs PyTorch and torchvision built with CUDA, which the package
does not install. Files nvJPEG cannot take (not JPEG, rotated by EXIF, CMYK,
corrupt) go through the CPU path (`images.decode_for_model`) one by one, so a bad
file is reported exactly as the CPU reader reports it. Pixels differ slightly from
the CPU path (integer crop offsets, GPU resampling): see the embedding benchmark
for the measured agreement.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from utilities.errors import ImageLoadError, ImageSearchError
from utilities.images.decoding import DEFAULT_IMAGE_SIZE, decode_for_model, stack_inputs

logger = logging.getLogger(__name__)

JPEG_START = b"\xff\xd8\xff"
"""The first bytes of every JPEG file."""

JPEG_END = b"\xff\xd9"
"""The end-of-image marker, the last two bytes of a whole JPEG file."""


def is_plain_jpeg(data: bytes) -> bool:
    """Whether nvJPEG can take these bytes as they are: a whole JPEG not rotated by its EXIF tag.

    A file that does not end with the end-of-image marker (cut short, or with bytes
    appended) goes to the CPU path, which reports a truncated file as such.

    Example:
        >>> is_plain_jpeg(b"\\x89PNG\\r\\n")
        False
    """
    return data[:3] == JPEG_START and data.endswith(JPEG_END) and exif_orientation(data) == 1


def exif_orientation(data: bytes) -> int:
    """The EXIF orientation tag of JPEG bytes (1, upright, when there is none or it cannot be read).

    Walks the JPEG markers up to the first APP1 `Exif` segment and reads tag 0x0112
    from its first image directory, in either byte order.

    Example:
        >>> exif_orientation(b"\\xff\\xd8\\xff\\xd9")
        1
    """
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker in (0xD9, 0xDA):  # end of image, start of scan: no metadata after this
            return 1
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segment = data[position + 4 : position + 2 + length]
        if marker == 0xE1 and segment[:6] == b"Exif\x00\x00":
            return _tiff_orientation(segment[6:])
        position += 2 + length
    return 1


def _tiff_orientation(tiff: bytes) -> int:
    if len(tiff) < 8 or tiff[:2] not in (b"II", b"MM"):
        return 1
    order = "<" if tiff[:2] == b"II" else ">"
    (first,) = struct.unpack(order + "I", tiff[4:8])
    if first + 2 > len(tiff):
        return 1
    (entries,) = struct.unpack(order + "H", tiff[first : first + 2])
    for index in range(entries):
        entry = first + 2 + 12 * index
        if entry + 12 > len(tiff):
            return 1
        tag, _kind, _count = struct.unpack(order + "HHI", tiff[entry : entry + 8])
        if tag == 0x0112:
            (value,) = struct.unpack(order + "H", tiff[entry + 8 : entry + 10])
            return value if 1 <= value <= 8 else 1
    return 1


def centre_square(height: int, width: int) -> tuple[int, int, int]:
    """`(top, left, side)` of the centred square crop, as `images.to_model_input` takes it.

    Example:
        >>> centre_square(375, 500)
        (0, 62, 375)
    """
    side = min(height, width)
    return (height - side) // 2, (width - side) // 2, side


class GpuJpegDecoder:
    """Decode batches of image files into model inputs on a CUDA device.

    Args:
        image_size: Side of the square model input.
        device: The torch device to decode on.

    Attributes:
        decoded_on_gpu: How many files nvJPEG has decoded so far (the rest went through the CPU path).

    Raises:
        ImageSearchError: PyTorch or torchvision is missing, or the device has no CUDA.

    Example:
        >>> decoder = GpuJpegDecoder()  # doctest: +SKIP
        >>> kept, images, failures = decoder.decode(paths)  # doctest: +SKIP
    """

    def __init__(self, image_size: int = DEFAULT_IMAGE_SIZE, device: str = "cuda") -> None:
        try:
            import torch
            import torchvision.io
        except ImportError as error:
            raise ImageSearchError(
                "decoder='gpu' needs PyTorch and torchvision with CUDA (pip install torch torchvision); "
                f"they could not be imported: {error}. Use decoder='process' or 'thread' instead."
            ) from error
        if str(device).startswith("cuda") and not torch.cuda.is_available():
            raise ImageSearchError("decoder='gpu' needs a CUDA GPU, and PyTorch sees none; use decoder='process'")
        self.image_size = int(image_size)
        self.decoded_on_gpu = 0
        self.device = torch.device(device)
        self._torch = torch
        self._io = torchvision.io

    def decode(
        self, paths: Sequence[Path], cpu_decode: Callable[[Path, int], np.ndarray] = decode_for_model
    ) -> tuple[list[int], np.ndarray, list[tuple[Path, str]]]:
        """Decode files into model inputs.

        Args:
            paths: The files of one batch.
            cpu_decode: The CPU path for files nvJPEG cannot take.

        Returns:
            `(kept, images, failures)`: positions in `paths` of the files that decoded, their
            `(len(kept), size, size, 3)` uint8 images in that order, and `(path, reason)` of the others.
        """
        results: dict[int, Any] = {}
        failures: list[tuple[Path, str]] = []
        on_gpu: list[int] = []
        jpegs: list[bytes] = []
        for position, path in enumerate(paths):
            try:
                data = Path(path).read_bytes()
            except OSError:
                data = b""  # the CPU path reports the reason (missing, directory, unreadable)
            if is_plain_jpeg(data):
                on_gpu.append(position)
                jpegs.append(data)
            else:
                results[position] = None
        for position, image in zip(on_gpu, self._decode_jpegs(jpegs), strict=True):
            results[position] = image
            self.decoded_on_gpu += image is not None
        squares = []
        for position in range(len(paths)):
            if results[position] is None:
                try:
                    results[position] = cpu_decode(paths[position], self.image_size)
                except ImageLoadError as error:
                    failures.append((paths[position], error.reason))
                    del results[position]
                    continue
            squares.append(results[position])
        kept = sorted(results)
        return kept, self._to_host(squares), failures

    def _decode_jpegs(self, jpegs: list[bytes]) -> list[Any]:
        """For each JPEG, its centre square as a `(3, size, size)` float32 GPU tensor, or None if nvJPEG failed."""
        if not jpegs:
            return []
        torch = self._torch
        tensors = [torch.frombuffer(bytearray(data), dtype=torch.uint8) for data in jpegs]
        mode = self._io.ImageReadMode.RGB
        try:
            decoded = self._io.decode_jpeg(tensors, mode=mode, device=self.device)
        except RuntimeError as error:  # one bad file fails the whole call: find it
            logger.debug("nvJPEG refused a batch of %d (%s); decoding one by one", len(tensors), error)
            decoded = []
            for tensor in tensors:
                try:
                    decoded.append(self._io.decode_jpeg(tensor, mode=mode, device=self.device))
                except RuntimeError as single:
                    logger.debug("nvJPEG refused a file (%s); the CPU path decodes it", single)
                    decoded.append(None)
        return [None if image is None else self._square(image) for image in decoded]

    def _square(self, image: Any) -> Any:
        """Centre-crop and resize one `(3, h, w)` uint8 image to `(3, size, size)` float32."""
        torch = self._torch
        top, left, side = centre_square(image.shape[-2], image.shape[-1])
        crop = image[:, top : top + side, left : left + side].unsqueeze(0).float()
        if side != self.image_size:
            crop = torch.nn.functional.interpolate(
                crop, size=(self.image_size, self.image_size), mode="bilinear", antialias=True, align_corners=False
            )
        return crop[0]

    def _to_host(self, squares: list[Any]) -> np.ndarray:
        """Stack GPU squares and CPU arrays into one uint8 NHWC numpy batch."""
        if all(isinstance(square, np.ndarray) for square in squares):  # also when there are none
            return stack_inputs(squares, self.image_size)
        torch = self._torch
        gpu = [
            # a CPU-decoded square may be read-only: copy it (PyTorch warns about non-writable arrays)
            torch.from_numpy(np.array(s)).to(self.device).permute(2, 0, 1).float() if isinstance(s, np.ndarray) else s
            for s in squares
        ]
        batch = torch.stack(gpu).round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        return batch.cpu().numpy()
