"""The rows' files on the web (`web.files_view`, `web.stored_files`): the file itself streamed, and
both routes refusing a file put in the indexed path's place after it was checked.

Over HTTP against a real uvicorn server in this process, on Milvus Lite, with the mean-colour embedder.
"""

from __future__ import annotations

import os
import shutil
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.conftest import SAMPLES, mean_colour_embedder, serve_in_thread
from utilities.engine import ImageSearchEngine
from utilities.ids import path_id, stored_path

LARGE_BYTES = 64 * 1024 * 1024
"""Size of the large file: a photo with padding after its end (still a valid JPEG)."""


@dataclass
class Served:
    url: str
    photo: Path
    large: Path

    def get(self, row_file: Path, kind: str, **options) -> requests.Response:
        return requests.get(f"{self.url}/api/rows/{path_id(stored_path(row_file))}/{kind}", timeout=60, **options)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    from utilities.web.app import create_app

    work = tmp_path_factory.mktemp("files")
    folder = work / "photos"
    folder.mkdir()
    photo = Path(shutil.copy2(SAMPLES / "cat.jpg", folder / "cat.jpg"))
    large = folder / "large.jpg"
    with large.open("wb") as handle:
        handle.write((SAMPLES / "coffee.jpg").read_bytes())
        handle.truncate(LARGE_BYTES)  # zeros after the JPEG's end: decoders stop before them
    engine = ImageSearchEngine(uri=str(work / "m.db"), collection_name="files", embedder=mean_colour_embedder())
    report = engine.index_folder(folder)
    assert report.indexed == 2, report
    url, server, thread = serve_in_thread(create_app(engine))
    yield Served(url, photo, large)
    server.should_exit = True
    thread.join(timeout=10)
    engine.close()


def test_a_large_file_is_streamed_in_bounded_memory(served: Served) -> None:
    tracemalloc.start()  # the server runs in this process: its allocations are traced too
    try:
        with served.get(served.large, "image", stream=True) as answer:
            assert answer.status_code == 200 and answer.headers["content-length"] == str(LARGE_BYTES)
            received = sum(len(chunk) for chunk in answer.iter_content(1024 * 1024))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert received == LARGE_BYTES
    assert peak < LARGE_BYTES / 8, f"serving a {LARGE_BYTES >> 20} MB file took {peak / 2**20:.1f} MB at its peak"


@contextmanager
def replaced_after_its_check(path: Path, other: Path) -> Iterator[None]:
    """Put `other` in `path`'s place (another inode) right after the next `os.stat` of `path` returns,
    as a file swapped between the server's check and its open would be; put the original back after."""
    original, status = path.read_bytes(), path.stat()
    real_stat, target, armed = os.stat, stored_path(path), [True]
    stand_in = path.with_name(f".{path.name}.swap")

    def stat_then_swap(name, *args, **kwargs):
        result = real_stat(name, *args, **kwargs)
        if armed[0] and isinstance(name, (str, os.PathLike)) and os.fspath(name) == target:
            armed[0] = False
            shutil.copy(other, stand_in)
            os.replace(stand_in, path)
        return result

    os.stat = stat_then_swap
    try:
        yield
        assert not armed[0], "the server never looked at the file"
    finally:
        os.stat = real_stat
        path.write_bytes(original)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))


@pytest.mark.parametrize("kind", ["image", "thumbnail"])
def test_a_file_swapped_after_its_check_is_refused(served: Served, kind: str) -> None:
    # first request of this row's thumbnail: none is kept that could answer without reading the file
    with replaced_after_its_check(served.photo, SAMPLES / "rocket.jpg"):
        refused = served.get(served.photo, kind)
    assert refused.status_code == 404, f"served the file put in its place ({len(refused.content)} bytes)"
    assert "changed while it was read" in refused.json()["detail"]
    restored = served.get(served.photo, kind)  # the original, back in place, is served again
    assert restored.status_code == 200
    if kind == "image":
        assert restored.content == served.photo.read_bytes()
