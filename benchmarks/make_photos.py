"""Generate many distinct JPEG photos of ordinary size from the committed samples, for benchmarks.

Each photo is a random crop (50-100 % of the area) of one of `tests/data/samples/*.jpg`, maybe
mirrored, with its brightness changed by up to 25 %, resized so that its long side is 375-500 px,
and saved as a JPEG of quality 85-95: every file is distinct (its own content hash), so an
indexing run embeds every one instead of reusing a copy's vector. The photos go into sub-folders
of 1,000 files, the way large photo folders are usually split.

Usage:
    python benchmarks/make_photos.py OUT_DIR --count 64000 [--workers 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "samples"
FILES_PER_FOLDER = 1_000


def make_range(out_dir: str, start: int, stop: int, seed: int) -> int:
    """Write photos number `start` to `stop - 1` into `out_dir`; return how many were written."""
    from PIL import Image, ImageEnhance

    sources = [Image.open(path).convert("RGB") for path in sorted(SAMPLES.glob("*.jpg"))]
    for number in range(start, stop):
        rng = random.Random(seed * 1_000_003 + number)
        source = rng.choice(sources)
        width, height = source.size
        scale = rng.uniform(0.5, 1.0) ** 0.5  # of each side: 50-100 % of the area
        crop_w, crop_h = max(32, int(width * scale)), max(32, int(height * scale))
        left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
        photo = source.crop((left, top, left + crop_w, top + crop_h))
        if rng.random() < 0.5:
            photo = photo.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        photo = ImageEnhance.Brightness(photo).enhance(rng.uniform(0.75, 1.25))
        long_side = rng.randint(375, 500)
        ratio = long_side / max(photo.size)
        photo = photo.resize((max(1, round(photo.width * ratio)), max(1, round(photo.height * ratio))))
        folder = Path(out_dir) / f"part_{number // FILES_PER_FOLDER:04d}"
        folder.mkdir(parents=True, exist_ok=True)
        photo.save(folder / f"photo_{number:07d}.jpg", quality=rng.randint(85, 95))
    return stop - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--count", type=int, default=64_000)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    step = 500
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(make_range, str(args.out_dir), start, min(start + step, args.count), args.seed)
            for start in range(0, args.count, step)
        ]
        written = sum(future.result() for future in futures)
    seconds = time.perf_counter() - started
    print(f"{written} photos written to {args.out_dir} in {seconds:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main()
