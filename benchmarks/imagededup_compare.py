"""Near-duplicate search on stored vectors, side by side with imagededup's CNN search on the same vectors.

imagededup (PyPI) compares CNN vectors through a full N x N cosine matrix (float16 above 10,000
rows, in worker processes); `find_duplicates` here reads the vectors stored in Milvus and finds
each row's nearest rows a block at a time (on Milvus Lite an exact scan in matrix products, on a
server k-NN requests), then re-scores the candidates. Both get the same vectors: the
collection's rows, and imagededup's `find_duplicates(encoding_map=...)`. Neither runs a model
(imagededup gets a `CustomModel` with no network, since its default one downloads weights) and
ours runs without the keypoint check (`verify=False`): this compares the search, not the models.

The vectors come from a model fitted to real features (`feature_model.FittedStream`, `--features`)
or from overlapping random clusters; a share of them (`--copies`) gets a planted near copy (the
vector plus a little noise, cosine about 0.97). Each side runs in its own process group, whose
summed RSS is sampled every 0.2 s; a side whose group passes `--memory-cap-mb` is stopped, and
the table says so.

Usage (imagededup installed in the given Python, which also needs this package's requirements):
    python benchmarks/imagededup_compare.py --counts 10000 100000 --features /tmp/features.npz \
        --imagededup-python /tmp/effvenv/bin/python
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import run_sampled, shown_path, version_in, write_table  # noqa: E402
from benchmarks.feature_model import FittedStream  # noqa: E402
from benchmarks.search_scale import ClusteredStream  # noqa: E402

COPY_NOISE = 0.25  # length of the noise added to a unit vector to plant its copy (cosine about 0.97)
NEIGHBOURS = 10


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--features", type=Path, help="real features for `feature_model.FittedStream`")
    parser.add_argument("--dimension", type=int, default=1280)
    parser.add_argument("--copies", type=float, default=0.01, help="share of rows given a planted near copy")
    parser.add_argument("--threshold", type=float, default=0.9, help="cosine of a duplicate (imagededup's default)")
    parser.add_argument("--imagededup-python", default=sys.executable, help="a Python that has imagededup")
    parser.add_argument("--memory-cap-mb", type=float, default=18_000, help="stop a side whose RSS passes this")
    parser.add_argument("--name", default="duplicates-vs-imagededup")
    parser.add_argument("--side", choices=["insert", "ours", "imagededup"], help=argparse.SUPPRESS)
    parser.add_argument("--scratch", type=Path, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def make_vectors(args: argparse.Namespace, count: int) -> tuple[np.ndarray, set[tuple[int, int]]]:
    """`count` unit vectors, the last of them planted near copies of earlier ones; and those pairs."""
    copies = int(count * args.copies)
    originals = count - copies
    if args.features:
        stream = FittedStream(args.features, originals, originals, args.dimension, noise=0.5)
    else:
        stream = ClusteredStream(originals, originals, args.dimension, spread=3.0)
    vectors = next(stream.chunks())[1]
    rng = np.random.default_rng(7)
    sources = rng.choice(originals, copies, replace=False)
    noise = rng.standard_normal((copies, vectors.shape[1]), dtype=np.float32) * COPY_NOISE / np.sqrt(vectors.shape[1])
    planted = vectors[sources] + noise
    planted /= np.linalg.norm(planted, axis=1, keepdims=True)
    pairs = {(int(source), originals + n) for n, source in enumerate(sources)}
    return np.concatenate([vectors, planted]), pairs


def name_of(row: int) -> str:
    return f"/lib/{row:07d}.jpg"


def run_insert(scratch: Path) -> dict:
    from utilities.milvus.collection import ImageCollection

    vectors = np.load(scratch / "vectors.npy")
    started = time.perf_counter()
    store = ImageCollection.open(str(scratch / "lite.db"), name="compare", dimension=vectors.shape[1], reset=True)
    for start in range(0, len(vectors), 10_000):
        rows = range(start, min(start + 10_000, len(vectors)))
        store.insert([name_of(r) for r in rows], vectors[rows.start : rows.stop], hashes=[f"h{r}" for r in rows])
    store.close()
    return {"seconds": time.perf_counter() - started}


def run_ours(scratch: Path, threshold: float) -> dict:
    from utilities.duplicates.finder import find_duplicates
    from utilities.milvus.collection import ImageCollection

    store = ImageCollection.open(str(scratch / "lite.db"), name="compare")
    started = time.perf_counter()
    report = find_duplicates(store, threshold, NEIGHBOURS, verify=False)
    seconds = time.perf_counter() - started
    store.close()
    return {"seconds": seconds, "pairs": sorted({tuple(sorted((p.a, p.b))) for p in report.pairs})}


def run_imagededup(scratch: Path, threshold: float) -> dict:
    import torch
    from imagededup.methods import CNN
    from imagededup.utils.models import CustomModel

    vectors = np.load(scratch / "vectors.npy")
    encoding_map = {name_of(row): vector for row, vector in enumerate(vectors)}
    del vectors
    # A model is required by the constructor only; the default one downloads weights.
    finder = CNN(verbose=False, model_config=CustomModel(model=torch.nn.Identity(), transform=lambda x: x, name="none"))
    started = time.perf_counter()
    found = finder.find_duplicates(encoding_map=encoding_map, min_similarity_threshold=threshold)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "pairs": sorted({tuple(sorted((a, b))) for a, dups in found.items() for b in dups})}


def run_side(python: str, side: str, scratch: Path, args: argparse.Namespace) -> tuple[dict | None, float, str]:
    """Runs one side in its own process group: its answer, the group's peak RSS in MB, and what went wrong."""
    command = [python, __file__, "--side", side, "--scratch", str(scratch), "--threshold", str(args.threshold)]
    out = scratch / f"{side}.json"
    _, peak, problem = run_sampled(command, out, args.memory_cap_mb)
    return (None if problem else json.loads(out.read_text())), peak, problem


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.side:
        run = {"insert": lambda: run_insert(args.scratch), "ours": lambda: run_ours(args.scratch, args.threshold)}
        run["imagededup"] = lambda: run_imagededup(args.scratch, args.threshold)
        print(json.dumps(run[args.side]()))
        return
    rows = []
    for count in args.counts:
        with tempfile.TemporaryDirectory() as folder:
            scratch = Path(folder)
            vectors, planted = make_vectors(args, count)
            np.save(scratch / "vectors.npy", vectors)
            planted_names = {(name_of(a), name_of(b)) for a, b in planted}
            del vectors
            inserted, _, problem = run_side(sys.executable, "insert", scratch, args)
            if inserted is None:
                raise SystemExit(f"inserting {count:,} vectors into Milvus Lite failed: {problem}")
            results = {
                side: run_side(python, side, scratch, args)
                for side, python in (("ours", sys.executable), ("imagededup", args.imagededup_python))
            }
        pairs = {
            side: None if answer is None else {tuple(p) for p in answer["pairs"]}
            for side, (answer, _, _) in results.items()
        }
        for side, (answer, peak, problem) in results.items():
            found = pairs[side]
            if side == "ours":
                note = f"inserting took {inserted['seconds']:.0f} s (not counted)"
            elif found is not None and pairs["ours"] is not None:
                note = f"ours found {len(found & pairs['ours']) / max(1, len(found)):.3f} of these pairs"
            else:
                note = ""
            rows.append(
                [
                    f"{count:,}",
                    "this package (Milvus Lite; exact k-NN in blocks)" if side == "ours" else "imagededup CNN (N x N)",
                    f"{answer['seconds']:.1f}" if answer else problem,
                    f"{peak:,.0f}",
                    f"{len(found):,}" if found is not None else "",
                    f"{len(found & planted_names) / len(planted_names):.3f}" if found is not None else "",
                    note,
                ]
            )
            print(" | ".join(rows[-1]), flush=True)
    write_table(
        args.name,
        "Near duplicates on stored vectors: this package against imagededup's CNN search",
        ["vectors", "method", "seconds", "peak RSS MB (its processes)", "pairs at the threshold"]
        + ["planted copies found", "notes"],
        rows,
        [
            f"{args.dimension}-d vectors "
            + (
                "drawn from a model fitted to real features (`feature_model.py`, noise 0.5)"
                if args.features
                else "in 1,000 overlapping random clusters"
            )
            + f"; {args.copies:.0%} of them planted near copies (cosine about 0.97); threshold {args.threshold}",
            f"ours: `find_duplicates(verify=False)`, {NEIGHBOURS} neighbours a row, on a Milvus Lite file the "
            "vectors were inserted into before (the client and the Lite server process counted); imagededup: "
            "`CNN.find_duplicates(encoding_map=...)` with its default workers (one a core)",
            "peak RSS: the side's process group summed, sampled every 0.2 s; imagededup "
            + version_in(args.imagededup_python, "imagededup")
            + " in "
            + shown_path(args.imagededup_python),
        ],
        packages=["pymilvus", "milvus-lite", "numpy"],
    )


if __name__ == "__main__":
    main()
