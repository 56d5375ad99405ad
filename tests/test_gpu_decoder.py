"""The GPU decoder's file handling, checked without a GPU.

What runs on the GPU itself (nvJPEG, resizing) is checked by `tests_gpu/` on a CUDA
machine. Here: which files it hands to nvJPEG, the EXIF reader that decides it, the
crop, the clear error where PyTorch is missing, and the routing of files nvJPEG cannot
take through the CPU path, with failures reported as the CPU reader reports them.
"""

from __future__ import annotations

import io
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import class_photos
from tests.images_factory import exif_rotated_jpeg, gradient, make_bad_files, make_odd_good_files
from utilities.errors import ImageSearchError
from utilities.images.decoding import decode_for_model
from utilities.images.gpu_decoder import GpuJpegDecoder, centre_square, exif_orientation, is_plain_jpeg
from utilities.images.reader import iter_decoded_batches


def _jpeg_bytes(exif: bytes | None = None) -> bytes:
    buffer = io.BytesIO()
    gradient(40, 20, 1).save(buffer, "JPEG", **({"exif": exif} if exif is not None else {}))
    return buffer.getvalue()


def _big_endian_exif(orientation: int) -> bytes:
    entry = struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0)
    return b"Exif\x00\x00" + b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1) + entry + b"\0\0\0\0"


def test_exif_orientation_is_read_in_both_byte_orders(tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "rotated.jpg")
    assert exif_orientation((tmp_path / "rotated.jpg").read_bytes()) == 6  # Pillow writes little-endian
    plain = _jpeg_bytes()
    assert exif_orientation(plain) == 1
    segment = _big_endian_exif(8)
    big_endian = plain[:2] + b"\xff\xe1" + struct.pack(">H", len(segment) + 2) + segment + plain[2:]
    assert exif_orientation(big_endian) == 8
    upright = Image.Exif()
    upright[0x0112] = 1
    assert exif_orientation(_jpeg_bytes(upright.tobytes())) == 1


def test_exif_reader_survives_garbage() -> None:
    assert exif_orientation(b"") == 1
    assert exif_orientation(b"\xff\xd8\xff\xe1\x00\x10Exif\x00\x00II") == 1  # cut short
    assert exif_orientation(b"\xff\xd8" + np.random.default_rng(0).bytes(500)) == 1


def test_only_upright_jpegs_go_to_the_gpu(tmp_path: Path) -> None:
    exif_rotated_jpeg(tmp_path / "rotated.jpg")
    assert is_plain_jpeg(class_photos(1)[0].read_bytes())
    assert not is_plain_jpeg((tmp_path / "rotated.jpg").read_bytes())
    good = make_odd_good_files(tmp_path / "odd")
    assert not is_plain_jpeg(good["png_named_jpg"].read_bytes())
    assert not is_plain_jpeg(b"")
    whole = _jpeg_bytes()
    assert is_plain_jpeg(whole) and not is_plain_jpeg(whole[: len(whole) // 2])


@pytest.mark.parametrize(("height", "width", "expected"), [(375, 500, (0, 62, 375)), (500, 333, (83, 0, 333))])
def test_centre_square(height: int, width: int, expected: tuple[int, int, int]) -> None:
    assert centre_square(height, width) == expected
    top, left, side = centre_square(height, width)
    assert side == min(height, width) and top + side <= height and left + side <= width


def test_missing_torch_gives_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail, as where it is not installed
    with pytest.raises(ImageSearchError, match="decoder='gpu' needs PyTorch and torchvision.*decoder='process'"):
        GpuJpegDecoder()
    with pytest.raises(ImageSearchError, match="needs PyTorch"):
        list(iter_decoded_batches(class_photos(1)[:2], 2, decoder="gpu"))


class _PillowStandIn(GpuJpegDecoder):
    """The decoder's routing with Pillow in nvJPEG's place (the GPU part is checked in tests_gpu/)."""

    def __init__(self) -> None:  # no torch needed
        self.image_size = 224
        self.decoded_on_gpu = 0
        self.sent: list[bytes] = []

    def _decode_jpegs(self, jpegs: list[bytes]) -> list[np.ndarray | None]:
        self.sent.extend(jpegs)
        out: list[np.ndarray | None] = []
        for data in jpegs:
            try:
                out.append(np.asarray(Image.open(io.BytesIO(data)).convert("RGB").resize((224, 224))))
            except OSError:
                out.append(None)  # as nvJPEG failing on this file
        return out


def test_files_nvjpeg_cannot_take_go_through_the_cpu_path(tmp_path: Path) -> None:
    photos = class_photos(1)[:2]
    good = make_odd_good_files(tmp_path / "odd")
    bad = make_bad_files(tmp_path / "bad")
    paths = [photos[0], good["png_named_jpg"], bad["truncated"], good["exif"], bad["empty"], good["cmyk"], photos[1]]
    decoder = _PillowStandIn()
    kept, images, failures = decoder.decode(paths)
    assert kept == [0, 1, 3, 5, 6]
    assert images.shape == (5, 224, 224, 3) and images.dtype == np.uint8
    assert [path for path, _ in failures] == [bad["truncated"], bad["empty"]]
    assert "empty file" in failures[1][1] and failures[0][1]
    # The PNG named .jpg and the EXIF-rotated JPEG went through the CPU path, in their places:
    np.testing.assert_array_equal(images[1], decode_for_model(paths[1]))
    np.testing.assert_array_equal(images[2], decode_for_model(paths[3]))
    assert len(decoder.sent) == 3  # the two photos and the CMYK JPEG; not the PNG, the rotated or the cut one
    assert decoder.decoded_on_gpu == 3


def test_a_file_nvjpeg_fails_on_is_decoded_by_the_cpu_path(tmp_path: Path) -> None:
    cmyk = make_odd_good_files(tmp_path / "odd")["cmyk"]

    class _RefusesAll(_PillowStandIn):
        def _decode_jpegs(self, jpegs: list[bytes]) -> list[np.ndarray | None]:
            return [None for _ in jpegs]

    kept, images, failures = _RefusesAll().decode([cmyk, class_photos(1)[0]])
    assert kept == [0, 1] and not failures
    np.testing.assert_array_equal(images[0], decode_for_model(cmyk))
    np.testing.assert_array_equal(images[1], decode_for_model(class_photos(1)[0]))


def test_unreadable_paths_are_reported_not_raised(tmp_path: Path) -> None:
    decoder = _PillowStandIn()
    kept, images, failures = decoder.decode([tmp_path / "missing.jpg", tmp_path])
    assert kept == [] and images.shape == (0, 224, 224, 3)
    assert [reason for _, reason in failures] == ["file not found", "is a directory, not a file"]


def test_cli_asks_for_the_gpu_decoder_without_torch(
    photo_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    from utilities.cli import main

    monkeypatch.setitem(sys.modules, "torch", None)
    database = tmp_path / "milvus.db"
    code = main(["index", str(photo_folder), "--uri", str(database), "--weights", "none", "--decoder", "gpu"])
    error = capsys.readouterr().err
    assert code == 1
    assert "needs PyTorch and torchvision" in error and "Traceback" not in error
    with pytest.raises(SystemExit):
        main(["index", str(photo_folder), "--uri", str(database), "--decoder", "nvjpeg"])  # not a choice
