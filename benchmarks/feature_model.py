"""Vectors drawn from a model fitted to real image features, for benchmarks at ImageNet size.

Random clusters (`search_scale.ClusteredStream`) have no low-dimensional structure, unlike a
network's features, so a projection to 256 dims keeps little of them. This model is fitted to real
features of labelled photos instead (for example EfficientNet-Lite0 on `../shared/data/imagenette-val`):

- each drawn vector is one real feature plus noise shaped like the real within-class spread (the
  principal components of each photo's difference from its class mean, `--rank` of them), times
  `noise`, then scaled to length 1;
- so a million vectors are "variations" of a few thousand photos, near their class, with the real
  features' spectrum: near neighbours overlap as look-alikes of one class do.

With `dimension` above the features' own, every vector is mapped by one fixed random isometry
(orthonormal columns) into the larger space: distances, and so every search result and PCA, are the
same as in the features' own space, only the bytes per vector grow.

Extract features once (in the venv that has the pretrained model, `benchmarks/pretrained.py`):

    /tmp/effvenv/bin/python benchmarks/feature_model.py --embedder efficientnet-lite0 --out /tmp/features.npz

The file holds features of photos that may not be redistributed: keep it out of the repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.search_scale import ClusteredStream  # noqa: E402

RANK = 256


class FittedStream(ClusteredStream):
    """Vectors around real features with their within-class spread, drawn chunk by chunk.

    Same interface as `ClusteredStream`: chunk `i` is the same array on every pass.

    Args:
        features: a file written by this script (`vectors`, `labels`).
        rows: how many vectors to draw in all.
        chunk: vectors per chunk.
        dimension: the vectors' length: the features' own, or more (a fixed isometry maps them up).
        noise: the within-class spread's scale (1.0: as far from the seed photo as its class is from it).
        rank: principal components of the within-class spread kept.
        seed: the seed of every draw.
    """

    def __init__(
        self, features: Path, rows: int, chunk: int, dimension: int, noise: float, rank: int = RANK, seed: int = 0
    ) -> None:
        saved = np.load(features)
        seeds = saved["vectors"].astype(np.float32)
        seeds /= np.linalg.norm(seeds, axis=1, keepdims=True)
        labels = saved["labels"]
        if dimension < seeds.shape[1]:
            raise ValueError(f"dimension {dimension} is below the features' own {seeds.shape[1]} in {features}")
        residuals = seeds.copy()
        for label in np.unique(labels):
            residuals[labels == label] -= seeds[labels == label].mean(axis=0)
        _, singular, components = np.linalg.svd(residuals, full_matrices=False)
        rank = min(rank, len(singular))
        self.spread_basis = (singular[:rank, None] / np.sqrt(len(seeds) - 1)) * components[:rank]
        self.seeds, self.labels, self.noise = seeds, labels, noise
        self.rows, self.chunk, self.dimension, self.seed = rows, chunk, dimension, seed
        self.lift = None
        if dimension > seeds.shape[1]:
            gaussian = np.random.default_rng([seed, 3]).standard_normal((dimension, seeds.shape[1]))
            self.lift = np.linalg.qr(gaussian)[0].T.astype(np.float32)  # orthonormal rows: an isometry

    def _draw(self, rng: np.random.Generator, count: int) -> np.ndarray:
        out = self.seeds[rng.integers(0, len(self.seeds), count)]
        shape = (count, len(self.spread_basis))
        out += (self.noise * rng.standard_normal(size=shape, dtype=np.float32)) @ self.spread_basis
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out @ self.lift if self.lift is not None else out


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Extract the real features this model is fitted to.")
    parser.add_argument("--folder", type=Path, default=ROOT.parent / "shared" / "data" / "imagenette-val")
    parser.add_argument("--embedder", choices=["resnet50-random", "efficientnet-lite0"], default="efficientnet-lite0")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write (keep it out of the repository)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from benchmarks.duplicates import make_embedder
    from utilities.images.finding import find_images
    from utilities.indexing.pipeline import embed_paths

    paths = find_images(args.folder)
    if not paths:
        raise SystemExit(f"no images under {args.folder}: give --folder a folder with one sub-folder per class")
    started = time.perf_counter()
    embedded = embed_paths(paths, make_embedder(args.embedder), 32, progress=True)
    labels = np.array([Path(path).parent.name for path in embedded.paths])
    np.savez(args.out, vectors=embedded.vectors.astype(np.float32), labels=labels)
    print(
        f"{len(labels):,} features of {len(set(labels))} classes in {time.perf_counter() - started:.0f} s: {args.out}"
    )


if __name__ == "__main__":
    main()
