"""The audit's vector checks over a large collection: time, client memory, and what they find.

The collection holds vectors only (no files, so neither the keypoint check nor the pixel measures:
`audit --no-verify --no-quality`), under `<split>/<class>/<n>.jpg` paths: `--classes` clusters
(random centres plus noise, scaled to length 1), a tenth of the rows under `test/`, the rest under
`train/`. Planted among them: rows filed under another class's folder (label errors), rows drawn
around no centre (outliers), and copies of `test/` rows under `train/`: near ones (the vector plus
noise, cosine about 0.97, their own content hash) and exact ones (same vector, same hash). The index
is the one `create_index()` chooses (AUTO).

The audit runs as a user runs it, `python -m utilities audit --json`, in its own process group, whose
summed RSS is sampled every 0.2 s (`common.run_sampled`): the client's memory (a Milvus server runs
elsewhere and is not counted; with Milvus Lite, `--quick`, the Lite process is the client's child
and is counted).

    python benchmarks/scale_audit.py --rows 100000 --server-uri http://127.0.0.1:19530
    python benchmarks/scale_audit.py --quick
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import run_sampled, write_table  # noqa: E402

COLLECTION = "bench_audit_scale"
COPY_NOISE = 0.25
"""Length of the noise added to a unit vector to plant its near copy (cosine about 0.97)."""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5,000 rows on Milvus Lite: checks that it runs")
    parser.add_argument("--rows", type=int, default=100_000, help="rows in all, planted ones included")
    parser.add_argument("--classes", type=int, default=100)
    parser.add_argument("--dimension", type=int, default=256, help="length of the stored vectors")
    parser.add_argument("--spread", type=float, default=0.06, help="noise a coordinate around a class centre")
    parser.add_argument("--chunk", type=int, default=50_000, help="rows drawn and written at a time")
    parser.add_argument("--mislabelled", type=float, default=0.005, help="share of rows in a wrong class folder")
    parser.add_argument("--outliers", type=float, default=0.001, help="share of rows around no centre")
    parser.add_argument("--leaks", type=float, default=0.002, help="share of rows that are near copies of test rows")
    parser.add_argument("--exact", type=float, default=0.0005, help="share of rows that are exact copies of test rows")
    parser.add_argument("--server-uri", default="", help="a Milvus server (default: a Milvus Lite file)")
    parser.add_argument("--name", default="audit-scale")
    return parser.parse_args(argv)


@dataclass
class Planted:
    """What was planted: paths of the misfiled rows with their true class, of the outliers, and the pairs."""

    mislabelled: dict[str, str] = field(default_factory=dict)
    outliers: set[str] = field(default_factory=set)
    near: set[tuple[str, str]] = field(default_factory=set)
    exact: set[tuple[str, str]] = field(default_factory=set)


def write_collection(args: argparse.Namespace, uri: str) -> tuple[Planted, float]:
    """Draw and write the rows with what is planted among them, then build the index AUTO chooses."""
    from utilities.milvus.collection import ImageCollection

    rng = np.random.default_rng(5)
    centres = rng.standard_normal((args.classes, args.dimension)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    store = ImageCollection.open(uri, name=COLLECTION, dimension=args.dimension, reset=True)
    planted = Planted()
    started = time.perf_counter()
    for start in range(0, args.rows, args.chunk):
        count = min(args.chunk, args.rows - start)
        classes = rng.integers(0, args.classes, count)
        vectors = centres[classes] + args.spread * rng.standard_normal((count, args.dimension)).astype(np.float32)
        splits = np.where(rng.random(count) < 0.1, "test", "train")
        folders = classes.copy()
        hashes = [f"h{start + n}" for n in range(count)]
        wrong = rng.choice(count, round(count * args.mislabelled), replace=False)
        folders[wrong] = (classes[wrong] + rng.integers(1, args.classes, len(wrong))) % args.classes
        lonely = rng.choice(np.setdiff1d(np.arange(count), wrong), round(count * args.outliers), replace=False)
        vectors[lonely] = rng.standard_normal((len(lonely), args.dimension)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        free = np.setdiff1d(np.arange(count), np.concatenate([wrong, lonely]))
        tests, trains = free[splits[free] == "test"], free[splits[free] == "train"]
        near, exact = round(count * args.leaks), round(count * args.exact)
        sources = rng.choice(tests, near + exact, replace=False)
        copies = rng.choice(trains, near + exact, replace=False)
        for n, (source, copy) in enumerate(zip(sources, copies, strict=True)):
            folders[copy] = folders[source]
            if n < near:
                noise = rng.standard_normal(args.dimension).astype(np.float32) * COPY_NOISE / np.sqrt(args.dimension)
                vectors[copy] = vectors[source] + noise
                vectors[copy] /= np.linalg.norm(vectors[copy])
            else:
                vectors[copy], hashes[copy] = vectors[source], hashes[source]
        paths = [f"/data/{splits[n]}/class_{folders[n]:04d}/{start + n:07d}.jpg" for n in range(count)]
        for n in wrong.tolist():
            planted.mislabelled[paths[n]] = f"class_{classes[n]:04d}"
        planted.outliers |= {paths[n] for n in lonely.tolist()}
        for n, (source, copy) in enumerate(zip(sources.tolist(), copies.tolist(), strict=True)):
            (planted.near if n < near else planted.exact).add((paths[source], paths[copy]))
        store.insert(paths, vectors, hashes=hashes, upsert=False)
        print(f"written {start + count:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
    store.seal()
    store.create_index()
    store.wait_for_index()
    store.close()
    return planted, time.perf_counter() - started


def share(found: int, of: int) -> str:
    """`found / of` with three decimals, and the counts."""
    return f"{found / of:.3f} ({found:,} / {of:,})" if of else "-"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.quick:
        args.rows, args.classes, args.chunk, args.server_uri = 5_000, 20, 5_000, ""
    with tempfile.TemporaryDirectory() as scratch:
        uri = args.server_uri or str(Path(scratch) / "audit.db")
        planted, written_s = write_collection(args, uri)
        command = [sys.executable, "-m", "utilities", "audit", "--uri", uri, "--collection", COLLECTION]
        command += ["--no-verify", "--no-quality", "--json"]
        started = time.perf_counter()
        status, peak_mb, problem = run_sampled(command, Path(scratch) / "audit.json")
        audit_s = time.perf_counter() - started
        if status:
            print(f"the audit failed: {problem}", file=sys.stderr)
            return 1
        report = json.loads((Path(scratch) / "audit.json").read_text())
        if args.server_uri:
            from utilities.milvus.collection import ImageCollection

            ImageCollection.open(uri, name=COLLECTION, create=False).drop()
    pairs = {tuple(sorted((leak["a"], leak["b"]))): leak["kind"] for leak in report["leaks"]}
    exact_found = sum(tuple(sorted(pair)) in pairs for pair in planted.exact)
    near_found = sum(tuple(sorted(pair)) in pairs for pair in planted.near)
    listed = {item["path"]: item["suggested"] for item in report["label_errors"]}
    right = sum(path in listed for path in planted.mislabelled)
    suggested = sum(listed.get(path) == truth for path, truth in planted.mislabelled.items())
    top = [item["path"] for item in report["outliers"][: len(planted.outliers)]]
    rows = [
        [
            f"{args.rows:,}",
            args.dimension,
            args.classes,
            "server" if args.server_uri else "Milvus Lite",
            f"{audit_s:.0f}",
            f"{peak_mb:.0f}",
            share(exact_found, len(planted.exact)) + " / " + share(near_found, len(planted.near)),
            f"{len(pairs) - exact_found - near_found:,}",
            share(right, len(listed)) + " / " + share(right, len(planted.mislabelled)),
            share(suggested, len(planted.mislabelled)),
            share(sum(path in planted.outliers for path in top), len(planted.outliers)),
            f"{written_s:.0f}",
        ]
    ]
    if args.quick:
        print(rows[0])
        return 0
    write_table(
        args.name,
        "The audit's vector checks over a large collection: time and client memory",
        [
            "rows",
            "dims",
            "classes",
            "Milvus",
            "audit s",
            "client peak RSS MB",
            "leaks found: exact / near",
            "other leaks listed",
            "label errors: precision / recall",
            "suggested class right",
            "outliers: planted in the top N",
            "write + index s",
        ],
        rows,
        notes=[
            f"synthetic unit vectors: {args.classes} random centres plus noise {args.spread} a coordinate; a tenth "
            f"under test/; planted: {args.mislabelled:.1%} in a wrong class folder, {args.outliers:.1%} around no "
            f"centre, {args.leaks:.1%} near copies (cosine about 0.97) and {args.exact:.2%} exact copies of test "
            "rows under train/",
            "`python -m utilities audit --no-verify --no-quality --json` (no files: no keypoint check, no pixel "
            "measures), its process group's summed RSS sampled every 0.2 s; the index AUTO chose",
        ],
        packages=["pymilvus", "milvus-lite", "numpy", "scikit-learn"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
