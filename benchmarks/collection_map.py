"""The collection map (`map`) measured: layout quality on real pretrained vectors, and time and memory.

Quality: every photo of a labelled folder (one sub-folder a class: `../shared/data/imagenette-val`,
3,925 photos, else the committed `tests/data/photos`) is indexed into Milvus Lite by an
`ImageSearchEngine` with the embedder, then `engine.map` lays the collection out (UMAP, PCA, and UMAP
fitted on a smaller sample with the other rows placed by it). Against the stored vectors:
trustworthiness at 10 neighbours (scikit-learn, cosine in the full space, on a random sample of at
most 5,000 rows) and leave-one-out 10-NN class accuracy (majority of the 10 nearest rows: cosine in the
full space, Euclidean on the map) in 2-D and in the full space.

Speed (`--rows N`): N synthetic vectors made from the real ones (each a stored photo's vector plus
Gaussian noise, made unit length again, under its photo's class folder) are inserted through
`engine.insert_vectors`, and the whole `engine.map` call is timed (reading the rows and vectors in
pages from Milvus, fitting, placing, saving), first in this process (numba's compile included, as a
fresh `python -m utilities map` pays it) and again with `full=True`, with the process's peak RSS
during the call. `--server-uri` adds the same on a Milvus server (a collection made and dropped).

`--vectors F.npz` keeps the embedded vectors and their paths: a later run reads them from there and
stores them with `insert_vectors` instead of embedding again (the same vectors, no model run).

Usage:
    /tmp/effvenv/bin/python benchmarks/collection_map.py --embedder efficientnet-lite0 --rows 100000
    python benchmarks/collection_map.py --quick
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import default_images, shown_path, write_table  # noqa: E402
from benchmarks.duplicates import make_embedder  # noqa: E402

NEIGHBOURS = 10
TRUST_ROWS = 5_000
INSERT_ROWS = 10_000
NOISE = 0.35
"""Length of the noise added to a unit vector to make a synthetic one (before it is made unit again)."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the committed photos, 2,000 rows: checks that it runs")
    parser.add_argument("--embedder", choices=["resnet50-random", "efficientnet-lite0"], default="resnet50-random")
    parser.add_argument("--images", type=Path, default=None, help="labelled folder (default: Imagenette)")
    parser.add_argument("--vectors", type=Path, default=None, help="keep the embedded vectors here, or read them")
    parser.add_argument("--samples", type=int, nargs="*", default=[1000], help="also fit on samples this big")
    parser.add_argument("--rows", type=int, default=0, help="time the map of this many synthetic rows (0: not)")
    parser.add_argument("--server-uri", default="", help="also time the map of --rows on this server")
    parser.add_argument("--name", default="collection_map")
    args = parser.parse_args(argv)
    if args.quick:
        args.name = args.name.replace("_", "-") + "-quick"  # the name `.ci/run` checks: collection-map-quick.md
        args.samples, args.rows = [40], 2000
    return args


class PeakRss:
    """The process's peak resident memory (MB) while in a `with` block, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self._stop = threading.Event()

    @staticmethod
    def now_mb() -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * resource.getpagesize() / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(0.02):
            self.peak_mb = max(self.peak_mb, self.now_mb())

    def __enter__(self) -> PeakRss:
        self.peak_mb = self.now_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.now_mb())


def vector_engine(uri: str, name: str, dimension: int) -> Any:
    """An engine for storing vectors made elsewhere: its model is never run."""
    from utilities.embeddings import embedder_from_callable
    from utilities.engine import ImageSearchEngine

    model = embedder_from_callable(lambda batch: np.zeros((len(batch), dimension), np.float32), dimension=dimension)
    return ImageSearchEngine(uri, collection_name=name, embedder=model, progress=False)


def real_vectors(args: argparse.Namespace, folder: Path, scratch: str) -> tuple[list[str], np.ndarray, str]:
    """The stored paths and unit vectors of the labelled photos, embedded through an engine into Milvus Lite
    (or read from `--vectors`), and how they were made."""
    from utilities.audit.vectors import vector_pages
    from utilities.engine import ImageSearchEngine

    if args.vectors and args.vectors.is_file():
        with np.load(args.vectors, allow_pickle=False) as saved:
            return saved["paths"].tolist(), saved["vectors"], str(saved["label"])
    embedder = make_embedder(args.embedder)
    started = time.perf_counter()
    with ImageSearchEngine(f"{scratch}/embed.db", embedder=embedder, progress=False) as engine:
        report = engine.index_folder(folder, save_mapping=False)
        rows = dict(zip(*_rows_and_paths(engine.store), strict=True))
        pages = list(vector_pages(engine.store))
    ids = np.concatenate([page_ids for page_ids, _ in pages])
    vectors = np.concatenate([page for _, page in pages])
    label = f"{embedder.weights_label}; {report.indexed:,} photos indexed in {time.perf_counter() - started:.0f} s"
    paths = [rows[row] for row in ids.tolist()]
    if args.vectors:
        np.savez(args.vectors, paths=np.asarray(paths), vectors=vectors, label=np.asarray(label))
    return paths, vectors, label


def _rows_and_paths(store: Any) -> tuple[list[int], list[str]]:
    """Every stored row's id and path."""
    from utilities.records import ID_FIELD, PATH_FIELD

    rows = [row for page in store.iter_rows((ID_FIELD, PATH_FIELD)) for row in page]
    return [int(row[ID_FIELD]) for row in rows], [str(row[PATH_FIELD]) for row in rows]


def knn_accuracy(points: np.ndarray, labels: np.ndarray, metric: str) -> float:
    """Leave-one-out accuracy of a majority vote of each row's `NEIGHBOURS` nearest other rows."""
    from sklearn.neighbors import NearestNeighbors

    nearest = NearestNeighbors(n_neighbors=NEIGHBOURS, metric=metric).fit(points).kneighbors(return_distance=False)
    votes = np.zeros((len(points), labels.max() + 1))
    np.add.at(votes, (np.repeat(np.arange(len(points)), NEIGHBOURS), labels[nearest].ravel()), 1)
    return float((votes.argmax(1) == labels).mean())


def layout_quality(found: Any, ids: np.ndarray, vectors: np.ndarray) -> tuple[float, float, float]:
    """Trustworthiness at `NEIGHBOURS`, and 10-NN class accuracy on the map and in the full space, of a map
    against the stored unit vectors `vectors` of rows `ids`: all on the same random `TRUST_ROWS` rows at most."""
    from sklearn.manifold import trustworthiness

    at = {row: n for n, row in enumerate(ids.tolist())}
    chosen = np.sort(np.random.default_rng(0).choice(len(found), min(TRUST_ROWS, len(found)), replace=False))
    full = vectors[[at[row] for row in found.ids[chosen].tolist()]]
    flat = np.column_stack([found.x, found.y]).astype(np.float64)[chosen]
    labels = found.class_index[chosen]
    trust = trustworthiness(full, flat, n_neighbors=NEIGHBOURS, metric="cosine")
    return float(trust), knn_accuracy(flat, labels, "euclidean"), knn_accuracy(full, labels, "cosine")


def timed(call: Callable[[], Any]) -> tuple[Any, float, float, float]:
    """`call()`, its wall seconds, this process's CPU seconds and its peak RSS (MB) during it."""
    with PeakRss() as memory:
        started, cpu = time.perf_counter(), time.process_time()
        result = call()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return result, seconds, cpu, memory.peak_mb


def quality_rows(engine: Any, sizes: list[int]) -> list[list[str]]:
    """One row a layout of the stored photos: UMAP, PCA, and UMAP fitted on each of `sizes` rows."""
    from utilities.audit.vectors import vector_pages

    pages = list(vector_pages(engine.store))
    ids = np.concatenate([page_ids for page_ids, _ in pages])
    vectors = np.concatenate([page for _, page in pages])
    rows = []
    for method, sample in [("umap", None), ("pca", None), *[("umap", size) for size in sizes if size < len(ids)]]:
        found, seconds, _, _ = timed(lambda m=method, s=sample: engine.map(m, sample=s, full=True))
        trust, flat, full = layout_quality(found, ids, vectors)
        fitted = f"all {len(found):,}" if sample is None else f"{sample:,}, the other {len(found) - sample:,} placed"
        rows.append(
            [method.upper(), fitted, f"{trust:.4f}", f"{flat:.4f}", f"{full:.4f}", f"{flat / full:.4f}"]
            + [f"{seconds:.1f}"]
        )
    return rows


def synthetic(paths: list[str], vectors: np.ndarray, rows: int) -> Iterator[tuple[list[str], np.ndarray]]:
    """`rows` synthetic vectors in chunks: each a real vector plus noise, under its photo's class folder."""
    rng = np.random.default_rng(1)
    classes = [Path(path).parent.name for path in paths]
    for start in range(0, rows, INSERT_ROWS):
        source = np.arange(start, min(rows, start + INSERT_ROWS)) % len(vectors)
        noise = rng.standard_normal((len(source), vectors.shape[1])).astype(np.float32)
        noisy = vectors[source] + noise * (NOISE / np.sqrt(vectors.shape[1]))
        names = [f"/synthetic/{classes[s]}/{start + n:07d}.jpg" for n, s in enumerate(source.tolist())]
        yield names, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


@contextmanager
def filled(uri: str, name: str, paths: list[str], vectors: np.ndarray, rows: int) -> Iterator[tuple[Any, float]]:
    """An engine whose collection holds `rows` synthetic vectors, and the seconds they took to insert; dropped after."""
    engine = vector_engine(uri, name, vectors.shape[1])
    started = time.perf_counter()
    for names, chunk in synthetic(paths, vectors, rows):
        engine.insert_vectors(names, chunk)
    try:
        yield engine, time.perf_counter() - started
    finally:
        engine.drop()
        engine.close()


def speed_rows(uri: str, where: str, paths: list[str], vectors: np.ndarray, rows: int) -> list[list[str]]:
    """The map of `rows` synthetic vectors on `uri`: a first call in this process and a second with `full`."""
    name = f"bench_map_{int(time.time())}"
    table = []
    with filled(uri, name, paths, vectors, rows) as (engine, insert_s):
        for call, full in (("first in the process", False), ("again, full=True", True)):
            found, seconds, cpu, peak = timed(lambda f=full: engine.map("umap", full=f))
            trust, flat, whole = layout_quality(found, *_stored(engine))
            table.append(
                [where, f"{len(found):,}", call, f"{seconds:.1f}", f"{cpu:.1f}", f"{load_average():.1f}"]
                + [f"{peak:,.0f}", f"{found.fitted_on:,}", f"{trust:.4f}", f"{flat / whole:.4f}", f"{insert_s:.0f}"]
            )
    return table


def load_average() -> float:
    """The machine's load average over the last minute (how busy the 2 shared cores were)."""
    import os

    return os.getloadavg()[0]


def _stored(engine: Any) -> tuple[np.ndarray, np.ndarray]:
    """Every stored row's id and unit vector."""
    from utilities.audit.vectors import vector_pages

    pages = list(vector_pages(engine.store))
    return np.concatenate([ids for ids, _ in pages]), np.concatenate([page for _, page in pages])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    folder = args.images or (ROOT / "tests" / "data" / "photos" if args.quick else default_images())
    with tempfile.TemporaryDirectory() as scratch:
        paths, vectors, label = real_vectors(args, folder, scratch)
        speed = []
        if args.rows:
            speed += speed_rows(f"{scratch}/speed.db", "Milvus Lite", paths, vectors, args.rows)
            if args.server_uri:
                speed += speed_rows(args.server_uri, "server", paths, vectors, args.rows)
        engine = vector_engine(f"{scratch}/quality.db", "bench_map_quality", vectors.shape[1])
        engine.insert_vectors(paths, vectors)
        quality = quality_rows(engine, args.samples)
        engine.drop()
        engine.close()
    packages = ["umap-learn", "scikit-learn", "numba", "pynndescent", "numpy", "pymilvus", "milvus-lite", "torch"]
    from utilities.collection_map import layout

    settings = (
        f"PCA to {layout.PCA_DIMS} dims, UMAP n_neighbors={layout.UMAP_NEIGHBOURS}, min_dist={layout.UMAP_MIN_DIST}, "
        f"sample at most {layout.DEFAULT_SAMPLE:,}, the rest placed from {layout.PLACE_NEIGHBOURS} sample rows"
    )
    quality_file = write_table(
        args.name,
        "Collection map: layout quality on real vectors",
        ["layout", "fitted on", "trustworthiness@10", "10-NN accuracy 2-D", "10-NN accuracy full", "2-D / full"]
        + ["map s"],
        quality,
        [
            f"{len(vectors):,} photos of {len({Path(p).parent.name for p in paths})} classes from "
            f"{shown_path(folder)}: {label}; stored in Milvus Lite, laid out by "
            "`engine.map(method, sample, full=True)`",
            f"trustworthiness: scikit-learn, cosine in the full space, {NEIGHBOURS} neighbours, on a random "
            f"{min(TRUST_ROWS, len(vectors)):,} rows; 10-NN accuracy: leave-one-out majority of the 10 nearest other "
            "rows (cosine in the full space, Euclidean on the map)",
            f"the package's settings: {settings}",
        ],
        packages=packages,
    )
    if speed:
        speed_file = write_table(
            args.name + "-speed",
            "Collection map: time and memory of `engine.map` on synthetic rows",
            ["Milvus", "rows", "call", "map s", "CPU s", "load", "peak RSS MB", "fitted on", "trustworthiness@10"]
            + ["10-NN 2-D / full"]
            + ["insert s"],
            speed,
            [
                f"synthetic: each row a real vector ({label.split(';')[0]}) plus Gaussian noise of length {NOISE}, "
                "made unit length again, under its photo's class folder; inserted by `engine.insert_vectors`",
                "map s: the whole `engine.map` call (rows and vectors read in pages from Milvus, PCA, UMAP on the "
                "sample, the rest placed, the map saved); the first call in the process includes numba's compile. "
                "CPU s: this process's, all its threads; load: the machine's 1-minute load average after the call "
                "(2 cores, shared). Peak RSS: this Python process (Milvus Lite's own process not counted), sampled "
                f"every 20 ms. Trustworthiness and 10-NN accuracy on a random {TRUST_ROWS:,} of the rows",
                f"the package's settings: {settings}",
            ],
            packages=packages,
        )
        quality_file.write_text(quality_file.read_text() + "\n" + speed_file.read_text())  # one results file
        speed_file.unlink()


if __name__ == "__main__":
    main()
