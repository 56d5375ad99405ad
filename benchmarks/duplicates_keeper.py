"""What the removable list would tell people: is each copy inside its kept file, and is the kept file the original?

The set, made by code from real photos (`../shared/data/imagenet-samples` when present, else the
committed samples), file names random and every copy given the original's modification time or a
later one, so that neither names nor times give the answer away:

With `--count` above 65 the Imagenette validation photos (224 px crops) fill the set.

- **groups**: each photo saved at JPEG quality 70-90 (the original) and 3 edited copies drawn from:
  a crop (80-95 %), a shrink (0.6-0.9x; the aspect kept: a copy squeezed in one direction fails the
  keypoint check already), an enlargement (1.1-1.3x, bilinear, bicubic or Lanczos), the same
  pixels at JPEG 40-70 or at 92-98, a mirror saved at 95, a brightness change, a small rotation,
  an enlargement saved at 95. The keeper (`keeper.choose`) must be the original.
- **pairs**: each copy checked against its original (`verification.compare`) must be a copy found
  inside it; each collage (half of the photo, half of another), side-by-side and photo pasted into a
  larger picture must not be a copy of the photo.

Usage:
    python benchmarks/duplicates_keeper.py [--quick]
"""

from __future__ import annotations

import argparse
import functools
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageEnhance, ImageOps

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED_DATA, write_table  # noqa: E402
from utilities.duplicates.keeper import choose  # noqa: E402
from utilities.duplicates.verification import compare  # noqa: E402
from utilities.records import ImageRecord  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "samples"
EDITS = (
    "crop",
    "shrink",
    "enlarge",
    "jpeg low",
    "jpeg high",
    "mirror at 95",
    "brightness",
    "rotation",
    "enlarge at 95",
)


def edited(image: Image.Image, kind: str, rng: random.Random) -> tuple[Image.Image, int]:
    """One edited copy and the JPEG quality it is saved at."""
    width, height = image.size
    quality = rng.randint(40, 90)
    if kind == "crop":
        share = rng.uniform(0.8, 0.95)
        left, top = rng.uniform(0, 1 - share), rng.uniform(0, 1 - share)
        box = (int(width * left), int(height * top), int(width * (left + share)), int(height * (top + share)))
        return image.crop(box), rng.choice([quality, 95])
    if kind == "shrink":
        scale = rng.uniform(0.6, 0.9)
        return image.resize((int(width * scale), int(height * scale))), quality
    if kind.startswith("enlarge"):
        scale = rng.uniform(1.1, 1.3)
        method = rng.choice([Image.Resampling.BILINEAR, Image.Resampling.BICUBIC, Image.Resampling.LANCZOS])
        return image.resize((int(width * scale), int(height * scale)), method), 95 if "95" in kind else quality
    if kind == "jpeg low":
        return image, rng.randint(40, 70)
    if kind == "jpeg high":
        return image, rng.randint(92, 98)
    if kind == "mirror at 95":
        return ImageOps.mirror(image), 95
    if kind == "brightness":
        return ImageEnhance.Brightness(image).enhance(rng.uniform(0.8, 1.2)), rng.randint(40, 95)
    return image.rotate(rng.uniform(-5, 5), resample=Image.Resampling.BILINEAR), quality


def composites(image: Image.Image, other: Image.Image) -> dict[str, Image.Image]:
    """A collage, a side-by-side and a paste of `image` with `other`: each shares a region only."""
    width, height = image.size
    other = other.resize(image.size)
    collage = Image.new("RGB", image.size)
    collage.paste(image.crop((0, 0, width // 2, height)), (0, 0))
    collage.paste(other.crop((width // 2, 0, width, height)), (width // 2, 0))
    beside = Image.new("RGB", (2 * width, height))
    beside.paste(image, (0, 0))
    beside.paste(other, (width, 0))
    pasted = other.resize((int(width * 1.6), int(height * 1.6)))
    pasted.paste(image, (int(width * 0.3), int(height * 0.3)))
    return {"collage": collage, "side-by-side": beside, "pasted into a larger picture": pasted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 6 committed samples: checks that it runs (CI)")
    parser.add_argument("--count", type=int, default=60, help="photos (each one group)")
    args = parser.parse_args(argv)
    shared, imagenette = SHARED_DATA / "imagenet-samples", SHARED_DATA / "imagenette-val"
    sources = sorted(SAMPLES.glob("*.jpg"))
    if not args.quick and shared.is_dir():
        sources += sorted(shared.iterdir())
    if not args.quick and imagenette.is_dir() and len(sources) < args.count:
        extra = sorted(imagenette.rglob("*.JPEG"))  # 224 px crops, spread over the 10 classes
        sources += extra[:: max(1, len(extra) // (args.count - len(sources)))]
    sources = sources[: 6 if args.quick else args.count]
    rng = random.Random(1)
    check = functools.lru_cache(maxsize=None)(compare)
    largest_right = 0
    kept_right, groups, copies_inside, copies, shared_regions, composites_made = 0, 0, 0, 0, 0, 0
    wrong: dict[str, int] = {}
    missed: dict[str, int] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for number, source in enumerate(sources):
            photo = Image.open(source).convert("RGB")
            original = Path(folder) / f"{rng.getrandbits(40):010x}.jpg"
            photo.save(original, quality=rng.randint(70, 90))
            stamp = original.stat().st_mtime_ns
            picture = Image.open(original).convert("RGB")
            kinds = rng.sample(EDITS, 3)
            paths = [original]
            for kind in kinds:
                image, quality = edited(picture, kind, rng)
                path = Path(folder) / f"{rng.getrandbits(40):010x}.jpg"
                image.save(path, quality=quality)
                when = rng.choice([stamp, stamp + rng.randint(1, 10**10)])
                os.utime(path, ns=(when, when))
                paths.append(path)
                verdict = check(str(path), str(original))
                copies += 1
                inside = verdict.verified and verdict.contains(True)
                copies_inside += inside
                if not inside:
                    missed[kind] = missed.get(kind, 0) + 1
            records = [ImageRecord(n, str(p), p.stat().st_size, p.stat().st_mtime_ns) for n, p in enumerate(paths)]
            rng.shuffle(records)
            choice = choose(records, check)
            largest_right += choose(records, check, policy="largest").record.path == str(original)
            groups += 1
            if choice.record.path == str(original):
                kept_right += 1
            else:
                kind = kinds[[str(p) for p in paths].index(choice.record.path) - 1]
                wrong[kind] = wrong.get(kind, 0) + 1
            other = Image.open(sources[(number + 1) % len(sources)]).convert("RGB")
            for name, image in composites(picture, other).items():
                path = Path(folder) / f"{name.replace(' ', '_')}_{number}.jpg"
                image.save(path, quality=90)
                composites_made += 1
                shared_regions += not check(str(path), str(original)).verified
    seconds = time.perf_counter() - started
    rows = [
        ["groups whose kept file is the original", f"{kept_right} / {groups}", f"{kept_right / groups:.3f}"],
        [
            "the same, keeping the most bytes (the rule before)",
            f"{largest_right} / {groups}",
            f"{largest_right / groups:.3f}",
        ],
        ["edited copies found inside their original", f"{copies_inside} / {copies}", f"{copies_inside / copies:.3f}"],
        [
            "collages, side-by-sides, pasted photos not a copy of the photo",
            f"{shared_regions} / {composites_made}",
            f"{shared_regions / composites_made:.3f}",
        ],
    ]
    notes = [
        f"{len(sources)} photos ({'committed samples' if args.quick else 'samples, then ../shared/data'})"
        f", 3 edited copies each from: {', '.join(EDITS)}; {seconds:.0f} s",
        "copies not found inside their original: "
        + (", ".join(f"{k} {v}" for k, v in sorted(missed.items())) or "none"),
        "kept a copy instead of the original: " + (", ".join(f"{k} {v}" for k, v in sorted(wrong.items())) or "never"),
    ]
    write_table(
        "duplicates-keeper" + ("-quick" if args.quick else ""),
        "Removable copies inside their kept file, and the original kept",
        ["what", "count", "share"],
        rows,
        notes,
        packages=["opencv-python-headless", "pillow", "numpy"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
