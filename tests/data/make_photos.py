"""Rebuild the committed test photos from scikit-image's sample photos (CC0 / public domain).

Run once by hand, not by the tests: `pip install scikit-image && python tests/data/make_photos.py`.
It writes `photos/<class>/<class>_NN.jpg` (10 classes x 10 views: random crops, flips and
brightness changes of one photo, 160 px on the short side) and `samples/<name>.jpg` (the
originals at their own sizes, for "outside" queries and the resize paths). The output is
deterministic for a given scikit-image and Pillow; see README.md beside this file.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SOURCES = {  # class name -> file in skimage/data (licences in README.md)
    "astronaut": "astronaut.png",
    "cat": "chelsea.png",
    "coffee": "coffee.png",
    "rocket": "rocket.jpg",
    "galaxies": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "camera": "camera.png",
    "brick": "brick.png",
    "grass": "grass.png",
    "gravel": "gravel.png",
}
SAMPLES = ("astronaut", "cat", "coffee", "rocket", "galaxies", "camera")
VIEWS = 10
SHORT_SIDE = 160


def view(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random crop (35-80 % of the area), maybe mirrored and a little brighter or darker."""
    width, height = image.size
    area = rng.uniform(0.35, 0.8) * width * height
    aspect = rng.uniform(3 / 4, 4 / 3)
    crop_w = int(min(width, round((area * aspect) ** 0.5)))
    crop_h = int(min(height, round((area / aspect) ** 0.5)))
    left = int(rng.integers(0, width - crop_w + 1))
    top = int(rng.integers(0, height - crop_h + 1))
    crop = image.crop((left, top, left + crop_w, top + crop_h))
    if rng.random() < 0.5:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    scale = SHORT_SIDE / min(crop.size)
    crop = crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS)
    pixels = np.asarray(crop, dtype=np.float32) * rng.uniform(0.85, 1.15)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), crop.mode)


def main() -> None:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    for folder in ("photos", "samples"):
        shutil.rmtree(HERE / folder, ignore_errors=True)
    for number, (name, source) in enumerate(SOURCES.items()):
        image = Image.open(data / source)
        image = image.convert("L" if image.mode in ("L", "I", "I;16", "1") else "RGB")
        rng = np.random.default_rng(number)
        target = HERE / "photos" / name
        target.mkdir(parents=True)
        for index in range(VIEWS):
            view(image, rng).save(target / f"{name}_{index:02d}.jpg", quality=85)
        if name in SAMPLES:
            (HERE / "samples").mkdir(exist_ok=True)
            image.save(HERE / "samples" / f"{name}.jpg", quality=85)


if __name__ == "__main__":
    main()
