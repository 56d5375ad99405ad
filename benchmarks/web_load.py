"""A bounded load test of the web API: C clients x N searches against `python -m utilities serve` on 127.0.0.1.

The photos are indexed into a fresh collection (Milvus Lite by default, or the server), `serve`
is started in a child process, and each client thread uploads photos to `POST /api/search`
(k=10) one after the other, a tenth of the time searching by a stored row instead
(`GET /api/search/{id}`). An upload answered 503 (more uploads wait for the model than the
server lets wait, `--max-waiting-uploads`) is sent again after its `Retry-After`, and counted.
Meanwhile a prober asks for `/api/info` and a thumbnail four times a second: they must stay fast
while uploads wait. Reports p50/p99 latency (a request's, retries included), errors, 503s, the
probes' p50/p99, and p50 of the last quarter of the requests against the first (latency must
not grow as the run goes on).

Usage:
    python benchmarks/web_load.py [--quick] [--clients 8] [--searches 200] [--server-uri http://127.0.0.1:19530]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchmarks.common import default_images, shown_path, write_table  # noqa: E402
from tests.ports import free_port  # noqa: E402


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 clients x 10 searches: checks that it runs (CI)")
    parser.add_argument("--images", type=Path, default=default_images(), help="default: %(default)s")
    parser.add_argument("--count", type=int, default=300, help="photos indexed (and used as queries)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--searches", type=int, default=200, help="per client")
    parser.add_argument("--server-uri", default="", help="a Milvus server (default: a Milvus Lite file)")
    parser.add_argument("--max-waiting-uploads", type=int, default=8, help="serve's bound (default: its default)")
    parser.add_argument("--name", default="web-load")
    args = parser.parse_args(argv)
    if args.quick:
        args.name += "-quick"
        args.count, args.clients, args.searches = 20, 2, 10
    return args


def _cli(*arguments: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "utilities", *arguments],
        check=True,
        cwd=cwd,
        capture_output=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
    )


def client(url: str, photos: list[Path], searches: int, seed: int, out: list[tuple[float, float, bool, int]]) -> None:
    """One client: `searches` requests in a row; appends (start, seconds, ok, 503s retried) for each."""
    import requests

    rng = random.Random(seed)
    session = requests.Session()
    ids: list[str] = []
    for _ in range(searches):
        started = time.perf_counter()
        busy = 0
        try:
            by_row = bool(ids) and rng.random() < 0.1
            photo = rng.choice(photos)
            while True:
                if by_row:
                    answer = session.get(f"{url}/api/search/{rng.choice(ids)}", params={"k": 10}, timeout=120)
                else:
                    files = {"file": (photo.name, photo.read_bytes())}
                    answer = session.post(f"{url}/api/search", files=files, data={"k": "10"}, timeout=120)
                if answer.status_code != 503 or busy >= 100:
                    break
                busy += 1
                time.sleep(float(answer.headers.get("retry-after", "1")))
            ok = answer.status_code == 200 and len(answer.json()["results"]) == 10
            if ok:
                ids = [hit["id"] for hit in answer.json()["results"]]
        except Exception:  # noqa: BLE001 - counted as an error
            ok = False
        out.append((started, time.perf_counter() - started, ok, busy))


def prober(url: str, stop: threading.Event, out: dict[str, list[float]], thumbnail: str) -> None:
    """Until `stop`: `/api/info` and a thumbnail, four times a second; their latencies (s) into `out`."""
    import requests

    session = requests.Session()
    while not stop.wait(0.25):
        for kind, path in (("info", "/api/info"), ("thumbnail", thumbnail)):
            started = time.perf_counter()
            answer = session.get(url + path, timeout=60)
            if answer.status_code == 200:
                out[kind].append(time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    from utilities.images.finding import find_images

    photos = find_images(args.images)[: args.count]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        folder = work / "photos"
        folder.mkdir()
        for index, photo in enumerate(photos):
            (folder / f"{index:05d}{photo.suffix}").symlink_to(photo.resolve())
        uri = args.server_uri or str(work / "milvus.db")
        common = ["--uri", uri, "--collection", "bench_web", "--weights", "none"]
        _cli("index", str(folder), *common, cwd=work)
        port = free_port()
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "utilities",
                "serve",
                *common,
                "--port",
                str(port),
                "--max-waiting-uploads",
                str(args.max_waiting_uploads),
            ],  # fmt: skip
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            import requests

            for _ in range(360):
                try:
                    if requests.get(f"{url}/api/info", timeout=5).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.5)
            samples: list[tuple[float, float, bool, int]] = []
            probes: dict[str, list[float]] = {"info": [], "thumbnail": []}
            first = requests.post(f"{url}/api/search", files={"file": (photos[0].name, photos[0].read_bytes())},
                                  data={"k": "1"}, timeout=120).json()["results"][0]  # fmt: skip
            stop = threading.Event()
            probe = threading.Thread(target=prober, args=(url, stop, probes, first["thumbnail"]))
            threads = [
                threading.Thread(target=client, args=(url, photos, args.searches, seed, samples))
                for seed in range(args.clients)
            ]
            started = time.perf_counter()
            probe.start()
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            wall = time.perf_counter() - started
            stop.set()
            probe.join()
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
            if args.server_uri:
                _cli("drop", "--yes", *common, cwd=work)
    samples.sort()
    seconds = np.array([s for _, s, _, _ in samples]) * 1000
    errors = sum(1 for _, _, ok, _ in samples if not ok)
    busy = sum(retried for *_, retried in samples)
    retried_requests = sum(1 for *_, retried in samples if retried)

    def p50_p99(values: list[float]) -> str:
        return f"{np.percentile(values, 50) * 1000:.0f} / {np.percentile(values, 99) * 1000:.0f}" if values else "-"

    quarter = max(1, len(samples) // 4)
    first, last = np.median(seconds[:quarter]), np.median(seconds[-quarter:])
    rows = [
        [
            "server" if args.server_uri else "Milvus Lite",
            f"{args.clients} x {args.searches}",
            len(samples),
            errors,
            f"{busy} ({retried_requests} requests)",
            f"{np.percentile(seconds, 50):.0f}",
            f"{np.percentile(seconds, 99):.0f}",
            f"{seconds.max():.0f}",
            f"{len(samples) / wall:.1f}",
            f"{first:.0f} / {last:.0f} ({last / first:.2f})",
            p50_p99(probes["info"]),
            p50_p99(probes["thumbnail"]),
        ]
    ]
    write_table(
        args.name,
        "Web API under load (bounded, local)",
        ["backend", "clients x searches", "requests", "errors", "503s retried", "p50 ms", "p99 ms", "max ms"]
        + ["requests/s", "p50 first / last quarter", "info p50 / p99 ms", "thumbnail p50 / p99 ms"],
        rows,
        [
            f"{len(photos)} photos from {shown_path(args.images)} indexed with random-weights ResNet50; k=10; "
            "9 in 10 requests upload a photo (decoded and embedded on the server), "
            "1 in 10 searches by a stored row's id",
            "clients and server on the same machine; the model runs one request at a time, so latency is "
            "about clients x the model's time per image",
            f"serve --max-waiting-uploads {args.max_waiting_uploads}: beyond that many uploads waiting for the model, "
            "a 503 with Retry-After (2 s), after which the client sends the same request again (its latency counts "
            "the wait); info and thumbnail: a prober's requests, 4 a second, during the run",
        ],
        packages=["fastapi", "uvicorn", "keras", "tensorflow-cpu", "pymilvus", "milvus-lite"],
    )


if __name__ == "__main__":
    main()
