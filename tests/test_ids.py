from __future__ import annotations

from pathlib import Path

import pytest

from utilities.ids import path_id, stored_path


@pytest.mark.parametrize(
    "path",
    [
        "/a/b.jpg",
        "/a//b.jpg",
        "//a/b",
        "/a/./b",
        "/a/b/",
        "/a/b/.",
        "/a/../b",
        "/.",
        "/",
        "/a/.b",
        "/a/b./c",
        "a/b.jpg",
        "./a",
        "~/a.jpg",
    ],
)
def test_stored_path_is_what_pathlib_gives(path: str) -> None:
    assert stored_path(path) == Path(path).expanduser().absolute().as_posix()
    assert stored_path(Path(path)) == stored_path(path)


def test_path_id_is_a_stable_63_bit_id() -> None:
    assert path_id("/data/a.jpg") == path_id(stored_path("/data//a.jpg")) != path_id("/data/b.jpg")
    assert 0 <= path_id("/data/a.jpg") < 2**63
