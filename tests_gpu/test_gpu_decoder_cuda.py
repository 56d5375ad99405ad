"""The nvJPEG decoder on a real CUDA GPU: run on a GPU machine with `python -m pytest tests_gpu`.

These need PyTorch and torchvision with CUDA, which CI's machines do not have; the
file handling around them is checked without a GPU in `tests/test_gpu_decoder.py`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.conftest import SAMPLES, class_photos
from tests.images_factory import make_bad_files, make_odd_good_files
from utilities.images.decoding import decode_for_model
from utilities.images.gpu_decoder import GpuJpegDecoder
from utilities.images.reader import iter_decoded_batches


def test_gpu_inputs_match_the_cpu_path_on_real_photos() -> None:
    paths = sorted(SAMPLES.glob("*.jpg")) + class_photos(3)
    decoder = GpuJpegDecoder()
    kept, images, failures = decoder.decode(paths)
    assert not failures and kept == list(range(len(paths)))
    assert decoder.decoded_on_gpu == len(paths)  # none fell back to the CPU
    cpu = np.stack([decode_for_model(p) for p in paths])
    difference = np.abs(images.astype(np.int16) - cpu.astype(np.int16))
    per_image = difference.mean(axis=(1, 2, 3))
    print(
        f"GPU vs CPU inputs, {len(paths)} photos: mean |difference| {difference.mean():.2f} levels, "
        f"worst photo {per_image.max():.2f} ({paths[int(per_image.argmax())].name}), "
        f"samples (downscaled) {per_image[: len(paths) - 30].mean():.2f}, test photos (upscaled) "
        f"{per_image[-30:].mean():.2f}"
    )
    assert images.shape == cpu.shape and images.dtype == np.uint8
    # a swapped channel or a wrong crop gives tens; the worst honest photo is a fine grey texture
    # upscaled from 160 px, where the GPU's and Pillow's bilinear filters differ most (11.0 on an H200)
    assert difference.mean() < 4 and per_image.max() < 16


def test_odd_and_broken_files_are_handled_like_the_cpu_reader(tmp_path: Path) -> None:
    good = make_odd_good_files(tmp_path / "good")
    bad = make_bad_files(tmp_path / "bad")
    paths = [*good.values(), *bad.values(), *class_photos(1)[:3]]
    decoder = GpuJpegDecoder()
    kept, images, failures = decoder.decode(paths)
    print(f"odd and broken files: {decoder.decoded_on_gpu} of {len(paths)} decoded by nvJPEG")
    assert decoder.decoded_on_gpu >= 4  # at least the 3 photos and the plain 50x50 JPEG
    assert [paths[i] for i in kept] == [*good.values(), *class_photos(1)[:3]]
    assert sorted(str(p) for p, _ in failures) == sorted(str(p) for p in bad.values())
    for position, row in zip(kept, images, strict=True):
        if position < len(good):
            cpu = decode_for_model(paths[position])
            assert np.abs(row.astype(np.int16) - cpu).mean() < 6, paths[position].name


def test_batches_from_the_gpu_decoder_match_the_thread_decoder(tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg \xff\xd9")
    paths = [*class_photos(1)[:5], broken, *sorted(SAMPLES.glob("*.jpg"))[:6]]
    gpu = list(iter_decoded_batches(paths, batch_size=4, decoder="gpu"))
    cpu = list(iter_decoded_batches(paths, batch_size=4, decoder="thread"))
    assert [b.paths for b in gpu] == [b.paths for b in cpu]
    assert [[f.path for f in b.failures] for b in gpu] == [[f.path for f in b.failures] for b in cpu]
    for g, c in zip(gpu, cpu, strict=True):
        assert g.images.shape == c.images.shape and np.abs(g.images.astype(np.int16) - c.images).mean() < 4
