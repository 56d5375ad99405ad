"""The package's own cost per file at scale: N tiny generated JPEGs and a near-free embedder.

Only the package's and Milvus' costs show: planning, hashing, inserting, re-runs, prune, the
mapping, search. For each backend (Milvus Lite, and the server at --server-uri) and each N:

- baseline: plain `MilvusClient.insert` of the same N rows (2048-d) into a fresh collection;
- first run: `index_paths` of the N files into a fresh collection, with its ratio to the baseline;
- unchanged re-run, re-run with prune, the mapping written on demand and then patched with 100
  rewritten rows (as after a small run), 100 searches;
- the indexing process' peak memory (ru_maxrss: the whole process, Milvus Lite included).

Each phase is reported in µs per file, and the largest N against the smallest.

Usage:
    python benchmarks/scale.py [--quick] [--counts 20000 100000] [--server-uri http://127.0.0.1:19530] [--no-lite]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import folder_mb, group_rss_mb, write_table  # noqa: E402

DIMENSION = 2048
IMAGE_SIZE = 32
FILES_PER_FOLDER = 1000


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few files: checks that it runs (CI)")
    parser.add_argument("--counts", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--no-lite", action="store_true", help="measure the server only")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument(
        "--decoder",
        choices=("thread", "process"),
        default=None,
        help="decoding in threads or processes (default: the package's)",
    )
    parser.add_argument("--workdir", type=Path, default=None, help="where the files go (default: a temp dir)")
    parser.add_argument(
        "--seal-after", type=int, default=None, help="override pipeline.SEAL_AFTER_ROWS (a huge value: never seal)"
    )
    parser.add_argument(
        "--writes-in-flight", type=int, default=None, help="override batch_writer.WRITES_IN_FLIGHT (1: one at a time)"
    )
    parser.add_argument(
        "--write-delay",
        type=float,
        default=None,
        help="override batch_writer.WRITE_DELAY_SECONDS (0: every batch written at once, unfilled requests)",
    )
    parser.add_argument(
        "--server-index", default="HNSW", help="index created on the server before the first run (HNSW, FLAT...)"
    )
    parser.add_argument("--server-pgid", type=int, default=0, help="the server's process group, to report its RSS")
    parser.add_argument("--server-data", type=Path, help="the server's data folder, to report its size on disk")
    parser.add_argument(
        "--baseline-max",
        type=int,
        default=0,
        help="measure the plain-insert baseline only up to this many files; above, scale the smallest "
        "count's per-row time (saves writing the rows twice; 0: always measure)",
    )
    parser.add_argument("--name", default="scale")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.counts = [500, 1500]
    return args


def make_files(folder: Path, count: int) -> list[str]:
    """`count` distinct 32x32 JPEGs in sub-folders of 1,000 (generated once, reused)."""
    from PIL import Image

    paths = [folder / f"{i // FILES_PER_FOLDER:05d}" / f"{i:07d}.jpg" for i in range(count)]
    marker = folder / f".complete-{count}"
    if marker.exists():
        return [p.as_posix() for p in paths]
    rng = np.random.default_rng(0)
    centres = rng.uniform(0, 255, (max(1, count // 100), IMAGE_SIZE, IMAGE_SIZE, 3))
    for i, path in enumerate(paths):
        if i % FILES_PER_FOLDER == 0:
            path.parent.mkdir(parents=True, exist_ok=True)
        # clusters of ~100 images that overlap: the noise is as wide as the spread of the centres
        noisy = centres[int(rng.integers(len(centres)))] + rng.normal(0, 70, (IMAGE_SIZE, IMAGE_SIZE, 3))
        Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(path, quality=90)
    marker.touch()
    return [p.as_posix() for p in paths]


PROJECTION_INPUTS = 48


def projection() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((PROJECTION_INPUTS, DIMENSION)).astype(np.float32)


def near_free_embedder():
    """2048-d unit vectors from 48 pixels by a fixed random projection: almost no work."""
    from utilities.embeddings import embedder_from_callable, l2_normalize

    weights = projection()
    return embedder_from_callable(
        lambda batch: l2_normalize(batch.reshape(len(batch), -1)[:, :PROJECTION_INPUTS].astype(np.float32) @ weights),
        DIMENSION,
        IMAGE_SIZE,
    )


def exact_top10(paths: list[str], queries: np.ndarray) -> list[set[str]]:
    """The true 10 nearest files of each query (cosine), computed from the decoded files in chunks."""
    from utilities.embeddings import l2_normalize
    from utilities.images.reader import iter_decoded_batches

    weights = projection()
    best_scores = np.full((len(queries), 0), -np.inf, np.float32)
    best_paths: list[list[str]] = [[] for _ in queries]
    for batch in iter_decoded_batches(paths, 4096, IMAGE_SIZE):
        names = [p.as_posix() for p in batch.paths]
        vectors = l2_normalize(batch.images.reshape(len(names), -1)[:, :PROJECTION_INPUTS].astype(np.float32) @ weights)
        scores = np.concatenate([best_scores, queries @ vectors.T], axis=1)
        candidates = [row + names for row in best_paths]
        order = np.argsort(-scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(scores, order, axis=1)
        best_paths = [[candidates[q][j] for j in order[q]] for q in range(len(queries))]
    return [set(row) for row in best_paths]


def plain_insert_seconds(uri: str, paths: list[str]) -> tuple[float, float]:
    """The baseline: rows of random vectors written with plain `MilvusClient.insert`, in requests of
    the package's byte budget for that backend; then the seconds of one seal (flush) of those rows."""
    from utilities.ids import path_id
    from utilities.milvus.collection import MAX_REQUEST_BYTES, SERVER_MAX_REQUEST_BYTES, ImageCollection

    store = ImageCollection.open(uri, name="bench_scale_plain", dimension=DIMENSION, reset=True)
    per_request = (MAX_REQUEST_BYTES if store.target.is_lite else SERVER_MAX_REQUEST_BYTES) // (DIMENSION * 4 + 64)
    vectors = np.random.default_rng(2).standard_normal((per_request, DIMENSION)).astype(np.float32)
    started = time.perf_counter()
    for start in range(0, len(paths), per_request):
        chunk = paths[start : start + per_request]
        store.client.insert(
            store.name,
            [
                {
                    "id": path_id(path),
                    "path": path,
                    "vector": vectors[i],
                    "file_size": 0,
                    "mtime_ns": 0,
                    "content_hash": "",
                }
                for i, path in enumerate(chunk)
            ],
        )
    seconds = time.perf_counter() - started
    seal_seconds, _ = timed(store.seal)
    store.drop()
    store.close()
    return seconds, seal_seconds


def time_calls(target: object, methods: tuple[str, ...]) -> dict[str, float]:
    """Wrap these methods of one object so that the seconds spent in them add up in the returned dict."""
    spent = {"seconds": 0.0}
    for name in methods:
        original = getattr(target, name)

        def wrapper(*args, _original=original, **kwargs):
            started = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                spent["seconds"] += time.perf_counter() - started

        setattr(target, name, wrapper)
    return spent


def timed(function) -> tuple[float, object]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def server_facts(args: argparse.Namespace) -> str:
    """The server's RSS (now and peak, over its process group) and data folder size, where given."""
    facts = []
    if args.server_pgid:
        now, peak = group_rss_mb(args.server_pgid)
        facts.append(f"RSS {now:,.0f} MB (peak {peak:,.0f} MB)")
    if args.server_data:
        facts.append(f"data folder {folder_mb(args.server_data):,.0f} MB on disk")
    return ", ".join(facts)


def measure(
    uri: str,
    folder: Path,
    paths: list[str],
    batch_size: int,
    server_index: str = "HNSW",
    observe: Callable[[], str] | None = None,
    baseline_per_file: float | None = None,
    decoder: str | None = None,
) -> dict[str, Any]:
    from utilities.catalog import load_mapping, mapping_from_collection, save_mapping, update_mapping
    from utilities.indexing.pipeline import index_paths
    from utilities.milvus.collection import ImageCollection

    count = len(paths)
    if baseline_per_file is None:
        insert_seconds, seal_seconds = plain_insert_seconds(uri, paths)
        results: dict[str, Any] = {"plain insert": insert_seconds, "plain seal": seal_seconds}
    else:  # not measured at this size (disk): the smaller run's seconds per row, scaled
        results = {"plain insert": baseline_per_file * count, "plain seal": None}
    embedder = near_free_embedder()
    store = ImageCollection.open(uri, name="bench_scale", dimension=DIMENSION, reset=True)
    index_type = "FLAT" if store.target.is_lite else server_index.upper()
    store.create_index(index_type)  # the user's index exists before the files arrive
    sealing = time_calls(store, ("seal", "wait_for_index"))
    seconds, report = timed(lambda: index_paths(paths, store, embedder, batch_size, progress=False, decoder=decoder))
    assert report.added == count, report
    results["first run"] = seconds
    results["first run sealing"] = sealing.pop("seconds")
    seconds, report = timed(lambda: index_paths(paths, store, embedder, batch_size, progress=False, decoder=decoder))
    assert report.unchanged == count and report.indexed == 0, report
    results["unchanged re-run"] = seconds
    seconds, report = timed(
        lambda: index_paths(
            paths, store, embedder, batch_size, progress=False, prune_root=folder.as_posix(), decoder=decoder
        )
    )
    assert report.unchanged == count and report.removed == 0, report
    results["re-run with prune"] = seconds
    mapping_file = folder.parent / "scale.mapping.csv"

    def read_and_write_mapping():
        frame = mapping_from_collection(store)
        save_mapping(frame, mapping_file)
        return frame

    seconds, mapping = timed(read_and_write_mapping)
    results["mapping"] = seconds
    # what the engine does after a run that rewrote 100 rows: the saved file patched with them
    patch = [
        (int(row.id), row.path, int(row.file_size), int(row.mtime_ns) + 1) for row in mapping.head(100).itertuples()
    ]
    seconds, _ = timed(lambda: update_mapping(store, mapping_file, patch, []))
    results["mapping patched"] = seconds
    from utilities.images.decoding import decode_for_model

    picked = np.random.default_rng(3).choice(count, 100, replace=False)
    queries = embedder.embed_batch(np.stack([decode_for_model(paths[i], IMAGE_SIZE) for i in picked]))
    truth = exact_top10(paths, queries)
    latencies, found = [], 0
    for query, true_paths in zip(queries, truth, strict=True):
        started = time.perf_counter()
        hits = store.search(query[None], top_k=10)[0]
        latencies.append(time.perf_counter() - started)
        found += len({hit["entity"]["path"] for hit in hits} & true_paths)
    results["search p50 ms"] = float(np.median(latencies)) * 1000
    results["recall@10"] = found / (10 * len(queries))
    results["index"] = index_type
    for ef in (256, 512) if index_type == "HNSW" else ():
        found = sum(
            len(
                {hit["entity"]["path"] for hit in store.search(query[None], 10, store.search_params(10, ef=ef))[0]}
                & true
            )
            for query, true in zip(queries, truth, strict=True)
        )
        results["index"] += f" (ef={ef}: {found / (10 * len(queries)):.3f})"
    results["peak MB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert store.count() == count and len(load_mapping(mapping_file)) == count
    results["server"] = observe() if observe else ""
    store.drop()
    store.close()
    return results


PHASES = ("plain insert", "first run", "unchanged re-run", "re-run with prune", "mapping", "mapping patched")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    if args.seal_after is not None:
        from utilities.indexing import pipeline

        pipeline.SEAL_AFTER_ROWS = args.seal_after
    from utilities.indexing import batch_writer

    if args.writes_in_flight is not None:
        batch_writer.WRITES_IN_FLIGHT = args.writes_in_flight
    if args.write_delay is not None:
        batch_writer.WRITE_DELAY_SECONDS = args.write_delay
    work = args.workdir or Path(tempfile.mkdtemp(prefix="scale-"))
    backends = ([] if args.no_lite else [("Milvus Lite", str(work / "scale.db"))]) + (
        [("server", args.server_uri)] if args.server_uri else []
    )
    rows: list[list[object]] = []
    server_notes: list[str] = []
    try:
        for label, uri in backends:
            per_file: dict[int, dict[str, float]] = {}
            for count in args.counts:
                folder = work / f"files-{count}"
                started = time.perf_counter()
                paths = make_files(folder, count)
                print(f"{count} files ready in {time.perf_counter() - started:.0f} s", flush=True)
                observe = (lambda: server_facts(args)) if label == "server" else None
                estimated = bool(args.baseline_max and count > args.baseline_max and per_file)
                baseline = per_file[min(per_file)]["plain insert"] / 1e6 if estimated else None
                results = measure(
                    uri, folder, paths, args.batch_size, args.server_index, observe, baseline, args.decoder
                )
                if estimated:
                    server_notes.append(
                        f"{label}, {count:,} files: plain insert not measured (disk); the {min(per_file):,}-file "
                        "run's time per row, scaled"
                    )
                if results.get("server"):
                    server_notes.append(
                        f"server with {count:,} rows, before the collection is dropped: {results['server']}"
                    )
                per_file[count] = {phase: results[phase] / count * 1e6 for phase in PHASES}
                rows.append(
                    [label, f"{count:,}"]
                    + [f"{per_file[count][phase]:.0f}" for phase in PHASES]
                    + [
                        f"{results['first run'] / results['plain insert']:.2f}",
                        f"{results['first run sealing']:.1f}",
                        "" if results["plain seal"] is None else f"{results['plain seal']:.1f}",
                        ""
                        if results["plain seal"] is None
                        else (f"{results['first run'] / (results['plain insert'] + results['plain seal']):.2f}"),
                        f"{results['index']} {results['recall@10']:.3f}",
                        f"{results['search p50 ms']:.1f}",
                        f"{results['peak MB']:.0f}",
                    ]
                )
                print(rows[-1], flush=True)
            smallest, largest = min(per_file), max(per_file)
            if largest != smallest:
                rows.append(
                    [label, f"{largest:,} / {smallest:,}"]
                    + [f"{per_file[largest][phase] / per_file[smallest][phase]:.2f}" for phase in PHASES]
                    + [""] * 7
                )
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    write_table(
        args.name,
        "Per-file cost at scale (tiny generated files, near-free embedder)",
        [
            "backend",
            "files",
            *[f"{phase} µs/file" for phase in PHASES],
            "first run / plain insert",
            "first run: seal + index wait s",
            "plain insert's seal s",
            "first run / (plain insert + seal)",
            "index recall@10 right after the run",
            "search p50 ms",
            "peak MB",
        ],
        rows,
        notes=[
            "Files: distinct 32x32 JPEGs; embedder: a fixed random projection of 48 pixels to 2048-d "
            "(almost free), so only the package's and Milvus' own costs show.",
            "plain insert: MilvusClient.insert of the same rows, in requests of the package's byte budget; "
            "its seal: one flush of those rows, as a run that writes many rows ends with one (so that searches "
            "use the index); the first run's own seal and wait for the index are in its time and shown apart.",
            "mapping: the whole id-to-path mapping read from the collection and written as CSV; mapping patched: "
            "that file patched with 100 rewritten rows (`catalog.update_mapping`, what the engine does after a "
            "run), per file of the collection.",
            "Recall: the collection's index (server: --server-index, by default HNSW M=16, efConstruction=200 "
            "searched with ef=128; Lite "
            "FLAT) was created before the first run; 100 of the files, embedded again, are searched right "
            "after that run, against the exact top 10 by cosine. The files form overlapping clusters of ~100.",
            "A ratio row divides the largest N's µs/file by the smallest N's.",
            "peak MB: ru_maxrss of the benchmark process (Milvus Lite runs its server in a child process).",
            *server_notes,
        ],
        packages=["pymilvus", "milvus-lite", "numpy"],
    )


if __name__ == "__main__":
    main()
