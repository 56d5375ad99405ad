"""Memory-lean indexes on a Milvus server: memory, build time, latency and recall, index by index.

Vectors are drawn chunk by chunk (`search_scale.ClusteredStream`, overlapping clusters: `--spread`
3.0 is the hard data of the issue), inserted once through the package's `ImageCollection`, then each
index is built in turn on the same rows (`ImageCollection.create_index`, which seals, releases,
builds and loads) and measured:

- the server's RSS once the collection is loaded with that index (and the peak while ingesting);
- the data folder (`--data-dir`);
- build time (until every sealed row is indexed);
- search p50 / p99 with 1 client and with 8 (threads sharing the connection);
- recall@10 against exact search of the stored vectors.

With `--dims 256` the vectors are first projected with the package's own `projection.Projection`,
fitted on the first chunk, as `ImageSearchEngine(dims=256)` does; recall is then given against
exact search of the projected vectors (the index's own loss) and of the full ones.

Usage:
    python benchmarks/lean_indexes.py --rows 200000 --server-uri http://127.0.0.1:19530 --server-pgid PGID \
        --data-dir /tmp/milvus-dev [--dims 256]
    python benchmarks/lean_indexes.py --quick --server-uri http://127.0.0.1:19530

The RSS right after a build includes what the server's heap kept from ingest and earlier builds. For
the memory of a fresh load: run once with `--keep` (the collection stays, with its last index), restart
the server on the same data folder, then run the same command with `--existing` instead: no ingest, no
build, the collection is loaded by the fresh server and measured (the load's time in the build column).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import folder_mb, group_rss_mb, params_label, segment_rows, write_table  # noqa: E402
from benchmarks.feature_model import FittedStream  # noqa: E402
from benchmarks.search import TOP_K, recall  # noqa: E402
from benchmarks.search_scale import ClusteredStream, exact_top_k  # noqa: E402

DEFAULT_INDEXES = (
    "FLAT;HNSW:M=8,efConstruction=64;HNSW:M=16,efConstruction=128;IVF_SQ8:nlist=1024;"
    "IVF_PQ:nlist=1024,m=64,nbits=8;SCANN:nlist=1024;DISKANN"
)
SEARCHES = {"HNSW": [{"ef": 64}, {"ef": 128}, {"ef": 256}]}
SEARCHES["IVF_SQ8"] = [{"nprobe": 32}, {"nprobe": 128}, {"nprobe": 32, "refine": 4}, {"nprobe": 128, "refine": 4}]
SEARCHES |= {
    "IVF_PQ": SEARCHES["IVF_SQ8"],
    "SCANN": [{"nprobe": 32, "reorder_k": 100}, {"nprobe": 128, "reorder_k": 200}],
}
SEARCHES |= {"DISKANN": [{"search_list": 100}], "FLAT": [{}]}


WARM_UP_QUERIES = 20
"""Searches run, untimed, before each timed series."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few vectors and indexes: checks that it runs (CI)")
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--chunk", type=int, default=20_000)
    parser.add_argument("--dimension", type=int, default=2048)
    parser.add_argument("--dims", type=int, default=0, help="project to this many dims first (0: full vectors)")
    parser.add_argument("--spread", type=float, default=3.0, help="noise around the 1,000 centres (3.0: hard)")
    parser.add_argument("--features", type=Path, help="draw from a model fitted to these real features instead")
    parser.add_argument("--noise", type=float, default=0.5, help="with --features: the within-class spread's scale")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--indexes", help="TYPE:k=v,k=v;TYPE;... built in turn (default: all of them)")
    parser.add_argument("--server-uri", default=os.environ.get("MILVUS_URI", ""))
    parser.add_argument(
        "--lite",
        action="store_true",
        help="a Milvus Lite file instead of a server (FLAT only); RSS is then this process group's (Lite is a child)",
    )
    parser.add_argument("--server-pgid", type=int, default=0, help="process group of the server, for its RSS")
    parser.add_argument("--data-dir", type=Path, help="the server's data folder, for its size")
    parser.add_argument("--build-timeout", type=float, default=3 * 3600, help="seconds to wait for each build")
    parser.add_argument("--keep", action="store_true", help="leave the collection with its last index")
    parser.add_argument(
        "--existing", action="store_true", help="measure the collection left by --keep as loaded: no ingest, no build"
    )
    parser.add_argument(
        "--empty-server-mb",
        type=float,
        default=0.0,
        help="RSS of the empty server, for --existing (a restarted server loads the collection as it starts)",
    )
    parser.add_argument("--name", default="lean-indexes")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.rows, args.chunk, args.queries, args.dimension = 3_000, 1_000, 20, 256
        args.indexes = args.indexes or "FLAT;HNSW:M=8,efConstruction=64;IVF_SQ8:nlist=16"
    args.indexes = args.indexes or ("FLAT" if args.lite else DEFAULT_INDEXES)
    if not args.server_uri and not args.lite:
        parser.error("--server-uri is required (these index types need a Milvus server), or --lite")
    return args


def index_specs(text: str) -> list[tuple[str, dict[str, int]]]:
    """`"HNSW:M=8,efConstruction=64;FLAT"` as `[("HNSW", {"M": 8, ...}), ("FLAT", {})]`."""
    specs = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        kind, _, params = part.partition(":")
        specs.append((kind.upper(), {k: int(v) for k, v in (p.split("=") for p in params.split(",") if p)}))
    return specs


class PeakRss(threading.Thread):
    """Samples the server group's RSS every half second while running."""

    def __init__(self, pgid: int) -> None:
        super().__init__(daemon=True)
        self.pgid, self.peak, self.running = pgid, 0.0, True

    def run(self) -> None:
        while self.running and self.pgid:
            self.peak = max(self.peak, group_rss_mb(self.pgid)[0])
            time.sleep(0.5)

    def stop(self) -> float:
        self.running = False
        self.join(2)
        return self.peak


def settled_rss_mb(pgid: int, every: float = 5.0, within: float = 0.01, most: float = 300.0) -> float:
    """The group's RSS once two samples `every` seconds apart differ by less than `within` (at most `most`
    seconds): right after a build the server still compacts and frees, and its RSS falls for a while
    (1,281,167 x 256-d under SCANN: 3,992 MB 5 s after the build, 1,942 MB a minute later)."""
    started, before = time.monotonic(), group_rss_mb(pgid)[0]
    while True:
        time.sleep(every)
        now = group_rss_mb(pgid)[0]
        if abs(now - before) <= within * before or time.monotonic() - started >= most:
            return now
        before = now


def timed_searches(store, queries: np.ndarray, params: dict, clients: int) -> tuple[np.ndarray, float, float]:
    """Ids found, p50 and p99 in ms of single-query searches, `clients` at a time.

    `params["refine"]` (default 1: the index's own ranking) goes to `search(refine=...)`.
    """
    index_params = {k: v for k, v in params.items() if k != "refine"}
    search_params = {"metric_type": store.metric, "params": index_params}

    def one(vector: np.ndarray) -> tuple[list[int], float]:
        started = time.perf_counter()
        hits = store.search(vector[None], top_k=TOP_K, search_params=search_params, refine=params.get("refine", 1))[0]
        return [int(hit["id"]) for hit in hits], (time.perf_counter() - started) * 1000

    for vector in queries[:WARM_UP_QUERIES]:  # the first searches after a load read from disk: not timed
        one(vector)
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(one, queries))
    found = np.array([ids + [-1] * (TOP_K - len(ids)) for ids, _ in answers])
    times = np.array([ms for _, ms in answers])
    return found, float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.milvus.collection import ImageCollection
    from utilities.milvus.storage_probe import check_vector_reads
    from utilities.projection import Projection

    if args.features:
        stream = FittedStream(args.features, args.rows, args.chunk, args.dimension, args.noise)
        drawn = (
            f"drawn from a model fitted to {len(stream.seeds):,} real features (`feature_model.py`, noise {args.noise})"
        )
    else:
        stream = ClusteredStream(args.rows, args.chunk, args.dimension, args.spread)
        drawn = f"1,000 clusters with spread {args.spread} (overlapping)"
    projection = Projection.fit(next(stream.chunks())[1], args.dims) if args.dims else None

    def project(vectors: np.ndarray) -> np.ndarray:
        return projection.apply(vectors) if projection is not None else np.array(vectors)

    raw_queries = stream.queries(args.queries)
    queries = project(raw_queries)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    started = time.perf_counter()
    truth = exact_top_k(stream, queries, projection.apply if projection is not None else None)[0]
    full_truth = exact_top_k(stream, raw_queries)[0] if projection is not None else truth
    exact_s = time.perf_counter() - started
    dimension = args.dims or args.dimension
    scratch = tempfile.TemporaryDirectory()
    if args.lite:  # Milvus Lite runs in a child of this process: measure this process group, and the file
        args.server_pgid, args.data_dir = args.server_pgid or os.getpgrp(), args.data_dir or Path(scratch.name)
    base_rss = args.empty_server_mb or (group_rss_mb(args.server_pgid)[0] if args.server_pgid else 0.0)
    uri = f"{scratch.name}/lean.db" if args.lite else args.server_uri
    rows, notes = [], []

    def measure(store, kind: str, build: dict, build_s: str) -> None:
        """Memory, folder, then each search setting of this index: a table row each."""
        if not args.lite:
            sizes = segment_rows(args.server_uri, store.name)
            if sizes:
                notes.append(f"{kind}: {len(sizes)} segments loaded, {sizes[0]:,} to {sizes[-1]:,} rows")
        loaded_rss = settled_rss_mb(args.server_pgid) if args.server_pgid else 0.0
        folder = f"{folder_mb(args.data_dir):,.0f}" if args.data_dir else ""
        for params in SEARCHES.get(kind, [{}]):
            found, p50, p99 = timed_searches(store, queries, params, 1)
            _, p50_8, p99_8 = timed_searches(store, queries, params, 8)
            rows.append(
                [
                    kind,
                    params_label({**build, **params}),
                    f"{recall(found, truth):.3f}",
                    f"{recall(found, full_truth):.3f}" if projection is not None else "",
                    f"{p50:.1f} / {p99:.1f}",
                    f"{p50_8:.1f} / {p99_8:.1f}",
                    build_s,
                    f"{loaded_rss:,.0f}" if loaded_rss else "",
                    f"{(loaded_rss - base_rss) * 1024 * 1024 / args.rows:,.0f}" if loaded_rss else "",
                    folder,
                ]
            )
            print(" | ".join(map(str, rows[-1])), flush=True)

    sampler = PeakRss(args.server_pgid)
    sampler.start()
    started = time.perf_counter()
    if args.existing:  # a fresh server loads what --keep left
        store = ImageCollection.open(uri, name="bench_lean", dimension=dimension, create=False)
        load_s = time.perf_counter() - started
        peak, held = sampler.stop(), store.count()
        if held != args.rows:
            raise SystemExit(f"bench_lean holds {held:,} rows, not --rows {args.rows:,}: run with --keep first")
        ingest = f"no ingest, no build: the collection left by --keep, loaded in {load_s:.0f} s (peak {peak:,.0f} MB)"
        measure(store, store.index_type, store.index_summary()["index_params"], f"loaded in {load_s:.0f}")
    else:
        store = ImageCollection.open(uri, name="bench_lean", dimension=dimension, reset=True)
        for start, vectors in stream.chunks():
            ids = list(range(start, start + len(vectors)))
            store.insert([f"/bench/{i}.jpg" for i in ids], project(vectors), ids=ids, upsert=False)
        store.seal()
        ingest_s = time.perf_counter() - started
        ingest = f"ingest: {ingest_s:.0f} s ({args.rows / ingest_s:,.0f} rows/s), "
        ingest += f"server RSS peak {sampler.stop():,.0f} MB"
        if not args.lite:  # the server check before IVF_SQ8 / IVF_PQ (`milvus.storage_probe`): once, not timed
            check_vector_reads(store.connection)
        for kind, build in index_specs(args.indexes):
            started = time.perf_counter()
            try:
                store.create_index(kind, **build)
                complete = store.wait_for_index(timeout=args.build_timeout)
            except Exception as error:  # an index this build lacks, or refuses: say so and go on
                notes.append(f"{kind} {build}: not built: {str(error).splitlines()[0][:300]}")
                continue
            build_s = f"{time.perf_counter() - started:.0f}" + ("" if complete else " (not complete)")
            measure(store, kind, build, build_s)
    if not args.keep:
        store.drop()
    store.close()
    scratch.cleanup()
    write_table(
        args.name,
        "Memory-lean indexes on " + ("Milvus Lite" if args.lite else "the Milvus server"),
        ["index", "parameters", "recall@10 (stored vectors)", "recall@10 (full vectors)", "1 client p50 / p99 ms"]
        + ["8 clients p50 / p99 ms", "build s", "loaded server RSS MB", "bytes per row", "data folder MB"],
        rows,
        [
            f"{args.rows:,} vectors, {args.dimension}-d"
            + (f", projected to {args.dims} dims (centred PCA fitted on {args.chunk:,})" if args.dims else "")
            + f", {drawn}, COSINE; {args.queries} queries, top-{TOP_K}",
            f"{ingest}; the empty server held {base_rss:,.0f} MB; exact ground truth {exact_s:.0f} s",
            "loaded RSS: once it no longer changes by 1 % in 5 s (`settled_rss_mb`); "
            "bytes per row: (loaded RSS - empty server RSS) / rows. Each index built on the same sealed rows, "
            "the previous one dropped (`ImageCollection.create_index`)"
            + (
                "; here a fresh server loaded the collection"
                if args.existing
                else "; the RSS includes whatever the server's heap kept from ingest and earlier builds"
            ),
            *notes,
        ],
        packages=["pymilvus", "milvus", "numpy"],
    )


if __name__ == "__main__":
    main()
