"""Search latency, throughput and recall@10: Milvus (Lite and server) index types against FAISS.

Synthetic clustered vectors (Gaussian clusters around 1,000 centres, L2-normalised, 2048-d)
stand in for image embeddings at scale; exact top-10 by numpy is the ground truth. For each
index and search parameter: build time, first query after loading, p50/p99 latency of single
queries, queries/s in batches of 100, and recall@10. FAISS (faiss-cpu) runs the same vectors
and parameters as the peer.

Usage:
    python benchmarks/search.py [--quick] [--rows N] [--server-uri http://127.0.0.1:19530]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import params_label, write_table  # noqa: E402

TOP_K = 10
COLUMNS = [
    "engine",
    "index",
    "parameters",
    "recall@10",
    "p50 ms",
    "p99 ms",
    "QPS (batch 100)",
    "build s",
    "first query after load s",
]
"""Columns of the search tables (`search.py`, `search_scale.py`)."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few vectors: checks that it runs (CI)")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dimension", type=int, default=2048)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--spread",
        type=float,
        default=0.7,
        help="noise around each cluster centre (per dimension; centres are N(0, 1)): 0.7 gives tight, "
        "easy clusters, 3.0 overlapping ones where approximate indexes lose recall",
    )
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument("--name", default="search")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.rows, args.queries = 3_000, 20
    return args


def clustered(
    rows: int, dimension: int, queries: int, spread: float = 0.7, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Database and query vectors drawn around the same 1,000 random centres."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(1000, dimension)).astype(np.float32)

    def draw(count: int) -> np.ndarray:
        out = centres[rng.integers(0, len(centres), count)] + spread * rng.normal(size=(count, dimension)).astype(
            np.float32
        )
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    return draw(rows), draw(queries)


def exact_top_k(database: np.ndarray, queries: np.ndarray) -> np.ndarray:
    scores = queries @ database.T
    return np.argsort(-scores, axis=1)[:, :TOP_K]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / TOP_K for f, t in zip(found, truth, strict=True)]))


def latencies(search_one, queries: np.ndarray) -> tuple[float, float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        search_one(query)
        times.append(time.perf_counter() - started)
    return float(np.percentile(times, 50) * 1000), float(np.percentile(times, 99) * 1000)


def batch_qps(search_many, queries: np.ndarray) -> float:
    batch = np.resize(queries, (100, queries.shape[1]))
    started = time.perf_counter()
    search_many(batch)
    return len(batch) / (time.perf_counter() - started)


def peak_self_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def children_peak_mb() -> float:
    """Largest peak RSS among this process's children (Milvus Lite runs as one)."""
    peak = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if fields.get("PPid", "").strip() == str(os.getpid()) and "VmHWM" in fields:
            peak = max(peak, int(fields["VmHWM"].split()[0]))
    return peak / 1024


def milvus_rows(uri: str, database: np.ndarray, queries: np.ndarray, truth: np.ndarray, nlist: int) -> list[list]:
    from utilities.milvus.collection import ImageCollection

    label = "Milvus server" if uri.startswith("http") else "Milvus Lite"
    store = ImageCollection.open(uri, name="bench_search", dimension=database.shape[1], reset=True)
    started = time.perf_counter()
    store.insert([f"/v/{i}" for i in range(len(database))], database, ids=list(range(len(database))), upsert=False)
    store.flush()
    insert_s = time.perf_counter() - started
    configs = [("FLAT", {}, [{}]), ("IVF_FLAT", {"nlist": nlist}, [{"nprobe": n} for n in (8, 32, 128)])]
    if not store.target.is_lite:
        configs.append(("HNSW", {"M": 16, "efConstruction": 200}, [{"ef": e} for e in (16, 64, 128, 256)]))
    rows = []
    for kind, build, searches in configs:
        started = time.perf_counter()
        store.create_index(kind, **build)
        build_s = time.perf_counter() - started
        store.client.release_collection(store.name)
        started = time.perf_counter()
        store.client.load_collection(store.name)
        store.search(queries[:1], TOP_K)
        first_s = time.perf_counter() - started
        for params in searches:
            search_params = {"metric_type": "COSINE", "params": params}

            def one(query, p=search_params):
                return store.search(query[None], TOP_K, p)

            def many(batch, p=search_params):
                return store.search(batch, TOP_K, p)

            found = np.array([[hit["id"] for hit in hits] for hits in many(queries)])
            p50, p99 = latencies(one, queries)
            rows.append(
                [
                    label,
                    kind,
                    _fmt(build, params),
                    f"{recall(found, truth):.3f}",
                    f"{p50:.1f}",
                    f"{p99:.1f}",
                    f"{batch_qps(many, queries):.0f}",
                    f"{build_s:.1f}",
                    f"{first_s:.2f}",
                ]
            )
    rows.append([label, "(insert)", f"{len(database)} rows in {insert_s:.1f} s", "", "", "", "", "", ""])
    if store.target.is_lite:
        rows.append([label, "(memory)", f"peak RSS of the Lite process {children_peak_mb():.0f} MB", *[""] * 6])
    store.drop()
    store.close()
    return rows


def faiss_rows(database: np.ndarray, queries: np.ndarray, truth: np.ndarray, nlist: int) -> list[list]:
    import faiss

    dimension = database.shape[1]
    rows = []
    flat = faiss.IndexFlatIP(dimension)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dimension), dimension, nlist, faiss.METRIC_INNER_PRODUCT)
    hnsw = faiss.IndexHNSWFlat(dimension, 16, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = 200
    for kind, index, build, searches in (
        ("FLAT", flat, {}, [{}]),
        ("IVF_FLAT", ivf, {"nlist": nlist}, [{"nprobe": n} for n in (8, 32, 128)]),
        ("HNSW", hnsw, {"M": 16, "efConstruction": 200}, [{"ef": e} for e in (16, 64, 128, 256)]),
    ):
        started = time.perf_counter()
        if not index.is_trained:
            index.train(database)
        index.add(database)
        build_s = time.perf_counter() - started
        for params in searches:
            if "nprobe" in params:
                index.nprobe = params["nprobe"]
            if "ef" in params:
                index.hnsw.efSearch = params["ef"]
            found = index.search(queries, TOP_K)[1]
            p50, p99 = latencies(lambda q, i=index: i.search(q[None], TOP_K), queries)
            qps = batch_qps(lambda b, i=index: i.search(b, TOP_K), queries)
            rows.append(
                [
                    "FAISS",
                    kind,
                    _fmt(build, params),
                    f"{recall(found, truth):.3f}",
                    f"{p50:.1f}",
                    f"{p99:.1f}",
                    f"{qps:.0f}",
                    f"{build_s:.1f}",
                    "in memory",
                ]
            )
    return rows


def _fmt(build: dict, search: dict) -> str:
    return params_label({**build, **search}, "exact")


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    database, queries = clustered(args.rows, args.dimension, args.queries, args.spread)
    truth = exact_top_k(database, queries)
    nlist = max(16, min(1024, int(4 * np.sqrt(args.rows))))
    rows = faiss_rows(database, queries, truth, nlist)
    with tempfile.TemporaryDirectory() as scratch:
        rows += milvus_rows(f"{scratch}/search.db", database, queries, truth, nlist)
    if args.server_uri:
        rows += milvus_rows(args.server_uri, database, queries, truth, nlist)
    notes = [
        f"{args.rows} vectors, {args.dimension}-d, {args.queries} queries, top-{TOP_K}, COSINE / inner product, "
        f"1,000 Gaussian clusters, spread {args.spread}",
        f"peak RSS of this process (numpy, FAISS, client): {peak_self_mb():.0f} MB",
        "Milvus searches use the package's default consistency (Session): Strong searches on the 2.3 server "
        "waited ~200 ms each for the next time tick",
    ]
    if not args.server_uri:
        notes.append("no server measured: pass --server-uri or set MILVUS_URI")
    write_table(
        args.name,
        "Search: latency, throughput and recall@10",
        COLUMNS,
        rows,
        notes,
        packages=["pymilvus", "milvus-lite", "milvus", "faiss-cpu"],
    )


if __name__ == "__main__":
    main()
