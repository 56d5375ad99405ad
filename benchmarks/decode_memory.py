"""Peak memory of decoding one very large image, and of indexing a folder of them.

Two files, made here: a 12,000 x 12,000 16-bit greyscale PNG (a few hundred KB: it compresses
well) and a 10,000 x 10,000 (100-megapixel) JPEG. Each is decoded in a fresh process, the way
indexing and queries decode (`decode_for_model`) and the way the web page decoded uploads
(`load_image` without a draft size); the process' peak RSS (ru_maxrss) is reported against its
RSS just before the decode. Then a fresh process indexes a folder of four 100-megapixel JPEGs
into Milvus Lite with a near-free embedder and the default decoder: its peak RSS growth over
the same process before the run, against workers x the bound of one decode. Growth is the
process' peak RSS (VmHWM, reset through /proc/self/clear_refs just before) less its RSS then
(Linux only).

`--package-root DIR` measures another checkout's package (for example the code before a
change, exported with `git archive`), whose decoding module may be `utilities.images`.

Usage:
    python benchmarks/decode_memory.py [--quick] [--package-root DIR] [--name decode-memory]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_table  # noqa: E402

DECODE = """
import json, sys
sys.path.insert(0, sys.argv[1])
try:
    from utilities.images.decoding import decode_for_model, load_image
except ImportError:  # the flat layout before 2026-11-30
    from utilities.images import decode_for_model, load_image
path, how = sys.argv[2], sys.argv[3]
def status_kb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")  # resets the peak (VmHWM) to the current RSS
before = status_kb("VmRSS")
try:
    if how == "decode_for_model":
        decode_for_model(path)
    else:
        load_image(path)
    outcome = "decoded"
except Exception as error:
    outcome = "refused: " + getattr(error, "reason", str(error))[:90]
peak = status_kb("VmHWM")
print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "outcome": outcome}))
"""

INDEX = """
import json, sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from utilities.embeddings import embedder_from_callable
from utilities.indexing.pipeline import index_folder
from utilities.images.reader import default_workers
from utilities.milvus.collection import ImageCollection
store = ImageCollection.open(sys.argv[3], name="big_photos", dimension=3, reset=True)
embedder = embedder_from_callable(lambda batch: batch.mean(axis=(1, 2)) / 255.0 + 0.01, dimension=3)
def status_kb(field):
    return int(next(l for l in open("/proc/self/status") if l.startswith(field)).split()[1])
with open("/proc/self/clear_refs", "w") as clear:
    clear.write("5")
before = status_kb("VmRSS")
report = index_folder(sys.argv[2], store, embedder, batch_size=4, progress=False)
peak = status_kb("VmHWM")
print(json.dumps({"before_mb": before / 1024, "peak_mb": peak / 1024, "indexed": report.indexed,
                  "failed": len(report.failed), "workers": default_workers()}))
"""


def make_files(folder: Path, side_png: int, side_jpeg: int, copies: int) -> tuple[Path, Path]:
    """The 16-bit PNG and the large JPEG (and `copies` JPEGs in `folder/big/`)."""
    from PIL import Image

    png = folder / "gray16.png"
    ramp = (np.arange(side_png, dtype=np.uint32) * 65535 // max(side_png - 1, 1)).astype(np.uint16)
    Image.fromarray(np.broadcast_to(ramp, (side_png, side_png)).copy()).save(png)
    big = folder / "big"
    big.mkdir()
    yy, xx = np.mgrid[0:side_jpeg:64, 0:side_jpeg:64]
    small = np.stack([(xx * 255 // side_jpeg), (yy * 255 // side_jpeg), np.full_like(xx, 128)], -1).astype(np.uint8)
    photo = Image.fromarray(small).resize((side_jpeg, side_jpeg))
    for number in range(copies):
        photo.save(big / f"photo_{number}.jpg", quality=85 + number)  # distinct files (distinct hashes)
    return png, big / "photo_0.jpg"


def run_child(code: str, *arguments: str) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", code, *arguments],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller images: checks that it runs (CI)")
    parser.add_argument("--package-root", type=Path, default=ROOT, help="the checkout whose package is measured")
    parser.add_argument("--name", default="decode-memory")
    args = parser.parse_args(argv)
    side_png, side_jpeg = (3000, 4000) if args.quick else (12_000, 10_000)
    if args.quick:
        args.name += "-quick"
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        png, jpeg = make_files(Path(scratch), side_png, side_jpeg, copies=4)
        for path, label in ((png, f"{side_png:,} x {side_png:,} 16-bit grey PNG"), (jpeg, f"{side_jpeg:,}^2 JPEG")):
            size_kb = path.stat().st_size / 1024
            for how in ("decode_for_model", "load_image"):
                result = run_child(DECODE, str(args.package_root), str(path), how)
                growth = result["peak_mb"] - result["before_mb"]
                rows.append([f"{label} ({size_kb:,.0f} KB)", how, f"{growth:,.0f}", result["outcome"]])
        indexing = None
        if (args.package_root / "utilities" / "indexing").is_dir():
            indexing = run_child(INDEX, str(args.package_root), str(jpeg.parent), f"{scratch}/m.db")
    notes = [f"package measured: {'this checkout' if args.package_root == ROOT else args.package_root.name}"]
    if indexing:
        growth = indexing["peak_mb"] - indexing["before_mb"]
        notes.append(
            f"indexing a folder of 4 such JPEGs (Milvus Lite, near-free embedder, batch 4, {indexing['workers']} "
            f"decoding workers): peak RSS grew {growth:,.0f} MB over the process before the run; "
            f"indexed {indexing['indexed']}, failed {indexing['failed']}"
        )
    write_table(
        args.name,
        "Peak memory of decoding one large image",
        ["file", "decoded by", "peak RSS growth (MB)", "outcome"],
        rows,
        notes,
        packages=["pillow", "numpy"],
    )


if __name__ == "__main__":
    main()
