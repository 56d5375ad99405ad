"""Where the time goes between decoding and the model: one line per decoder and worker count.

For each configuration, the package's decode-and-embed loop over the same files, with the
main thread's time split into waiting for the next decoded batch and running the model.
Waiting near 0 % means the model side (the copy to the device, the forward pass) is the
limit; a large share means decoding is. The raw compiled model on decoded batches in
memory is the baseline, measured in the same process.

Usage:
    python benchmarks/decoders.py [--quick] [--configs process:16,process:12,gpu:2] [--batch-size 256]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import best_of, default_images, model_and_photos, shown_path, write_table  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="few images: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, default=default_images(), help="default: %(default)s")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=8, help="pass the file list this many times")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--configs",
        default="thread:2,process:2,process:2:copy",
        help="comma-separated DECODER:WORKERS[:copy] (copy: images copied out of shared memory, as before)",
    )
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--name", default="decoders")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.repeat = 2 * args.batch_size, 1
    return args


def timed_loop(stream: list[Path], embedder, batch_size: int, decoder: str, workers: int, reuse: bool) -> dict:
    """Images/s of decode + embed, and the main thread's seconds waiting for batches and in the model."""
    from utilities.images.reader import iter_decoded_batches

    waiting = modelling = 0.0
    started = time.perf_counter()
    batches = iter_decoded_batches(
        stream, batch_size, embedder.image_size, workers, decoder=decoder, reuse_buffers=reuse
    )
    while True:
        asked = time.perf_counter()
        batch = next(batches, None)
        waiting += time.perf_counter() - asked
        if batch is None:
            break
        asked = time.perf_counter()
        embedder.embed_batch(batch.images)
        modelling += time.perf_counter() - asked
    total = time.perf_counter() - started
    return {"rate": len(stream) / total, "waiting": waiting / total, "model": modelling / total}


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    import keras

    paths, embedder, decoded = model_and_photos(args.images, args.count, args.batch_size, args.dtype)
    raw = len(paths) / best_of(lambda: embedder.embed_batch(decoded), 2)
    stream = paths * args.repeat
    rows = [["(a) raw model on decoded batches in memory", "", f"{raw:.1f}", "1.00", "", ""]]
    for config in args.configs.split(","):
        decoder, workers, *flags = config.split(":")
        result = timed_loop(stream, embedder, args.batch_size, decoder, int(workers), "copy" not in flags)
        rows.append(
            [
                f"`{decoder}` decoder" + (", images copied out of shared memory" if "copy" in flags else ""),
                workers,
                f"{result['rate']:.1f}",
                f"{result['rate'] / raw:.2f}",
                f"{100 * result['waiting']:.0f} %",
                f"{100 * result['model']:.0f} %",
            ]
        )
        print(rows[-1], flush=True)
    write_table(
        args.name,
        "Decode and embed: which side is the limit",
        ["path", "workers", "images/s", "vs (a)", "main thread waiting for decoding", "main thread in the model"],
        rows,
        [
            f"{len(stream)} images a configuration ({len(paths)} photos from {shown_path(args.images)}, "
            f"{args.repeat} passes), batch size {args.batch_size}, dtype policy {args.dtype}, "
            f"Keras backend {keras.backend.backend()}; workers are started inside the timing",
        ],
        packages=["keras", "tensorflow-cpu", "tensorflow", "jax", "torch", "torchvision", "pillow", "numpy"],
    )


if __name__ == "__main__":
    main()
