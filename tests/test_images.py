from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.images_factory import gradient, make_bad_files, make_odd_good_files
from utilities.errors import ImageLoadError
from utilities.images.decoding import decode_for_model, load_image, to_model_input
from utilities.images.finding import find_image_files, find_images


def test_find_images_is_recursive_case_insensitive_and_sorted(tmp_path: Path) -> None:
    for name in ["b/z.JPG", "a/y.png", "a/x.Jpeg", "c.TIFF", "notes.txt", "d/e/f.webp"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "folder.jpg").mkdir()
    found = [p.relative_to(tmp_path).as_posix() for p in find_images(tmp_path)]
    assert found == ["a/x.Jpeg", "a/y.png", "b/z.JPG", "c.TIFF", "d/e/f.webp"]


def test_find_image_files_gives_the_same_files_as_strings(tmp_path: Path) -> None:
    for name in ("b/x.jpg", "a.b/y.PNG", "a/z.jpeg", "a.jpg", "a-1.png", "notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    files = find_image_files(tmp_path)
    assert files == [p.as_posix() for p in find_images(tmp_path)]
    assert [Path(f).relative_to(tmp_path).as_posix() for f in files] == [
        "a-1.png",
        "a.b/y.PNG",
        "a.jpg",
        "a/z.jpeg",
        "b/x.jpg",
    ]


def test_find_images_does_not_follow_a_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.png").write_bytes(b"x")
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    assert [p.name for p in find_images(tmp_path)] == ["a.png"]


def test_find_images_on_missing_folder_names_it(tmp_path: Path) -> None:
    with pytest.raises(NotADirectoryError, match="nowhere"):
        find_images(tmp_path / "nowhere")


def test_odd_but_valid_images_load_as_rgb(tmp_path: Path) -> None:
    good = make_odd_good_files(tmp_path)
    for kind, path in good.items():
        image = load_image(path)
        assert image.mode == "RGB", kind
        assert decode_for_model(path).shape == (224, 224, 3), kind


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    good = make_odd_good_files(tmp_path)
    assert load_image(good["exif"]).size == (20, 40)


def test_transparency_is_laid_on_white(tmp_path: Path) -> None:
    path = tmp_path / "clear.png"
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(path)
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 255, 255]


def test_sixteen_bit_gray_keeps_its_range(tmp_path: Path) -> None:
    path = tmp_path / "g16.png"
    Image.fromarray(np.full((4, 4), 65535, np.uint16)).save(path)
    assert np.asarray(load_image(path)).min() == 255


def test_animated_gif_gives_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (10, 10), (255, 0, 0)), Image.new("RGB", (10, 10), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    red, _green, blue = np.asarray(load_image(path))[5, 5]
    assert red > 200 and blue < 50


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated", "truncated"),
        ("empty", "empty"),
        ("text", "not an image of a supported format"),
        ("random", "not an image of a supported format"),
        ("bomb", "decompression-bomb"),
        ("broken_link", "broken symbolic link"),
    ],
)
def test_broken_files_raise_with_path_and_reason(tmp_path: Path, kind: str, reason: str) -> None:
    path = make_bad_files(tmp_path)[kind]
    with pytest.raises(ImageLoadError, match=reason) as raised:
        load_image(path)
    assert raised.value.path == os.fspath(path)


def test_model_input_is_centre_crop_of_short_side() -> None:
    wide = Image.new("RGB", (300, 100), (0, 0, 255))
    wide.paste((255, 0, 0), (100, 0, 200, 100))  # red centre third
    square = to_model_input(wide, 50)
    assert square.shape == (50, 50, 3)
    inner = square[:, 2:-2]  # the outermost columns blend with the neighbours when resampled
    assert inner[:, :, 0].min() > 240 and inner[:, :, 2].max() < 15


def test_real_photo_decodes_to_model_input() -> None:
    from tests.conftest import SAMPLES

    path = sorted(SAMPLES.glob("*.jpg"))[0]
    array = decode_for_model(path)
    assert array.dtype == np.uint8 and array.shape == (224, 224, 3) and array.std() > 5


def test_draft_decode_is_close_to_full_decode() -> None:
    from tests.conftest import SAMPLES

    path = max(SAMPLES.glob("*.jpg"), key=lambda p: p.stat().st_size)
    full = to_model_input(load_image(path), 224).astype(float)
    fast = decode_for_model(path, 224).astype(float)
    assert np.abs(full - fast).mean() < 6.0


def test_gradient_helper_differs_by_seed() -> None:
    assert not np.array_equal(np.asarray(gradient(8, 8, 1)), np.asarray(gradient(8, 8, 2)))


def test_sixteen_bit_values_keep_their_high_byte_and_float_images_their_scale(tmp_path: Path) -> None:
    values = np.array([[0, 256, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert np.asarray(load_image(tmp_path / "g16.png"))[0, :, 0].tolist() == [0, 1, 128, 255]
    floats = np.array([[0.0, 0.5, 1.0, 2.0]], dtype=np.float32).repeat(4, axis=0)
    Image.fromarray(floats).save(tmp_path / "f.tif")
    assert np.asarray(load_image(tmp_path / "f.tif"))[0, :, 0].tolist() == [0, 63, 127, 255]


def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path: Path, monkeypatch) -> None:
    Image.new("RGB", (1200, 1000), (0, 90, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageLoadError, match=r"1200 x 1000 pixels \(1.2 megapixels\).*limit is 1.0 megapixels"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)
    monkeypatch.setenv("UTILITIES_MAX_IMAGE_PIXELS", "1_000_000")
    with pytest.raises(ImageLoadError, match="UTILITIES_MAX_IMAGE_PIXELS raises it"):
        decode_for_model(tmp_path / "big.png")
    # a JPEG is decoded reduced (1/4 here: 300 x 250) before the limit applies, so the same size passes
    Image.new("RGB", (1200, 1000), (0, 90, 200)).save(tmp_path / "big.jpg")
    assert decode_for_model(tmp_path / "big.jpg").shape == (224, 224, 3)
    monkeypatch.setenv("UTILITIES_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ValueError, match="UTILITIES_MAX_IMAGE_PIXELS='lots' is not a positive whole number"):
        load_image(tmp_path / "big.jpg")


def test_large_images_of_any_format_are_reduced_right_after_decoding(tmp_path: Path) -> None:
    Image.new("RGB", (2000, 1000), (10, 20, 30)).save(tmp_path / "wide.png")
    assert load_image(tmp_path / "wide.png", draft_size=224).size == (500, 250)  # reduced by 4
    assert load_image(tmp_path / "wide.png").size == (2000, 1000)
    assert decode_for_model(tmp_path / "wide.png").shape == (224, 224, 3)


def test_only_the_supported_formats_are_opened(tmp_path: Path) -> None:
    Image.new("RGB", (40, 30)).save(tmp_path / "drawing.eps")  # EPS would run Ghostscript to decode
    Image.new("RGB", (40, 30)).save(tmp_path / "scan.pcx")
    for name in ("drawing.eps", "scan.pcx"):
        with pytest.raises(ImageLoadError, match=r"not an image of a supported format \(JPEG, PNG"):
            load_image(tmp_path / name)


@pytest.mark.slow
def test_a_100_megapixel_jpeg_decodes_in_bounded_memory(tmp_path: Path) -> None:
    import subprocess
    import sys

    photo = tmp_path / "huge.jpg"
    Image.new("RGB", (640, 640), (120, 80, 40)).resize((10_000, 10_000)).save(photo, quality=80)
    child = (
        "import sys\n"
        "from utilities.images.decoding import decode_for_model\n"
        "def kb(f): return int(next(l for l in open('/proc/self/status') if l.startswith(f)).split()[1])\n"
        "open('/proc/self/clear_refs', 'w').write('5')\n"
        "before = kb('VmRSS'); decode_for_model(sys.argv[1]); print(kb('VmHWM') - before)\n"
    )
    grown_kb = int(subprocess.run([sys.executable, "-c", child, str(photo)], capture_output=True, text=True,
                                  check=True).stdout)  # fmt: skip
    assert grown_kb < 300 * 1024, f"decoding a 100-megapixel JPEG grew the process by {grown_kb / 1024:.0f} MB"
