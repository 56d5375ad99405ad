"""Shared fixtures: real Milvus backends (Lite and server), real photos, one model.

The photos are committed in `tests/data/` (see its README: CC0 and public-domain photos),
so the suite needs nothing outside the repository.

The server backend needs `MILVUS_TEST_SERVER_URI` (set by `.ci/run`, which starts
a real Milvus standalone). Without it, server cases fail with a message saying
how to start one; deselect them with `-m "not server"` for a quick local run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / "tests" / "data"
PHOTOS = TEST_DATA / "photos"
"""10 class folders of 10 photos each (`<class>/<class>_NN.jpg`)."""
SAMPLES = TEST_DATA / "samples"
"""Full-size photos (`<name>.jpg`) whose crops fill `PHOTOS`: outside queries, larger files."""
SERVER_ENV = "MILVUS_TEST_SERVER_URI"


@pytest.fixture(autouse=True)
def _work_in_tmp_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run each test in its own folder, so relative outputs (`db/` mapping files) stay out of the repository,
    with its own cache folder (`config.cache_dir`: nothing remembered from another test or written to ~/.cache)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("UTILITIES_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(params=["lite", pytest.param("server", marks=pytest.mark.server)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A Milvus URI: a fresh Lite file, or the standalone server from `.ci/run`."""
    if request.param == "lite":
        return str(tmp_path / "milvus.db")
    uri = os.environ.get(SERVER_ENV)
    if not uri:
        pytest.fail(
            f"{SERVER_ENV} is not set: run `bash .ci/run`, or start `milvus-server --data DIR` and "
            f"export {SERVER_ENV}=http://127.0.0.1:19530, or deselect with -m 'not server'"
        )
    return uri


@pytest.fixture(params=[pytest.param("server", marks=pytest.mark.server)])
def server_uri(request: pytest.FixtureRequest) -> str:
    """The standalone server from `.ci/run`, for cases that only a server supports."""
    uri = os.environ.get(SERVER_ENV)
    if not uri:
        pytest.fail(f"{SERVER_ENV} is not set: run `bash .ci/run`, or deselect with -m 'not server'")
    return uri


@pytest.fixture
def collection_name() -> str:
    """A collection name no other test uses."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def store(backend: str, collection_name: str):
    """An empty 2048-d COSINE collection on the backend, dropped afterwards."""
    from utilities.milvus.collection import ImageCollection

    opened = ImageCollection.open(backend, name=collection_name, dimension=2048)
    yield opened
    if opened.closed:  # the test closed it and cleaned up itself
        return
    if opened.exists():
        opened.drop()
    opened.close()


@pytest.fixture(scope="session")
def embedder():
    """ResNet50 with random weights (no network here), built once per session."""
    from utilities.embeddings import ResNet50Embedder

    model = ResNet50Embedder(weights=None, batch_size=8)
    _ = model.model
    return model


def cli_process(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`python -m utilities ARGS` started in a child process, its output captured as text."""
    return subprocess.Popen(
        [sys.executable, "-m", "utilities", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT), **(env or {})},
    )


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    """Run `python -m utilities ARGS` to its end in a child process (killed after `timeout` s)."""
    child = cli_process(*args, env=env, cwd=cwd)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    return subprocess.CompletedProcess(child.args, child.returncode, out, err)


def run_python(program: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -c PROGRAM ARGS` to its end in a child process that imports this checkout, output as text."""
    return subprocess.run(
        [sys.executable, "-c", program, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def mean_colour_embedder(on_batch=None):
    """A 3-d embedder of an image's mean colour (never a zero vector): nearly free.

    `on_batch`, if given, is called before each batch is embedded (to observe when the model runs).
    """
    import numpy as np

    from utilities.embeddings import embedder_from_callable

    def embed(batch: np.ndarray) -> np.ndarray:
        if on_batch is not None:
            on_batch()
        return batch.mean(axis=(1, 2)) / 255.0 + 0.01

    return embedder_from_callable(embed, dimension=3)


def serve_in_thread(app) -> tuple[str, object, threading.Thread]:
    """Run the ASGI `app` on uvicorn in a thread of this process, on a free port of 127.0.0.1.

    Returns the base URL, the server (set `should_exit` to stop it) and its thread (join it after).
    """
    import uvicorn

    from tests.ports import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


@contextmanager
def headless_chromium(width: int, height: int) -> Iterator[Any]:
    """A Selenium driver of Debian's headless Chromium (`chromium`, `chromium-driver`: what `.ci/run`
    installs) with a `width` x `height` window, quit afterwards."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not browser or not driver_path:
        pytest.fail(
            "Chromium and its driver are needed for the browser test: "
            "sudo apt-get install -y chromium chromium-driver (what `.ci/run` does)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", f"--window-size={width},{height}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def class_photos(per_class: int) -> list[Path]:
    """The first `per_class` photos of each class folder of the committed test photos."""
    files: list[Path] = []
    for folder in sorted(p for p in PHOTOS.iterdir() if p.is_dir()):
        files.extend(sorted(folder.glob("*.jpg"))[:per_class])
    return files


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    """A writable folder with 10 real photos (one per class), in class sub-folders."""
    folder = tmp_path / "photos"
    for source in class_photos(1):
        target = folder / source.parent.name / source.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)
    return folder
