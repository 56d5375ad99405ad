"""Insert throughput (rows/s) of 2048-d vectors with paths: the package against plain pymilvus.

For each backend (Milvus Lite, and the server at --server-uri / $MILVUS_URI when given) the same
rows go into fresh collections: first with plain `MilvusClient.insert` at several request sizes
(the best of them is the baseline), then with `ImageCollection.insert` (insert and upsert).

Usage:
    python benchmarks/insert.py [--quick] [--rows N] [--server-uri http://127.0.0.1:19530]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import write_table  # noqa: E402

DIMENSION = 2048


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few rows: checks that it runs (CI)")
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--name", default="insert")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.rows = 1_000
    return args


def plain_insert(client, name: str, paths: list[str], vectors: np.ndarray, rows_per_request: int) -> None:
    """The baseline: pymilvus' MilvusClient.insert with row dicts, fixed rows per request."""
    for start in range(0, len(paths), rows_per_request):
        stop = min(start + rows_per_request, len(paths))
        client.insert(
            name,
            [
                {"id": i, "path": paths[i], "vector": vectors[i], "file_size": 0, "mtime_ns": 0, "content_hash": ""}
                for i in range(start, stop)
            ],
        )


def measure(uri: str, paths: list[str], vectors: np.ndarray) -> list[list[object]]:
    from utilities.milvus.collection import ImageCollection

    rows: list[list[object]] = []
    plain_rates = {}
    for rows_per_request in (100, 250, 1000):
        store = ImageCollection.open(uri, name="bench_plain", dimension=DIMENSION, reset=True)
        started = time.perf_counter()
        plain_insert(store.client, store.name, paths, vectors, rows_per_request)
        plain_rates[rows_per_request] = len(paths) / (time.perf_counter() - started)
        assert store.count() == len(paths)
        store.drop()
    best_size = max(plain_rates, key=plain_rates.get)
    for size, rate in plain_rates.items():
        rows.append([uri_label(uri), f"plain MilvusClient.insert, {size} rows/request", f"{rate:.0f}", ""])
    for upsert in (False, True):
        store = ImageCollection.open(uri, name="bench_package", dimension=DIMENSION, reset=True)
        started = time.perf_counter()
        store.insert(paths, vectors, ids=list(range(len(paths))), upsert=upsert)
        rate = len(paths) / (time.perf_counter() - started)
        assert store.count() == len(paths)
        store.drop()
        label = "package ImageCollection." + (
            "insert(upsert=True), the pipeline's" if upsert else "insert(upsert=False)"
        )
        rows.append([uri_label(uri), label, f"{rate:.0f}", f"{rate / plain_rates[best_size]:.2f}"])
    store.close()
    return rows


def uri_label(uri: str) -> str:
    return "server" if uri.startswith("http") else "Milvus Lite"


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(args.rows, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    paths = [f"/data/photos/class_{i % 10}/image_{i:07d}.jpg" for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as folder:
        rows = measure(str(Path(folder) / "bench.db"), paths, vectors)
    notes = [
        f"{args.rows} rows of {DIMENSION}-d float32 with a ~40-byte path; 'vs best plain' divides by the "
        "fastest plain request size on the same backend (goal >= 0.9)"
    ]
    if args.server_uri:
        rows += measure(args.server_uri, paths, vectors)
    else:
        notes.append("no server measured: pass --server-uri or set MILVUS_URI")
    write_table(
        args.name,
        "Insert throughput (rows/s)",
        ["backend", "method", "rows/s", "vs best plain"],
        rows,
        notes,
        packages=["pymilvus", "milvus-lite", "milvus", "numpy"],
    )


if __name__ == "__main__":
    main()
