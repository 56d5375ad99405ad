"""Embedding throughput: the model's limit, the package end to end, and the naive per-image loop.

(a) raw: the compiled ResNet50 on uint8 batches already decoded in memory;
(b) package: `indexing.pipeline.embed_paths` from JPEG files on disk (parallel decoding overlapped with the model);
(c) naive: `keras.utils.load_img` + `preprocess_input` + `model.predict` on one image at a time.
All three run in the same process on the same photos; the ratios are what to compare across machines.

Usage:
    python benchmarks/embedding.py [--quick] [--images DIR] [--count N] [--batch-size B] [--dtype bfloat16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import best_of, default_images, model_and_photos, shown_path, write_table  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, default=default_images(), help="default: %(default)s")
    parser.add_argument("--count", type=int, default=512, help="photos for (a) and (b)")
    parser.add_argument("--naive-count", type=int, default=32, help="photos for (c)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating timings of (a) and (b); best kept")
    parser.add_argument("--repeat", type=int, default=1, help="pass the file list this many times in (b)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: CPU count; gpu: 2)")
    parser.add_argument(
        "--decoder", default=None, help="thread, process or gpu (nvJPEG); default: process with 8+ cores, else thread"
    )
    parser.add_argument("--dtype", default="float32", help="float32, or mixed_bfloat16 / mixed_float16")
    parser.add_argument("--name", default="embedding", help="results file name (without .md)")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.naive_count, args.rounds = 2 * args.batch_size, 4, 1
    return args


def naive_loop(paths: list[Path], model) -> np.ndarray:
    """What many tutorials do: one file, one `predict` call at a time."""
    import keras

    vectors = []
    for path in paths:
        image = keras.utils.load_img(path, target_size=(224, 224))
        array = keras.applications.resnet50.preprocess_input(keras.utils.img_to_array(image)[None])
        vectors.append(model.predict(array, verbose=0)[0])
    return np.stack(vectors)


def single_query_ms(paths: list[Path], embedder) -> float:
    """Median time to embed one query image from its file (what a search waits for first), in ms."""
    import time

    from utilities.search import query_vectors

    query_vectors(paths[:1], embedder)  # warm: the single-image shape is compiled once
    times = []
    for path in paths[1:]:
        started = time.perf_counter()
        query_vectors([path], embedder)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1000)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    import keras

    from utilities.embeddings import ResNet50Embedder
    from utilities.images.reader import default_decoder, iter_decoded_batches
    from utilities.indexing.pipeline import embed_paths

    paths, embedder, decoded = model_and_photos(args.images, args.count, args.batch_size, args.dtype)
    stream = paths * args.repeat  # long enough to amortise starting the decoding workers
    raw_times, package_times = [], []
    for _ in range(args.rounds):  # alternate (a) and (b) so that both see the same machine load
        raw_times.append(best_of(lambda: embedder.embed_batch(decoded), 1))
        package_times.append(
            best_of(
                lambda: embed_paths(
                    stream, embedder, args.batch_size, args.workers, progress=False, decoder=args.decoder
                ),
                1,
            )
        )
    raw, package = min(raw_times), min(package_times)
    decoder = args.decoder or default_decoder()
    decode_only = best_of(
        lambda: sum(1 for _ in iter_decoded_batches(stream, args.batch_size, workers=args.workers, decoder=decoder)),
        1,
    )
    check_paths = paths[: max(64, args.batch_size)]  # whole batches: no shape to compile again
    check = embed_paths(check_paths, embedder, args.batch_size, args.workers, progress=False, decoder=decoder)
    agreement = np.sum(check.vectors * embedder.embed_batch(decoded[: len(check.vectors)]), axis=1)
    single = single_query_ms(paths[: min(len(paths), 11)], embedder)
    naive_paths = paths[: args.naive_count]
    plain = keras.applications.ResNet50(include_top=False, weights=None, pooling="avg")
    naive_loop(naive_paths[:1], plain)  # first call builds the predict function
    naive = best_of(lambda: naive_loop(naive_paths, plain), 1)

    rates = {"raw": len(paths) / raw, "package": len(stream) / package, "naive": len(naive_paths) / naive}
    rates["decode"] = len(stream) / decode_only
    rows = [
        ["(a) raw batched forward, decoded uint8 in memory", len(paths), f"{rates['raw']:.1f}", "1.00"],
        [
            "(b) package `embed_paths` from files",
            len(stream),
            f"{rates['package']:.1f}",
            f"{rates['package'] / rates['raw']:.2f}",
        ],
        [
            "(c) naive loop: load_img + predict per image",
            len(naive_paths),
            f"{rates['naive']:.1f}",
            f"{rates['naive'] / rates['raw']:.2f}",
        ],
        [
            f"(d) decoding alone, `{decoder}` decoder (no model; workers started inside the timing)",
            len(stream),
            f"{rates['decode']:.1f}",
            f"{rates['decode'] / rates['raw']:.2f}",
        ],
    ]
    paired = [len(stream) / p / (len(paths) / r) for r, p in zip(raw_times, package_times, strict=True)]
    notes = [
        "(b)/(a) of each alternating round (the machine is shared: compare within a round): "
        + ", ".join(f"{ratio:.2f}" for ratio in paired)
        + f"; median {float(np.median(paired)):.2f}",
        f"(b)/(a) = {rates['package'] / rates['raw']:.2f} best against best (goal >= 0.90); "
        f"(b)/(c) = {rates['package'] / rates['naive']:.1f} (goal >= 15)",
        f"one query image from its file: {single:.1f} ms (median of {max(1, min(len(paths), 11) - 1)}), "
        "the time a search spends before it reaches Milvus",
        f"batch size {args.batch_size}, dtype policy {args.dtype}, Keras backend {keras.backend.backend()}, "
        f"decoder {decoder}, photos from {shown_path(args.images)}",
        f"cosine between vectors from the `{decoder}` decoder and from Pillow-decoded arrays: "
        f"min {agreement.min():.4f}, mean {agreement.mean():.4f} ({len(agreement)} photos)",
    ]
    if args.dtype != "float32":
        keras.mixed_precision.set_dtype_policy("float32")
        reference = ResNet50Embedder(weights=None, batch_size=args.batch_size).embed_batch(decoded[:64])
        reduced = embedder.embed_batch(decoded[:64])
        cosine = np.sum(reference * reduced, axis=1)
        notes.append(
            f"cosine between float32 and {args.dtype} vectors: min {cosine.min():.4f}, "
            f"mean {cosine.mean():.4f} (64 photos)"
        )
    write_table(
        args.name,
        "Embedding throughput (images/s)",
        ["path", "images", "images/s", "vs (a)"],
        rows,
        notes,
        packages=["keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "pillow", "numpy"],
    )


if __name__ == "__main__":
    main()
