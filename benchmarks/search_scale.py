"""Search at ImageNet scale (1.28 M vectors) without holding the vectors in memory.

`search.py` keeps every vector in a numpy array, which at 1.28 M x 2048 float32 (10.5 GB)
would be held twice beside a Milvus server on a 24 GB machine. This script draws the same
kind of clustered vectors chunk by chunk from per-chunk seeds, so each pass (exact ground
truth, FAISS, Milvus) regenerates them instead of keeping them: only one chunk, the queries
and the indexes are in memory at a time. It measures IVF_FLAT on Milvus (a server, or a
Milvus Lite file when no server is given) and on FAISS with the same nlist and nprobe:
insert rate, build time, first query after load, p50/p99 of single queries, QPS in batches
of 100, recall@10 against exact search, and peak memory of this process and of the server.

Usage:
    python benchmarks/search_scale.py --rows 1280000 --server-uri http://127.0.0.1:19530 \
        --server-pgid PGID
    python benchmarks/search_scale.py --quick [--server-uri ...]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import group_rss_mb, params_label, write_table  # noqa: E402
from benchmarks.search import COLUMNS, TOP_K, batch_qps, children_peak_mb, latencies, peak_self_mb, recall  # noqa: E402

CENTRES = 1000


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few vectors: checks that it runs (CI)")
    parser.add_argument("--rows", type=int, default=1_280_000)
    parser.add_argument("--chunk", type=int, default=20_000, help="vectors drawn, searched and inserted at a time")
    parser.add_argument("--dimension", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--spread", type=float, default=0.7, help="noise around the centres, as in search.py")
    parser.add_argument("--nlist", type=int, default=256, help="IVF lists (Milvus builds them per segment)")
    parser.add_argument("--nprobe", default="8,32,64", help="comma-separated nprobe values to search with")
    parser.add_argument("--train", type=int, default=65_536, help="vectors FAISS trains its IVF quantizer on")
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--server-pgid", type=int, default=0, help="process group of the server, to report its RSS")
    parser.add_argument("--skip-faiss", action="store_true")
    parser.add_argument("--name", default="search-scale")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.rows, args.chunk, args.queries, args.nlist, args.train = 6_000, 2_000, 20, 32, 2_000
    return args


class ClusteredStream:
    """Clustered unit vectors around fixed centres, drawn chunk by chunk from per-chunk seeds.

    Chunk `i` is the same array on every pass, so a pass never needs the earlier ones.
    """

    def __init__(self, rows: int, chunk: int, dimension: int, spread: float, seed: int = 0) -> None:
        self.rows, self.chunk, self.dimension, self.spread, self.seed = rows, chunk, dimension, spread, seed
        self.centres = np.random.default_rng(seed).normal(size=(CENTRES, dimension)).astype(np.float32)

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        out = self.centres[rng.integers(0, CENTRES, count)]
        out += self.spread * rng.standard_normal(size=(count, self.dimension), dtype=np.float32)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """`(first row id, vectors)` for each chunk in order."""
        for index, start in enumerate(range(0, self.rows, self.chunk)):
            count = min(self.chunk, self.rows - start)
            yield start, self._draw(np.random.default_rng([self.seed, 1, index]), count)

    def queries(self, count: int) -> np.ndarray:
        return self._draw(np.random.default_rng([self.seed, 2]), count)


def exact_top_k(
    stream: ClusteredStream, queries: np.ndarray, transform: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[np.ndarray, float]:
    """Exact top-k ids by inner product, merged chunk by chunk; also the seconds it took.

    `transform` (a projection) is applied to each chunk, whose rows are then scaled to length 1.
    """
    started = time.perf_counter()
    best_scores = np.full((len(queries), TOP_K), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), TOP_K), dtype=np.int64)
    for start, vectors in stream.chunks():
        if transform is not None:
            vectors = transform(vectors)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        scores = queries @ vectors.T
        ids = np.broadcast_to(np.arange(start, start + len(vectors)), scores.shape)
        all_scores = np.concatenate([best_scores, scores], axis=1)
        all_ids = np.concatenate([best_ids, ids], axis=1)
        keep = np.argpartition(-all_scores, TOP_K - 1, axis=1)[:, :TOP_K]
        best_scores = np.take_along_axis(all_scores, keep, axis=1)
        best_ids = np.take_along_axis(all_ids, keep, axis=1)
    return best_ids, time.perf_counter() - started


def _row(engine: str, build: str, params: dict, found, truth, one, many, queries, build_s, first) -> list:
    p50, p99 = latencies(one, queries)
    return [
        engine,
        "IVF_FLAT",
        build + ", " + params_label(params),
        f"{recall(found, truth):.3f}",
        f"{p50:.1f}",
        f"{p99:.1f}",
        f"{batch_qps(many, queries):.0f}",
        f"{build_s:.0f}",
        first,
    ]


def faiss_rows(stream: ClusteredStream, queries: np.ndarray, truth: np.ndarray, args) -> list[list]:
    import faiss

    started = time.perf_counter()
    index = faiss.IndexIVFFlat(
        faiss.IndexFlatIP(stream.dimension), stream.dimension, args.nlist, faiss.METRIC_INNER_PRODUCT
    )
    sample, taken = [], 0
    for _, vectors in stream.chunks():
        sample.append(vectors[: args.train - taken])
        taken += len(sample[-1])
        if taken >= args.train:
            break
    index.train(np.concatenate(sample))
    del sample
    for _, vectors in stream.chunks():
        index.add(vectors)
    build_s = time.perf_counter() - started
    rows = []
    for nprobe in [int(n) for n in args.nprobe.split(",")]:
        index.nprobe = nprobe
        found = index.search(queries, TOP_K)[1]
        rows.append(
            _row(
                "FAISS",
                f"nlist={args.nlist} (trained on {args.train:,})",
                {"nprobe": nprobe},
                found,
                truth,
                lambda q, i=index: i.search(q[None], TOP_K),
                lambda b, i=index: i.search(b, TOP_K),
                queries,
                build_s,
                "in memory",
            )
        )
    del index
    gc.collect()
    return rows


def milvus_rows(uri: str, stream: ClusteredStream, queries: np.ndarray, truth: np.ndarray, args) -> list[list]:
    from utilities.milvus.collection import ImageCollection

    label = "Milvus server" if uri.startswith("http") else "Milvus Lite"
    store = ImageCollection.open(uri, name="bench_search_scale", dimension=stream.dimension, reset=True)
    started = time.perf_counter()
    for start, vectors in stream.chunks():
        ids = list(range(start, start + len(vectors)))
        store.insert([f"/v/{i}" for i in ids], vectors, ids=ids, upsert=False)
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    store.flush()
    flush_s = time.perf_counter() - started
    started = time.perf_counter()
    store.create_index("IVF_FLAT", nlist=args.nlist)  # waits for the build, then loads
    build_s = time.perf_counter() - started
    store.client.release_collection(store.name)
    started = time.perf_counter()
    store.client.load_collection(store.name)
    store.search(queries[:1], TOP_K)
    first = f"{time.perf_counter() - started:.1f}"
    rows = []
    for nprobe in [int(n) for n in args.nprobe.split(",")]:
        params = {"metric_type": "COSINE", "params": {"nprobe": nprobe}}

        def many(batch, p=params):
            return store.search(batch, TOP_K, p)

        found = np.array([[hit["id"] for hit in hits] for hits in many(queries)])
        rows.append(
            _row(
                label,
                f"nlist={args.nlist} per segment",
                {"nprobe": nprobe},
                found,
                truth,
                lambda q, p=params: store.search(q[None], TOP_K, p),
                many,
                queries,
                build_s,
                first,
            )
        )
    count = store.count()
    rate = stream.rows / insert_s
    rows.append(
        [label, "(insert)", f"{stream.rows:,} rows in {insert_s:.0f} s ({rate:,.0f} rows/s), flush {flush_s:.0f} s"]
        + [f"count after: {count:,}"]
        + [""] * 5
    )
    if store.target.is_lite:
        rows.append([label, "(memory)", f"peak RSS of the Lite process {children_peak_mb():,.0f} MB", *[""] * 6])
    elif args.server_pgid:
        now, peak = group_rss_mb(args.server_pgid)
        rows.append([label, "(memory)", f"server RSS now {now:,.0f} MB, peak {peak:,.0f} MB", *[""] * 6])
    store.drop()
    store.close()
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    stream = ClusteredStream(args.rows, args.chunk, args.dimension, args.spread)
    queries = stream.queries(args.queries)
    truth, truth_s = exact_top_k(stream, queries)
    print(f"exact top-{TOP_K} of {args.queries} queries over {args.rows:,} vectors: {truth_s:.0f} s", flush=True)
    rows = [] if args.skip_faiss else faiss_rows(stream, queries, truth, args)
    print(*rows, sep="\n", flush=True)
    if args.server_uri:
        rows += milvus_rows(args.server_uri, stream, queries, truth, args)
    else:
        with tempfile.TemporaryDirectory() as scratch:
            rows += milvus_rows(f"{scratch}/scale.db", stream, queries, truth, args)
    notes = [
        f"{args.rows:,} vectors, {args.dimension}-d, {args.queries} queries, top-{TOP_K}, COSINE / inner product, "
        f"{CENTRES:,} Gaussian clusters, spread {args.spread}; drawn in chunks of {args.chunk:,}, never all in memory",
        f"exact numpy search over all vectors (the ground truth): {truth_s:.0f} s for {args.queries} queries "
        f"({1000 * truth_s / args.queries:.0f} ms a query, generation included)",
        f"peak RSS of this process (numpy, FAISS index, client): {peak_self_mb():,.0f} MB",
        "Milvus builds IVF lists per segment (each segment is its own index); FAISS builds one index over all",
    ]
    write_table(
        args.name,
        "Search at scale: IVF_FLAT on Milvus and FAISS, vectors streamed",
        COLUMNS,
        rows,
        notes,
        packages=["pymilvus", "milvus-lite", "milvus", "faiss-cpu", "numpy"],
    )


if __name__ == "__main__":
    main()
