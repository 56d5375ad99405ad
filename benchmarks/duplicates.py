"""Duplicate finding against a ground truth made by code: precision and recall of pairs, and time.

The set: N photos (`../shared/data/imagenette-val` when present, else the committed samples);
an edited copy of each of the first half (crop 85-95 %, shrink 60-90 %, mirror, brightness
+-15 %, rotation +-4 degrees, JPEG 50-85: `tests/images_factory.edited_copy`) and a byte-for-byte
copy of each of the first tenth. The true pairs are those copies with their source. Every
other pair is a negative; with Imagenette, photos of the same class are the look-alikes.

For each setting, `find_duplicates` runs on the indexed collection (Milvus Lite by default):
precision and recall of the near pairs and of the exact pairs, the candidate stage's recall
against brute force over the stored vectors, and the time. The vectors come from the default
ResNet50 with random weights (no weights can be downloaded here), or with
`--embedder efficientnet-lite0` from a real pretrained model (`benchmarks/pretrained.py`: run
it from the venv that file describes).

Usage:
    python benchmarks/duplicates.py [--quick] [--count 600] [--server-uri http://127.0.0.1:19530]
    /tmp/effvenv/bin/python benchmarks/duplicates.py --embedder efficientnet-lite0 --name duplicates-efficientnet
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED_DATA, shown_path, write_table  # noqa: E402
from tests.images_factory import edited_copy  # noqa: E402

SAMPLES = ROOT / "tests" / "data" / "samples"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the 6 committed samples: checks that it runs (CI)")
    parser.add_argument("--count", type=int, default=600, help="source photos (Imagenette when present)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.8])
    parser.add_argument("--neighbours", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--server-uri", default="", help="index into this server instead of a Lite file")
    parser.add_argument("--embedder", choices=["resnet50-random", "efficientnet-lite0"], default="resnet50-random")
    parser.add_argument(
        "--incremental",
        type=float,
        default=0.0,
        help="also time a re-run after adding this share of new files (0.01: 1 %%), against a full run",
    )
    parser.add_argument(
        "--composites",
        type=float,
        default=0.0,
        help="also make a collage and a side-by-side of this share of the photos with the next one (negatives "
        "that share a region)",
    )
    parser.add_argument("--name", default="duplicates")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.thresholds, args.neighbours = 6, [0.5], [10]
        args.incremental, args.composites = 0.2, 0.5
    return args


def make_composites(sources: list[Path], folder: Path, share: float) -> int:
    """A collage (left half of one photo, right half of the next) and a side-by-side of the two, for
    the first `share` of the photos: each shares a region with two photos and is a copy of neither."""
    from PIL import Image

    count = int(len(sources) * share)
    (folder / "composites").mkdir(parents=True, exist_ok=True)
    for number in range(count):
        first = Image.open(sources[number]).convert("RGB")
        second = Image.open(sources[(number + 1) % len(sources)]).convert("RGB").resize(first.size)
        width, height = first.size
        collage = Image.new("RGB", first.size)
        collage.paste(first.crop((0, 0, width // 2, height)), (0, 0))
        collage.paste(second.crop((width // 2, 0, width, height)), (width // 2, 0))
        collage.save(folder / "composites" / f"collage_{number:05d}.jpg", quality=90)
        beside = Image.new("RGB", (2 * width, height))
        beside.paste(first, (0, 0))
        beside.paste(second, (width, 0))
        beside.save(folder / "composites" / f"beside_{number:05d}.jpg", quality=90)
    return 2 * count


def source_of(path: str) -> str | None:
    """Which source photo a file of the set shows (None for a composite: it is unique)."""
    name = Path(path).stem
    return None if Path(path).parent.name == "composites" else name.split("_")[0]


def removable_safety(report) -> tuple[int, int, int]:
    """(removable files that are copies of their group's kept file, removable files, groups kept on the
    source photo or its byte copy)."""
    safe = total = originals = 0
    for group in report.groups:
        keeper = source_of(group.keeper)
        originals += Path(group.keeper).parent.name in ("photos", "exact")
        for path in group.removable:
            total += 1
            safe += keeper is not None and source_of(path) == keeper
    return safe, total, originals


def make_set(sources: list[Path], folder: Path) -> tuple[set[tuple[str, str]], set[tuple[str, str]]]:
    """Copy the sources into `folder` with their edited and exact copies; return the true (near, exact) pairs."""
    from utilities.ids import stored_path

    near, exact = set(), set()
    for number, source in enumerate(sources):
        original = folder / "photos" / f"{number:05d}{source.suffix.lower()}"
        original.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, original)
        same_content = [original]
        if number < max(1, len(sources) // 10):
            copy = folder / "exact" / original.name
            copy.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, copy)
            exact.add(tuple(sorted((stored_path(original), stored_path(copy)))))
            same_content.append(copy)
        if number < max(1, len(sources) // 2):
            edited = edited_copy(source, folder / "edited" / f"{number:05d}_edit.jpg", seed=number)
            near |= {tuple(sorted((stored_path(twin), stored_path(edited)))) for twin in same_content}
    return near, exact


def brute_force(store, pairs: set[tuple[str, str]], threshold: float) -> tuple[set[tuple[str, str]], int]:
    """The given pairs whose stored vectors reach the threshold (exact cosine), and how many pairs
    of the whole collection do."""
    ids = [record.id for page in store.iter_records() for record in page]
    records = [r for start in range(0, len(ids), 1000) for r in store.records(ids[start : start + 1000], True)]
    matrix = np.stack([r.vector for r in records]).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    similar = matrix @ matrix.T
    row = {r.path: n for n, r in enumerate(records)}
    reached = {pair for pair in pairs if similar[row[pair[0]], row[pair[1]]] >= threshold}
    return reached, int((np.triu(similar, 1) >= threshold).sum())


def make_embedder(name: str):
    """The embedder a run uses: ResNet50 with random weights, or pretrained EfficientNet-Lite0."""
    if name == "efficientnet-lite0":
        from benchmarks.pretrained import EfficientNetLite0Embedder

        return EfficientNetLite0Embedder()
    from utilities.embeddings import ResNet50Embedder

    return ResNet50Embedder(weights=None)


def scores(found: set[tuple[str, str]], truth: set[tuple[str, str]]) -> tuple[str, str]:
    hits = len(found & truth)
    precision = hits / len(found) if found else 1.0
    recall = hits / len(truth) if truth else 1.0
    return f"{precision:.3f}", f"{recall:.3f}"


def time_rerun(store, embedder, folder: Path, extra: list[Path], args: argparse.Namespace) -> list:
    """A full run saving its state, files added and indexed, then the re-run and a full run to compare."""
    from utilities.duplicates.finder import find_duplicates
    from utilities.indexing.pipeline import index_paths

    threshold, neighbours = args.thresholds[0], args.neighbours[0]
    state = folder / "state.npz"
    before = store.count()
    full = find_duplicates(store, threshold, neighbours, state_path=state)
    added = max(2, round(before * args.incremental))
    new = [folder / "added" / f"new_{n:05d}{source.suffix.lower()}" for n, source in enumerate(extra[: added // 2])]
    for target, source in zip(new, extra, strict=False):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    originals = sorted((folder / "photos").iterdir())
    for n in range(added - len(new)):
        new.append(edited_copy(originals[-1 - n], folder / "added" / f"edit_{n:05d}.jpg", seed=1000 + n))
    index_paths(new, store, embedder, batch_size=32, progress=False)
    rerun = find_duplicates(store, threshold, neighbours, state_path=state)
    again = find_duplicates(store, threshold, neighbours, state_path=folder / "full.npz", full=True)

    def outcome(report) -> tuple:
        pairs = sorted((p.a, p.b, round(p.cosine, 5), p.kind, p.verified, p.inliers) for p in report.pairs)
        return pairs, sorted((tuple(g.files), g.keeper) for g in report.groups), report.rejected

    return [
        f"{before:,}",
        len(new),
        f"{full.seconds:.1f}",
        f"{rerun.seconds:.2f}",
        f"{rerun.seconds / full.seconds:.3f}",
        f"{rerun.searched:,}",
        f"{rerun.checks_reused:,}",
        "yes" if outcome(rerun) == outcome(again) else "NO",
    ]


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.duplicates.candidates import find_candidates
    from utilities.duplicates.finder import find_duplicates
    from utilities.images.finding import find_images
    from utilities.indexing.pipeline import index_folder
    from utilities.milvus.collection import ImageCollection

    imagenette = SHARED_DATA / "imagenette-val"
    source_folder = SAMPLES if args.quick or not imagenette.is_dir() else imagenette
    every = find_images(source_folder)
    step = max(1, len(every) // args.count)
    sources = every[::step][: args.count]  # spread over the classes
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        near_truth, exact_truth = make_set(sources, Path(scratch))
        composites = make_composites(sources, Path(scratch), args.composites) if args.composites else 0
        uri = args.server_uri or f"{scratch}/d.db"
        embedder = make_embedder(args.embedder)
        store = ImageCollection.open(uri, name="bench_duplicates", dimension=embedder.dimension, reset=True)
        started = time.perf_counter()
        report = index_folder(scratch, store, embedder, batch_size=32, progress=False)
        index_seconds = time.perf_counter() - started
        for threshold in args.thresholds:
            reachable, above = brute_force(store, near_truth, threshold)
            for neighbours in args.neighbours:
                candidates = find_candidates(store, threshold, neighbours)
                paths = {i: r.path for i, r in candidates.records.items()}
                proposed = {tuple(sorted((paths[a], paths[b]))) for a, b in candidates.near}
                candidate_recall = len(proposed & reachable) / len(reachable) if reachable else 1.0
                for verify in (True, False):
                    found = find_duplicates(store, threshold, neighbours, verify=verify)
                    near = {tuple(sorted((p.a, p.b))) for p in found.pairs if p.kind == "near"}
                    exact = {tuple(sorted((p.a, p.b))) for p in found.pairs if p.kind == "exact"}
                    safe, removable, originals = removable_safety(found)
                    rows.append(
                        [
                            f"{threshold:g}",
                            neighbours,
                            "keypoints" if verify else "none",
                            *scores(near, near_truth),
                            *scores(exact, exact_truth),
                            f"{candidate_recall:.3f} ({len(reachable)} of {len(near_truth)}; {above:,} in all)",
                            len(found.groups),
                            f"{safe} / {removable}",
                            f"{originals} / {len(found.groups)}",
                            len(found.related),
                            f"{found.seconds:.1f}",
                        ]
                    )
        if args.incremental:
            extra = [source for source in every if source not in set(sources)] or sources
            incremental = time_rerun(store, embedder, Path(scratch), extra, args)
        store.drop()
        store.close()
    if args.incremental:
        write_table(
            args.name.removesuffix("-quick") + "-incremental" + ("-quick" if args.quick else ""),
            "Duplicates: a re-run after adding files, against a full run",
            ["rows before", "files added", "full run s", "re-run s", "re-run / full", "rows searched again"]
            + ["checks kept", "same result as a full run"],
            [incremental],
            [
                f"threshold {args.thresholds[0]:g}, {args.neighbours[0]} neighbours, keypoint check, "
                f"{embedder.weights_label}, Milvus " + ("server" if args.server_uri else "Lite"),
                "the added files: half new photos, half edited copies of photos already indexed; indexing them is "
                "not counted. Both runs read every row's hash; the re-run searches and checks only what changed",
            ],
            packages=["opencv-python-headless", "pymilvus", "milvus-lite"],
        )
    write_table(
        args.name,
        "Duplicates against a ground truth made by code",
        ["threshold", "neighbours", "check", "near precision", "near recall", "exact precision", "exact recall"]
        + ["candidate recall vs brute force (true pairs at the threshold; all pairs)", "groups"]
        + ["removable that are copies of their kept file", "kept file is the source", "related", "seconds"],
        rows,
        [
            f"{len(sources)} photos from {shown_path(source_folder)}, {len(near_truth)} edited copies, "
            f"{len(exact_truth)} exact copies, {composites} composites (collages and side-by-sides of two photos): "
            f"{report.indexed} images indexed in {index_seconds:.0f} s "
            f"({embedder.weights_label}, Milvus " + ("server" if args.server_uri else "Lite") + ")",
            "the true near pairs are each edited copy with its source and with that source's exact copy; every "
            "other pair is a negative. Candidate recall: of the true pairs whose stored vectors reach the threshold "
            "(brute force), the share the k-NN candidates hold",
        ],
        packages=["opencv-python-headless", "pymilvus", "milvus-lite", "keras", "tensorflow-cpu", "torch"],
    )


if __name__ == "__main__":
    main()
