"""The Map view in headless Chromium: time to the first paint, time of a zoom step, and the page's memory.

N synthetic rows (Gaussian clusters under 10 class folders: the page draws positions, so real vectors
change nothing here) are written to a Milvus Lite file, mapped by PCA (`collection_map`), and served
by the web app in this process (`web.app.create_app`). Chromium (Debian's `chromium` and
`chromium-driver`) opens `/map`; the page records, in `<body data-…>`, when it finished its first
drawing (ms since the page was asked for: the request, `/api/map`'s answer, parsing and the drawing)
and how long each drawing took. Ten zoom steps (wheel events) are then sent, each drawn before the next.
The page's JavaScript heap is read from `performance.memory`.

    python benchmarks/map_page.py --rows 100000
    python benchmarks/map_page.py --quick   # 5,000 rows: checks that it runs
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import write_table  # noqa: E402

CLASSES = 10
DIMENSION = 16
ZOOM_STEPS = 10


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[100_000], help="rows to map, one run each")
    parser.add_argument("--quick", action="store_true", help="5,000 rows, no results table: checks that it runs")
    parser.add_argument("--name", default="map-page", help="results file name under benchmarks/results/")
    return parser.parse_args(argv)


def stored_map(folder: Path, rows: int) -> object:
    """An engine over `rows` clustered vectors in a Lite file under `folder`, with its map saved."""
    from utilities.collection_map import map_collection
    from utilities.embeddings import embedder_from_callable
    from utilities.engine import ImageSearchEngine

    model = embedder_from_callable(lambda batch: batch.reshape(len(batch), -1)[:, :DIMENSION], dimension=DIMENSION)
    engine = ImageSearchEngine(str(folder / "map.db"), collection_name="page", embedder=model, progress=False)
    rng = np.random.default_rng(7)
    classes = np.arange(rows) % CLASSES
    centres = rng.normal(scale=4.0, size=(CLASSES, DIMENSION)).astype(np.float32)
    vectors = centres[classes] + rng.normal(size=(rows, DIMENSION)).astype(np.float32)
    paths = [f"/bench/class_{c}/image_{n:07d}.jpg" for n, c in enumerate(classes.tolist())]
    for start in range(0, rows, 20_000):
        engine.insert_vectors(paths[start : start + 20_000], vectors[start : start + 20_000])
    map_collection(engine, method="pca", progress=False)
    return engine


def measure(url: str) -> dict[str, float]:
    """First paint, zoom steps and heap of the Map view at `url`, in one Chromium."""
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.conftest import headless_chromium

    with headless_chromium(1200, 820) as driver:
        wait = WebDriverWait(driver, 120)
        asked = time.perf_counter()
        driver.get(url + "/map")
        wait.until(lambda d: d.execute_script("return document.body.dataset.paintedAt"))
        seen = time.perf_counter() - asked
        first = float(driver.execute_script("return document.body.dataset.paintedAt"))
        answer = driver.execute_script(
            "const e = performance.getEntriesByType('resource').find((r) => r.name.endsWith('/api/map'));"
            "return [e.requestStart, e.responseStart, e.responseEnd];"
        )
        steps = []
        for step in range(ZOOM_STEPS):
            before = driver.execute_script("return document.body.dataset.paintedAt")
            driver.execute_script(
                "const c = document.getElementById('map'); const r = c.getBoundingClientRect();"
                "c.dispatchEvent(new WheelEvent('wheel', {deltaY: arguments[0], clientX: r.left + r.width / 2,"
                " clientY: r.top + r.height / 2, cancelable: true}));",
                -120 if step < ZOOM_STEPS // 2 else 120,
            )
            wait.until(lambda d, b=before: d.execute_script("return document.body.dataset.paintedAt") != b)
            steps.append(float(driver.execute_script("return document.body.dataset.drawMs")))
        heap = driver.execute_script("return performance.memory ? performance.memory.usedJSHeapSize : 0")
    return {
        "first_paint_ms": first,
        "api_asked_ms": answer[0],
        "api_first_byte_ms": answer[1],
        "api_done_ms": answer[2],
        "seen_s": seen,
        "zoom_median_ms": statistics.median(steps),
        "zoom_max_ms": max(steps),
        "heap_mb": heap / 2**20,
    }


def run(rows: int) -> dict[str, float]:
    """Map `rows` rows, serve them and measure the page."""
    from tests.conftest import serve_in_thread
    from utilities.web.app import create_app

    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        engine = stored_map(Path(folder), rows)
        prepared = time.perf_counter() - started
        url, server, thread = serve_in_thread(create_app(engine))
        try:
            figures = measure(url)
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            engine.close()
    return {"rows": rows, "prepared_s": prepared, **figures}


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    results = [run(rows) for rows in ([5_000] if args.quick else args.rows)]
    for result in results:
        print({name: round(value, 1) for name, value in result.items()})
    if args.quick:
        return 0
    write_table(
        args.name,
        "The Map view in headless Chromium",
        ["rows", "first paint (ms after the request)", "zoom step, median (ms)", "zoom step, max (ms)", "JS heap (MB)"],
        [
            [
                f"{r['rows']:,}",
                f"{r['first_paint_ms']:.0f}",
                f"{r['zoom_median_ms']:.1f}",
                f"{r['zoom_max_ms']:.1f}",
                f"{r['heap_mb']:.0f}",
            ]
            for r in results
        ],
        notes=[
            "synthetic 16-d clusters under 10 class folders, mapped by PCA; served from Milvus Lite by the app "
            "in this process; Chromium 1200x820 (device pixel ratio 1)",
            f"first paint: the page's own clock (performance.now) when its first drawing ended; zoom: {ZOOM_STEPS} "
            "wheel steps, each drawing timed by the page",
        ],
        packages=["selenium", "fastapi"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
