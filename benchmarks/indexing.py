"""Indexing a folder end to end: does embedding overlap inserting, and is memory bounded?

Part 1 (per backend): time `index_paths` (decode + embed + insert) against embedding
alone (`embed_paths`) and inserting the same vectors alone (through the same `BatchWriter`,
so with the same requests and writes in flight); the goal is
total <= 1.1 x max(embed alone, insert alone). `--writes-in-flight 1 2 4` repeats both for
each number of concurrent writes; `--insert-dims 256` adds the insert alone of vectors with
fewer dimensions (what reduced vectors would save the store).
Part 2: peak resident memory of a fresh process indexing N photos, for two values of N
with the same batch size: bounded by the batch size, it should barely grow with N.

Usage:
    python benchmarks/indexing.py [--quick] [--count N] [--server-uri http://127.0.0.1:19530]
    KERAS_BACKEND=jax python benchmarks/indexing.py --count 16384 --batch-size 256 \
        --writes-in-flight 1 2 4 --insert-dims 256 --memory-counts   # on a GPU
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
from utilities.images.finding import find_images
from utilities.milvus.collection import ImageCollection
from utilities.indexing.pipeline import index_paths
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
    parser.add_argument(
        "--memory-counts", type=int, nargs="*", default=[64, 512], help="folder sizes for part 2 (none: skip it)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--writes-in-flight", type=int, nargs="+", default=[2], help="concurrent writes to compare")
    parser.add_argument("--insert-dims", type=int, nargs="*", default=[], help="also insert alone at these dims")
    parser.add_argument("--decoder", choices=["thread", "process", "gpu"], help="default: the package's choice")
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--name", default="indexing")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.memory_counts, args.batch_size = 16, [8, 24], 8
    return args


def insert_alone(uri: str, paths: list[str], vectors, batch_size: int, in_flight: int) -> float:
    """Seconds to write the vectors through a `BatchWriter`, handed over `batch_size` rows at a time."""
    from utilities.ids import path_id
    from utilities.indexing.batch_writer import BatchWriter
    from utilities.milvus.collection import ImageCollection
    from utilities.records import ImageRecord

    store = ImageCollection.open(uri, name="bench_insert", dimension=vectors.shape[1], reset=True)
    started = time.perf_counter()

    def record(path: str, vector) -> ImageRecord:
        return ImageRecord(path_id(path), path, vector=vector)

    with BatchWriter(store, record, in_flight=in_flight) as writer:
        for start in range(0, len(paths), batch_size):
            writer.add(paths[start : start + batch_size], vectors[start : start + batch_size])
    seconds = time.perf_counter() - started
    assert store.count() == len(paths)
    store.drop()
    store.close()
    return seconds


def overlap(uri: str, paths: list[Path], embedder, args: argparse.Namespace, in_flight: int, embedded) -> list[object]:
    from utilities.indexing import batch_writer
    from utilities.indexing.pipeline import index_paths
    from utilities.milvus.collection import ImageCollection

    insert_seconds = insert_alone(uri, embedded.paths, embedded.vectors, args.batch_size, in_flight)
    store = ImageCollection.open(uri, name="bench_overlap", dimension=2048, reset=True)
    batch_writer.WRITES_IN_FLIGHT, default = in_flight, batch_writer.WRITES_IN_FLIGHT
    try:
        started = time.perf_counter()
        report = index_paths(paths, store, embedder, args.batch_size, progress=False, decoder=args.decoder)
        total = time.perf_counter() - started
    finally:
        batch_writer.WRITES_IN_FLIGHT = default
    assert report.indexed == len(paths) == store.count()
    store.drop()
    store.close()
    embed_seconds = embedded.seconds
    ratio = total / max(embed_seconds, insert_seconds)
    label = "server" if uri.startswith("http") else "Milvus Lite"
    rates = [len(paths) / seconds for seconds in (embed_seconds, insert_seconds, total)]
    return [
        label,
        len(paths),
        in_flight,
        f"{embed_seconds:.2f} ({rates[0]:,.0f}/s)",
        f"{insert_seconds:.2f} ({rates[1]:,.0f}/s)",
        f"{total:.2f} ({rates[2]:,.0f}/s)",
        f"{ratio:.2f}",
        f"{rates[2] / rates[0]:.2f}",
    ]


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


def embed_alone(paths: list[Path], embedder, args: argparse.Namespace):
    """The vectors of the photos and the seconds `embed_paths` took (best of two)."""
    from utilities.indexing.pipeline import embed_paths

    best = None
    for _ in range(2):
        started = time.perf_counter()
        embedded = embed_paths(paths, embedder, args.batch_size, progress=False, decoder=args.decoder)
        seconds = time.perf_counter() - started
        best = seconds if best is None else min(best, seconds)
    embedded.seconds = best
    return embedded


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.embeddings import ResNet50Embedder
    from utilities.images.finding import find_images

    paths = find_images(args.images)[: args.count]
    embedder = ResNet50Embedder(weights=None, batch_size=args.batch_size)
    started = time.perf_counter()
    embedded = embed_alone(paths, embedder, args)  # the first round also compiles every batch shape
    notes = [f"model built and first pass (compiling) in {time.perf_counter() - started:.1f} s"]
    rows = []
    for in_flight in args.writes_in_flight:
        with tempfile.TemporaryDirectory() as scratch:
            rows.append(overlap(f"{scratch}/bench.db", paths, embedder, args, in_flight, embedded))
        if args.server_uri:
            rows.append(overlap(args.server_uri, paths, embedder, args, in_flight, embedded))
    for dims in args.insert_dims:
        vectors = embedded.vectors[:, :dims].copy()
        with tempfile.TemporaryDirectory() as scratch:
            seconds = insert_alone(f"{scratch}/bench.db", embedded.paths, vectors, args.batch_size, 2)
        notes.append(
            f"insert alone of {dims}-d vectors into Milvus Lite (2 in flight): {seconds:.2f} s "
            f"({len(paths) / seconds:,.0f} rows/s)"
        )
    notes.append("goal: total / max(embed alone, insert alone) <= 1.1; index/embed: index_paths' rate over embed's")
    for count in args.memory_counts:
        memory = peak_memory(args.images, count, args.batch_size)
        notes.append(
            f"peak RSS indexing {count} photos (batch {args.batch_size}, Milvus Lite, fresh process): "
            f"{memory['peak_mb']:.0f} MB (after building the model: {memory['before_mb']:.0f} MB)"
        )
    write_table(
        args.name,
        "Indexing a folder: overlap and memory",
        [
            "backend",
            "photos",
            "writes in flight",
            "embed alone (s)",
            "insert alone (s)",
            "index_paths (s)",
            "ratio",
            "index/embed",
        ],
        rows,
        notes,
        packages=["keras", "tensorflow-cpu", "jax", "pymilvus", "milvus-lite", "milvus"],
    )


if __name__ == "__main__":
    main()
