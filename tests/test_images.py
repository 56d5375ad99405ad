from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.images_factory import gradient, make_bad_files, make_odd_good_files
from utilities.errors import ImageLoadError
from utilities.images import decode_for_model, find_image_files, find_images, load_image, to_model_input


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
        ("text", "not a recognised"),
        ("random", "not a recognised"),
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
