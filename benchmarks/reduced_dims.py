"""Quality of reduced vectors (`dims`): leave-one-out precision@10 with full and projected vectors.

Every photo of a labelled folder (one sub-folder a class: `../shared/data/imagenette-val`, else the
committed `tests/data/photos`) is embedded once; each photo is then a query against all the others,
and P@10 is the share of its 10 nearest (exact cosine) that have its class. Projections are the
package's own (`projection.Projection`, a centred PCA), fitted on every photo or on a random sample
(a first run smaller than the library). The last rows go through the package end to end: an
`ImageSearchEngine(dims=...)` indexes the folder into Milvus Lite, and every stored vector is searched
through Milvus.

Use a real pretrained model for figures that mean something (`benchmarks/pretrained.py`'s venv):

    /tmp/effvenv/bin/python benchmarks/reduced_dims.py --embedder efficientnet-lite0
    python benchmarks/reduced_dims.py --quick
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import SHARED_DATA, shown_path, write_table  # noqa: E402
from benchmarks.duplicates import make_embedder  # noqa: E402

TOP_K = 10


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="the committed photos, small dims: checks that it runs")
    parser.add_argument("--dims", type=int, nargs="+", default=[512, 256, 128])
    parser.add_argument("--samples", type=int, nargs="+", default=[1000], help="also fit on random samples this big")
    parser.add_argument("--embedder", choices=["resnet50-random", "efficientnet-lite0"], default="resnet50-random")
    parser.add_argument("--name", default="reduced-dims")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.dims, args.samples = [16], [40]
    return args


def precision_at_k(vectors: np.ndarray, labels: np.ndarray) -> float:
    """Leave-one-out P@10 by exact cosine."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    hits = 0
    for start in range(0, len(unit), 1024):
        scores = unit[start : start + 1024] @ unit.T
        np.fill_diagonal(scores[:, start : start + 1024], -np.inf)
        nearest = np.argpartition(-scores, TOP_K, axis=1)[:, :TOP_K]
        hits += int((labels[nearest] == labels[start : start + 1024, None]).sum())
    return hits / (len(unit) * TOP_K)


def through_milvus(folder: Path, embedder, dims: int, labels_by_path: dict[str, str]) -> tuple[float, float]:
    """P@10 of an engine with `dims` on Milvus Lite, searching every stored vector; and the seconds it took."""
    from utilities.engine import ImageSearchEngine

    started = time.perf_counter()
    with (
        tempfile.TemporaryDirectory() as scratch,
        ImageSearchEngine(f"{scratch}/r.db", embedder=embedder, dims=dims, progress=False) as engine,
    ):
        engine.index_folder(folder)
        store = engine.store
        records = [r for page in store.iter_records() for r in page]
        stored = store.records([r.id for r in records], with_vectors=True)
        hits = 0
        for start in range(0, len(stored), 500):
            part = stored[start : start + 500]
            found = store.search(np.stack([r.vector for r in part]), top_k=TOP_K + 1)
            for record, row_hits in zip(part, found, strict=True):
                others = [hit for hit in row_hits if int(hit["id"]) != record.id][:TOP_K]
                label = labels_by_path[record.path]
                hits += sum(labels_by_path[hit["entity"]["path"]] == label for hit in others)
        return hits / (len(stored) * TOP_K), time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.ids import stored_path
    from utilities.images.finding import find_images
    from utilities.indexing.pipeline import embed_paths
    from utilities.projection import Projection

    imagenette = SHARED_DATA / "imagenette-val"
    folder = ROOT / "tests" / "data" / "photos" if args.quick or not imagenette.is_dir() else imagenette
    paths = find_images(folder)
    embedder = make_embedder(args.embedder)
    started = time.perf_counter()
    embedded = embed_paths(paths, embedder, 32, progress=False)
    embed_s = time.perf_counter() - started
    labels_by_path = {stored_path(p): Path(p).parent.name for p in paths}
    labels = np.array([labels_by_path[p] for p in embedded.paths])
    vectors = embedded.vectors
    full = precision_at_k(vectors, labels)
    rows = [[f"full ({vectors.shape[1]})", "-", f"{full:.4f}", "", f"{4 * vectors.shape[1]:,}"]]
    rng = np.random.default_rng(0)
    for dims in args.dims:
        for sample in [len(vectors), *[s for s in args.samples if s < len(vectors)]]:
            chosen = vectors if sample == len(vectors) else vectors[rng.choice(len(vectors), sample, replace=False)]
            projection = Projection.fit(chosen, dims)
            score = precision_at_k(projection.apply(vectors), labels)
            fitted = "every photo" if sample == len(vectors) else f"a random {sample:,}"
            rows.append([dims, fitted, f"{score:.4f}", f"{score - full:+.4f}", f"{4 * dims:,}"])
    for dims in args.dims[:1] if args.quick else args.dims[1:2]:
        score, seconds = through_milvus(folder, embedder, dims, labels_by_path)
        rows.append(
            [f"{dims}, through Milvus Lite", f"the engine's fit ({min(len(vectors), 4096):,})"]
            + [f"{score:.4f}", f"{score - full:+.4f}", f"{4 * dims:,}"]
        )
    write_table(
        args.name,
        "Reduced vectors: leave-one-out precision@10, full and projected",
        ["dims", "projection fitted on", "P@10", "vs full", "bytes per vector (float32)"],
        rows,
        [
            f"{len(vectors):,} photos of {len(set(labels))} classes from {shown_path(folder)}, "
            f"{embedder.weights_label}, embedded in {embed_s:.0f} s",
            "each photo is a query against all the others; P@10: the share of its 10 nearest (exact cosine) of its "
            "class. Projection: the package's centred PCA (`utilities.projection.Projection`), not whitened",
            "through Milvus Lite: `ImageSearchEngine(dims=...)` indexes the folder (fitting on up to 4,096 photos) "
            "and every stored vector is searched through Milvus",
        ],
        packages=["numpy", "pymilvus", "milvus-lite", "torch"],
    )


if __name__ == "__main__":
    main()
