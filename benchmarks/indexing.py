"""Indexing a folder end to end: does embedding overlap inserting, and is memory bounded?

Part 1 (per backend): time `index_paths` (decode + embed + insert) against embedding
alone (`embed_paths`) and inserting the same vectors alone; the goal is
total <= 1.1 x max(embed alone, insert alone).
Part 2: peak resident memory of a fresh process indexing N photos, for two values of N
with the same batch size: bounded by the batch size, it should barely grow with N.

Usage:
    python benchmarks/indexing.py [--quick] [--count N] [--server-uri http://127.0.0.1:19530]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import default_images, write_table  # noqa: E402

CHILD = """
import json, resource, sys, time
from utilities.embeddings import ResNet50Embedder
from utilities.images import find_images
from utilities.milvus_store import ImageCollection
from utilities.pipeline import index_paths
folder, count, uri, batch = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
paths = find_images(folder)[:count]
store = ImageCollection.open(uri, name="bench_memory", dimension=2048, reset=True)
embedder = ResNet50Embedder(weights=None, batch_size=batch)
embedder.embed_batch(__import__("numpy").zeros((1, 224, 224, 3), "uint8"))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
report = index_paths(paths, store, embedder, batch_size=batch, progress=False)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"indexed": report.indexed, "before_mb": before / 1024, "peak_mb": peak / 1024}))
"""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, default=default_images(), help="default: %(default)s")
    parser.add_argument("--count", type=int, default=256, help="photos for part 1")
    parser.add_argument("--memory-counts", type=int, nargs=2, default=[64, 512], help="folder sizes for part 2")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--name", default="indexing")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.memory_counts, args.batch_size = 16, [8, 24], 8
    return args


def overlap(uri: str, paths: list[Path], embedder, batch_size: int) -> list[object]:
    from utilities.milvus_store import ImageCollection
    from utilities.pipeline import embed_paths, index_paths

    started = time.perf_counter()
    embedded = embed_paths(paths, embedder, batch_size, progress=False)
    embed_alone = time.perf_counter() - started
    store = ImageCollection.open(uri, name="bench_overlap", dimension=2048, reset=True)
    started = time.perf_counter()
    store.insert(embedded.paths, embedded.vectors)
    insert_alone = time.perf_counter() - started
    store = ImageCollection.open(uri, name="bench_overlap", dimension=2048, reset=True)
    started = time.perf_counter()
    report = index_paths(paths, store, embedder, batch_size, progress=False)
    total = time.perf_counter() - started
    assert report.indexed == len(paths) == store.count()
    store.drop()
    store.close()
    ratio = total / max(embed_alone, insert_alone)
    label = "server" if uri.startswith("http") else "Milvus Lite"
    return [label, len(paths), f"{embed_alone:.2f}", f"{insert_alone:.2f}", f"{total:.2f}", f"{ratio:.2f}"]


def peak_memory(folder: Path, count: int, batch_size: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(folder), str(count), f"{scratch}/m.db", str(batch_size)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.embeddings import ResNet50Embedder
    from utilities.images import find_images

    paths = find_images(args.images)[: args.count]
    embedder = ResNet50Embedder(weights=None, batch_size=args.batch_size)
    from utilities.pipeline import embed_paths

    embed_paths(paths, embedder, args.batch_size, progress=False)  # compile every batch shape first
    with tempfile.TemporaryDirectory() as scratch:
        rows = [overlap(f"{scratch}/bench.db", paths, embedder, args.batch_size)]
    if args.server_uri:
        rows.append(overlap(args.server_uri, paths, embedder, args.batch_size))
    notes = ["goal: total / max(embed alone, insert alone) <= 1.1"]
    for count in args.memory_counts:
        memory = peak_memory(args.images, count, args.batch_size)
        notes.append(
            f"peak RSS indexing {count} photos (batch {args.batch_size}, Milvus Lite, fresh process): "
            f"{memory['peak_mb']:.0f} MB (after building the model: {memory['before_mb']:.0f} MB)"
        )
    write_table(
        args.name,
        "Indexing a folder: overlap and memory",
        ["backend", "photos", "embed alone (s)", "insert alone (s)", "index_paths (s)", "ratio"],
        rows,
        notes,
        packages=["keras", "tensorflow-cpu", "pymilvus", "milvus-lite", "milvus"],
    )


if __name__ == "__main__":
    main()
