"""What a user runs: the CLI's `index` on a folder, first run and unchanged re-run, against embedding alone.

Three fresh processes, one after the other (each holds the accelerator alone):
(a) embedding alone: `embed_paths` over the folder, no Milvus (the model's and the decoders' rate);
(b) `python -m utilities index FOLDER --json` into a new Milvus Lite file (or --server-uri);
(c) the same command again: nothing changed, so nothing is embedded.
Each process is timed twice: its whole wall time (start-up, model build, XLA compile included)
and the work alone (the run's own `seconds`; for (a) the embedding pass after a warm-up batch).
The goal of the GPU issue: (b)'s work rate >= 0.8 of (a)'s.

Usage:
    python benchmarks/cli_indexing.py [--quick] --images DIR [--count N] [--batch-size 256]
    KERAS_BACKEND=jax python benchmarks/cli_indexing.py --images /tmp/photos --batch-size 256   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import shown_path, write_table  # noqa: E402

EMBED_ALONE = """
import json, sys, time
import numpy as np
from utilities.embeddings import ResNet50Embedder
from utilities.images.finding import find_image_files
from utilities.indexing.pipeline import embed_paths
folder, batch = sys.argv[1], int(sys.argv[2])
paths = find_image_files(folder)
started = time.perf_counter()
embedder = ResNet50Embedder(weights=None, batch_size=batch)
embed_paths(paths[: 2 * batch], embedder, batch, progress=False)  # build and compile the model
warm_up = time.perf_counter() - started
started = time.perf_counter()
result = embed_paths(paths, embedder, batch, progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"embedded": len(result.paths), "seconds": seconds, "warm_up": warm_up}))
"""


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 generated photos: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, help="a folder of photos (default: generate --count photos)")
    parser.add_argument("--count", type=int, default=64_000, help="photos to generate when --images is not given")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--server-uri", default="", help="index into this server instead of a new Lite file")
    parser.add_argument("--name", default="cli-indexing")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.batch_size, args.images = 64, 16, None
    return args


def timed(command: list[str]) -> tuple[float, dict]:
    """Run a command; return its wall seconds and the JSON object its stdout ends with."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        shown = "embedding alone" if command[1] == "-c" else " ".join(command[1:4])
        raise SystemExit(f"{shown} ... failed ({done.returncode}):\n{done.stderr[-3000:]}")
    text = done.stdout
    return wall, json.loads(text[text.index("{") :])


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    with tempfile.TemporaryDirectory() as scratch:
        images = args.images
        if images is None:
            images = Path(scratch) / "photos"
            started = time.perf_counter()
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "make_photos.py"), str(images),
                            "--count", str(args.count)], check=True)  # fmt: skip
            print(f"generated {args.count} photos in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        uri = args.server_uri or f"{scratch}/cli.db"
        collection = "bench_cli_indexing"
        wall, embedded = timed([sys.executable, "-c", EMBED_ALONE, str(images), str(args.batch_size)])
        count = embedded["embedded"]
        embed_rate = count / embedded["seconds"]
        warm_up = embedded["warm_up"]
        rows = [["(a) embedding alone (`embed_paths`, no Milvus)", count, f"{wall:.1f}", f"{embed_rate:,.0f}", "1.00"]]
        index = [sys.executable, "-m", "utilities", "index", str(images), "--uri", uri, "--collection", collection,
                 "--weights", "none", "--batch-size", str(args.batch_size), "--json"]  # fmt: skip
        for label in ("(b) `index`, first run", "(c) `index`, unchanged re-run"):
            wall, report = timed(index)
            rate = count / report["seconds"]
            rows.append([label, count, f"{wall:.1f}", f"{rate:,.0f}", f"{rate / embed_rate:.2f}"])
            if "first" in label:
                net_rate = count / max(report["seconds"] - warm_up, 1e-9)
            expected = (count, 0) if "first" in label else (0, count)
            if (report["added"], report["unchanged"]) != expected:
                raise SystemExit(f"{label}: unexpected report {report}")
        if args.server_uri:
            subprocess.run([sys.executable, "-m", "utilities", "drop", "--uri", uri, "--collection", collection,
                            "--yes"], check=True, capture_output=True, cwd=ROOT)  # fmt: skip
    backend = "server" if args.server_uri.startswith("http") else "Milvus Lite"
    write_table(
        args.name,
        f"The CLI's `index` against embedding alone ({backend}, batch {args.batch_size})",
        ["what", "photos", "process wall (s)", "work rate (images/s)", "vs (a)"],
        rows,
        [
            "process wall: the whole command, with Python start-up, model build and compilation; "
            "work rate: photos over the run's own `seconds` (for (a): the pass after a warm-up of two batches)",
            f"Keras backend: {os.environ.get('KERAS_BACKEND', 'tensorflow')}; "
            "photos: "
            + (shown_path(args.images) if args.images else f"{args.count} generated by benchmarks/make_photos.py"),
            f"building the model and compiling it for the batch took {warm_up:.1f} s in (a): the runs of (b) and "
            "(c) pay it inside their `seconds` when they embed anything",
            f"(b) with (a)'s warm-up taken out of its seconds: {net_rate:,.0f} images/s, "
            f"{net_rate / embed_rate:.2f} of (a)",
            "goal on a GPU: (b) >= 0.8 of (a)",
        ],
        packages=["keras", "tensorflow-cpu", "jax", "pymilvus", "milvus-lite"],
    )


if __name__ == "__main__":
    main()
