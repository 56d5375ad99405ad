from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.conftest import class_photos
from utilities.images.reader import default_workers, iter_decoded_batches


@pytest.fixture
def mixed_paths(tmp_path: Path) -> list[Path]:
    photos = class_photos(1)[:7]
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    return photos[:3] + [broken] + photos[3:]


@pytest.mark.parametrize("decoder", ["thread", "process"])
def test_batches_keep_order_sizes_and_failures(mixed_paths: list[Path], decoder: str) -> None:
    batches = list(iter_decoded_batches(mixed_paths, batch_size=3, workers=2, decoder=decoder))
    assert [len(b.paths) + len(b.failures) for b in batches] == [3, 3, 2]
    good = [p for b in batches for p in b.paths]
    assert good == [p for p in mixed_paths if p.name != "broken.jpg"]
    assert [f.path for b in batches for f in b.failures] == [str(mixed_paths[3])]
    assert all(b.images.shape == (len(b.paths), 224, 224, 3) and b.images.dtype == np.uint8 for b in batches)


def test_thread_and_process_decoders_agree(mixed_paths: list[Path]) -> None:
    threads = np.concatenate([b.images for b in iter_decoded_batches(mixed_paths, 4, decoder="thread")])
    processes = np.concatenate([b.images for b in iter_decoded_batches(mixed_paths, 4, decoder="process")])
    np.testing.assert_array_equal(threads, processes)


def test_unknown_decoder_and_bad_batch_size_are_refused(mixed_paths: list[Path]) -> None:
    with pytest.raises(ValueError, match="decoder"):
        list(iter_decoded_batches(mixed_paths, 2, decoder="bogus"))
    with pytest.raises(ValueError, match="batch_size"):
        list(iter_decoded_batches(mixed_paths, 0))


def test_empty_input_yields_nothing() -> None:
    assert list(iter_decoded_batches([], 4)) == []


def test_shared_buffers_hold_the_same_images(mixed_paths: list[Path]) -> None:
    def run(reuse: bool) -> list[tuple[list[Path], np.ndarray]]:
        return [
            (b.paths, b.images.copy())  # a shared batch is only valid until the next one is asked for
            for b in iter_decoded_batches(mixed_paths, 3, workers=2, decoder="process", reuse_buffers=reuse)
        ]

    copied, shared = run(False), run(True)
    assert [paths for paths, _ in copied] == [paths for paths, _ in shared]
    for (_, a), (_, b) in zip(copied, shared, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("cores", "threads", "processes"), [(2, 2, 2), (8, 8, 6), (16, 16, 12), (64, 16, 16)])
def test_worker_processes_leave_cores_to_the_model(
    cores: int, threads: int, processes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert (default_workers("thread"), default_workers("process"), default_workers("gpu")) == (threads, processes, 2)
