"""Duplicate search over a large collection on a Milvus server: time, client memory, copies found.

The collection holds vectors only (no files, so no keypoint check: `find_duplicates(verify=False)`):
`--rows` in all, drawn from a model fitted to real features (`feature_model.FittedStream`,
`--features`) or from overlapping random clusters, projected to `--dims` with the package's own
`projection.Projection` as `ImageSearchEngine(dims=...)` does. In each chunk a share of rows is
replaced by planted copies of other rows of the chunk: near copies (`--copies`: the projected vector
plus noise, cosine about 0.97) and exact copies (`--exact`: the same vector and the same content
hash). Every other row has its own hash. The index is the one `create_index()` chooses (AUTO).

The search runs in its own process group (`find_duplicates` as a user calls it: every stored vector
searched through Milvus for its nearest rows, candidates re-scored on the stored vectors, groups
made); that group's summed RSS is sampled every 0.2 s: the client's memory. A Milvus server runs
elsewhere and is not counted; with Milvus Lite (`--quick`) the Lite process is the client's child
and is counted.

Usage:
    python benchmarks/duplicates_scale.py --rows 1281167 --dims 256 --features /tmp/features.npz \
        --server-uri http://127.0.0.1:19530
    python benchmarks/duplicates_scale.py --quick [--server-uri ...]
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
from benchmarks.common import params_label, run_sampled, write_table  # noqa: E402
from benchmarks.feature_model import FittedStream  # noqa: E402
from benchmarks.search_scale import ClusteredStream  # noqa: E402

COPY_NOISE = 0.25
"""Length of the noise added to a unit vector to plant its near copy (cosine about 0.97)."""

COLLECTION = "bench_duplicates_scale"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3,000 rows: checks that it runs (CI)")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in all, planted copies included")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows drawn and written at a time")
    parser.add_argument("--features", type=Path, help="real features for `feature_model.FittedStream`")
    parser.add_argument("--dimension", type=int, default=1280, help="length of the vectors drawn")
    parser.add_argument("--noise", type=float, default=1.0, help="FittedStream's within-class spread scale")
    parser.add_argument("--dims", type=int, default=256, help="project to this many dims first (0: keep them)")
    parser.add_argument("--copies", type=float, default=0.01, help="share of rows that are planted near copies")
    parser.add_argument("--exact", type=float, default=0.001, help="share of rows that are planted exact copies")
    parser.add_argument("--threshold", type=float, default=0.9, help="cosine of a near duplicate")
    parser.add_argument("--neighbours", type=int, default=10)
    parser.add_argument("--server-uri", default="", help="a Milvus server (default: a Milvus Lite file)")
    parser.add_argument("--name", default="duplicates-scale")
    parser.add_argument("--search-uri", help=argparse.SUPPRESS)  # the search side, run in its own group
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.rows, args.chunk, args.features = 3_000, 1_000, None
    return args


def name_of(row: int) -> str:
    return f"/library/{row:07d}.jpg"


def write_collection(args: argparse.Namespace, uri: str) -> tuple[set[tuple[str, str]], set[tuple[str, str]], dict]:
    """Draw, project and write the rows with their planted copies, then build the index AUTO chooses.

    Returns:
        The planted (near, exact) pairs of paths, and what was measured (seconds, index).
    """
    from utilities.milvus.collection import ImageCollection
    from utilities.projection import Projection

    if args.features:
        stream = FittedStream(args.features, args.rows, args.chunk, args.dimension, args.noise)
    else:
        stream = ClusteredStream(args.rows, args.chunk, args.dimension, spread=3.0)
    projection = Projection.fit(next(stream.chunks())[1], args.dims) if args.dims else None
    dimension = args.dims or args.dimension
    store = ImageCollection.open(uri, name=COLLECTION, dimension=dimension, reset=True)
    rng = np.random.default_rng(11)
    near, exact = set(), set()
    started = time.perf_counter()
    for start, drawn in stream.chunks():
        vectors = projection.apply(drawn) if projection is not None else np.array(drawn)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        hashes = [f"h{start + n}" for n in range(len(vectors))]
        planted_near, planted_exact = round(len(vectors) * args.copies), round(len(vectors) * args.exact)
        chosen = rng.choice(len(vectors), 2 * (planted_near + planted_exact), replace=False)
        sources, copies = chosen[: len(chosen) // 2], chosen[len(chosen) // 2 :]
        for n, (source, copy) in enumerate(zip(sources, copies, strict=True)):
            pair = tuple(sorted((name_of(start + source), name_of(start + copy))))
            if n < planted_near:
                noise = rng.standard_normal(dimension).astype(np.float32) * COPY_NOISE / np.sqrt(dimension)
                vectors[copy] = vectors[source] + noise
                vectors[copy] /= np.linalg.norm(vectors[copy])
                near.add(pair)
            else:
                vectors[copy], hashes[copy] = vectors[source], hashes[source]
                exact.add(pair)
        ids = list(range(start, start + len(vectors)))
        store.insert([name_of(i) for i in ids], vectors, ids=ids, hashes=hashes, upsert=False)
        print(f"written {start + len(vectors):,} rows in {time.perf_counter() - started:.0f} s", flush=True)
    store.seal()
    written_s = time.perf_counter() - started
    started = time.perf_counter()
    store.create_index()
    store.wait_for_index()
    measured = {"write_s": written_s, "build_s": time.perf_counter() - started, "index": store.index_summary()}
    store.close()
    return near, exact, measured


def search_side(uri: str, threshold: float, neighbours: int) -> dict:
    """What the search process prints: `find_duplicates` as a user calls it, timed."""
    from utilities.duplicates.finder import find_duplicates
    from utilities.milvus.collection import ImageCollection

    store = ImageCollection.open(uri, name=COLLECTION)
    started = time.perf_counter()
    report = find_duplicates(store, threshold, neighbours, verify=False)
    seconds = time.perf_counter() - started
    store.close()
    return {
        "seconds": seconds,
        "rows": report.rows,
        "groups": len(report.groups),
        "near": sorted({tuple(sorted((p.a, p.b))) for p in report.pairs if p.kind == "near"}),
        "exact": sorted({tuple(sorted((p.a, p.b))) for p in report.pairs if p.kind == "exact"}),
    }


def run_search(uri: str, args: argparse.Namespace, scratch: Path) -> tuple[dict, float]:
    """The search side in its own process group: its answer and the group's peak RSS in MB."""
    command = [sys.executable, __file__, "--search-uri", uri, "--threshold", str(args.threshold)]
    command += ["--neighbours", str(args.neighbours)]
    out = scratch / "search.json"
    _, peak, problem = run_sampled(command, out)
    if problem:
        raise SystemExit(f"the duplicate search failed ({problem})")
    return json.loads(out.read_text()), peak


def index_label(summary: dict) -> str:
    """The index as the table shows it: its type and build parameters (`index_summary`)."""
    params = params_label(summary["index_params"], "")
    return summary["index_type"] + (f" ({params})" if params else "")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.search_uri:
        print(json.dumps(search_side(args.search_uri, args.threshold, args.neighbours)))
        return
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        uri = args.server_uri or str(scratch / "scale.db")
        near, exact, measured = write_collection(args, uri)
        answer, peak_mb = run_search(uri, args, scratch)
        if args.server_uri:
            from utilities.milvus.collection import ImageCollection

            ImageCollection.open(uri, name=COLLECTION).drop()
    found_near = {tuple(pair) for pair in answer["near"]}
    found_exact = {tuple(pair) for pair in answer["exact"]}
    row = [
        f"{answer['rows']:,}",
        f"{args.dims or args.dimension}",
        index_label(measured["index"]),
        f"{answer['seconds']:.1f}",
        f"{answer['rows'] / answer['seconds']:,.0f}",
        f"{peak_mb:,.0f}",
        f"{len(found_near & near) / max(1, len(near)):.3f} ({len(near):,})",
        f"{len(found_exact & exact) / max(1, len(exact)):.3f} ({len(exact):,})",
        f"{len(found_near - near):,}",
        f"{answer['groups']:,}",
        f"{measured['write_s']:.0f} / {measured['build_s']:.0f}",
    ]
    print(" | ".join(row))
    drawn = (
        f"drawn from a model fitted to real features (`feature_model.py`, noise {args.noise})"
        if args.features
        else "in 1,000 overlapping random clusters (spread 3.0)"
    )
    write_table(
        args.name,
        "Duplicate search over a whole collection: time and client memory",
        ["rows", "dims", "index (AUTO)", "search s", "rows/s", "client peak RSS MB", "planted near copies found"]
        + ["planted exact copies found", "other pairs at the threshold", "groups", "write / index build s"],
        [row],
        [
            f"{args.dimension}-d vectors {drawn}"
            + (f", projected to {args.dims} dims (centred PCA fitted on {args.chunk:,})" if args.dims else "")
            + f"; {args.copies:.1%} planted near copies (cosine about 0.97), {args.exact:.1%} exact copies (same "
            f"hash); threshold {args.threshold}, {args.neighbours} neighbours a row, no keypoint check",
            "Milvus "
            + ("server" if args.server_uri else "Lite")
            + "; client peak RSS: the search process group summed, sampled every 0.2 s"
            + (" (the server is not in it)" if args.server_uri else " (Milvus Lite's process is in it)"),
        ],
        packages=["pymilvus", "milvus-lite", "numpy"],
    )


if __name__ == "__main__":
    main()
