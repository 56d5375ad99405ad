"""Indexing on Ray Data against the single-process pipeline, on the same photos, in one run.

Both write the same photos into fresh collections on the Milvus server, with the same
random-weights ResNet50 and batch size. The single-process run reuses a model already built
and compiled; the Ray run starts its actors, each of which builds and compiles its own model,
so Ray's own overhead (scheduling, object store, actor start-up) shows in full.
Goal on 2 cores: Ray throughput >= 0.8 x single-process.

Usage:
    python benchmarks/ray_indexing.py --server-uri http://127.0.0.1:19530 [--quick] [--count N]
        [--ray-address auto] [--actors 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import default_images, shown_path, write_table  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, default=default_images(), help="default: %(default)s")
    parser.add_argument("--count", type=int, default=1000, help="photos to index")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""), help="the Milvus server")
    parser.add_argument(
        "--ray-address", default=os.environ.get("RAY_TEST_ADDRESS"), help="cluster to join (default: a local Ray)"
    )
    parser.add_argument("--actors", type=int, default=1, help="embedding actors")
    parser.add_argument("--name", default="ray-indexing")
    args = parser.parse_args(argv)
    if not args.server_uri:
        parser.error("--server-uri is required: Ray writes from several processes, which Milvus Lite does not allow")
    if args.quick:
        args.name += "-quick"
        args.count, args.batch_size = 24, 8
    return args


def timed_run(paths: list[Path], uri: str, name: str, index) -> tuple[float, object]:
    """Seconds `index(store)` takes on a fresh collection, and its report (the collection is dropped)."""
    from utilities.milvus.collection import ImageCollection

    store = ImageCollection.open(uri, name=name, dimension=2048, reset=True)
    try:
        started = time.perf_counter()
        report = index(store)
        seconds = time.perf_counter() - started
        assert report.indexed == store.count() and not report.failed, report
    finally:
        store.drop()
        store.close()
    return seconds, report


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.embeddings import ResNet50Embedder
    from utilities.images.finding import find_images
    from utilities.indexing.on_ray import RayOptions, connect, index_paths_on_ray
    from utilities.indexing.pipeline import embed_paths, index_paths

    paths = find_images(args.images)[: args.count]
    embedder = ResNet50Embedder(weights=None, batch_size=args.batch_size)
    embed_paths(paths[: args.batch_size * 2], embedder, args.batch_size, progress=False)  # compile first
    ray = connect(args.ray_address)
    cpus = int(ray.cluster_resources().get("CPU", 0))
    gpus = int(ray.cluster_resources().get("GPU", 0))
    options = RayOptions(address=args.ray_address, embed_actors=args.actors)

    single, _ = timed_run(
        paths,
        args.server_uri,
        "bench_ray_single",
        lambda store: index_paths(paths, store, embedder, args.batch_size, progress=False),
    )
    rows = [["single process", len(paths), f"{single:.1f}", f"{len(paths) / single:.1f}", "1.00"]]
    for separate in (False, True):
        chosen = dataclasses.replace(options, separate_decoding=separate)
        on_ray, report = timed_run(
            paths,
            args.server_uri,
            "bench_ray",
            lambda store, chosen=chosen: index_paths_on_ray(
                paths, store, embedder, chosen, args.batch_size, progress=False
            ),
        )
        how = "decoding in separate tasks" if separate else "decoding fused into the actor"
        rows.append(
            [
                f"Ray Data, {args.actors} actor{'s' * (args.actors > 1)}, {how} "
                f"(on {len(report.decode_nodes)} node(s))",
                len(paths),
                f"{on_ray:.1f}",
                f"{len(paths) / on_ray:.1f}",
                f"{single / on_ray:.2f}",
            ]
        )
    write_table(
        args.name,
        "Indexing on Ray Data against the single-process pipeline",
        ["path", "photos", "seconds", "images/s", "throughput vs single process"],
        rows,
        [
            f"Ray cluster: {cpus} CPUs, {gpus} GPUs ({'joined ' + args.ray_address if args.ray_address else 'local'})",
            f"photos: {shown_path(args.images)}; ResNet50 with random weights, batch {args.batch_size}; "
            f"Milvus server {args.server_uri}",
            "single process: model built and compiled before timing; Ray: each actor builds and compiles its "
            "own model inside the timed run",
            "goal on 2 cores: Ray >= 0.8 x single process. Without GPUs Ray Data fuses decoding into the "
            "actors by default (`RayOptions.separate_decoding` None); with GPUs decoding runs in separate tasks",
        ],
        packages=["ray", "keras", "tensorflow-cpu", "jax", "pymilvus", "milvus"],
    )


if __name__ == "__main__":
    main()
