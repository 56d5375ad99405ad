from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from utilities.errors import ImageSearchError
from utilities.files import copy_results


def make_results(tmp_path: Path) -> pd.DataFrame:
    paths = []
    for folder, content in (("a", b"first"), ("b", b"second"), ("c", b"third")):
        path = tmp_path / "src" / folder / "same.jpg"
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
        paths.append(str(path))
    return pd.DataFrame(
        {"rank": [1, 2, 3], "id": [11, 22, 33], "path": paths, "distance": [0.0, 0.1, 0.2], "score": [1.0, 0.9, 0.8]}
    )


def test_same_named_files_both_survive(tmp_path: Path) -> None:
    written = copy_results(make_results(tmp_path), tmp_path / "out" / "new")
    assert [p.name for p in written] == ["1_same.jpg", "2_same.jpg", "3_same.jpg"]
    assert [p.read_bytes() for p in written] == [b"first", b"second", b"third"]


def test_manifest_lists_sources_and_targets(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    written = copy_results(results, tmp_path / "out")
    manifest = pd.read_csv(tmp_path / "out" / "manifest.csv")
    assert manifest["source_path"].tolist() == results["path"].tolist()
    assert manifest["written_path"].tolist() == [str(p) for p in written]
    assert manifest["rank"].tolist() == [1, 2, 3]


def test_missing_source_names_it_and_copies_nothing(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    Path(results.loc[1, "path"]).unlink()
    with pytest.raises(ImageSearchError, match="b/same.jpg"):
        copy_results(results, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_existing_file_is_not_overwritten_silently(tmp_path: Path) -> None:
    results = make_results(tmp_path)
    copy_results(results, tmp_path / "out")
    (tmp_path / "out" / "1_same.jpg").write_bytes(b"user's own")
    with pytest.raises(ImageSearchError, match="already exists"):
        copy_results(results, tmp_path / "out")
    assert (tmp_path / "out" / "1_same.jpg").read_bytes() == b"user's own"
    copy_results(results, tmp_path / "out", overwrite=True)
    assert (tmp_path / "out" / "1_same.jpg").read_bytes() == b"first"


HOSTILE_NAMES = [
    "..\\..\\..\\evil.jpg",  # Windows separators: a plain name on Linux
    "-rf --no-preserve-root.jpg",
    ".bashrc.jpg",
    "line\nbreak\rand\ttab\x1b[31mred.jpg",
    "$(touch pwned) `id` ; rm x.jpg",
    "ünïcödé 猫 😺.jpg",
    "x" * 251 + ".jpg",  # 255 bytes: the longest name; the rank prefix must not push it over
    "é" * 125 + ".jpg",  # 254 bytes of two-byte characters: cut on a character boundary
    "..jpg",
]


def test_hostile_file_names_stay_inside_the_folder(tmp_path: Path) -> None:
    sources = []
    for number, name in enumerate(HOSTILE_NAMES):
        source = tmp_path / "src" / str(number) / name
        source.parent.mkdir(parents=True)
        source.write_bytes(f"photo {number}".encode())
        sources.append(source)
    sources.append(tmp_path / "src" / "0" / ".." / "1" / HOSTILE_NAMES[1])  # a path through `..`
    results = pd.DataFrame({"rank": range(1, len(sources) + 1), "id": range(len(sources)), "path": map(str, sources)})
    out = tmp_path / "out"
    written = copy_results(results, out)
    assert len(written) == len(sources) and len({p.name for p in written}) == len(sources)
    for path, source in zip(written, sources, strict=True):
        assert path.resolve().parent == out.resolve() and path.read_bytes() == source.read_bytes()
        assert len(path.name.encode("utf-8")) <= 255 and not any(ord(c) < 32 for c in path.name)
        assert path.name.split("_", 1)[0].isdigit()  # a rank first: never a leading '-' or '.'
    assert written[6].name.endswith(".jpg") and written[7].name.endswith(".jpg")
    assert sorted(p.name for p in out.iterdir()) == sorted([*(p.name for p in written), "manifest.csv"])
    assert not (tmp_path / "pwned").exists() and not list(tmp_path.rglob("evil.jpg"))


def test_several_queries_are_prefixed_apart(tmp_path: Path) -> None:
    single = make_results(tmp_path)
    both = pd.concat([single.assign(query="q.jpg"), single.assign(query="q.jpg")], ignore_index=True)
    written = copy_results(both, tmp_path / "out")
    assert len({p.name for p in written}) == 6
    assert written[0].name == "q1_1_same.jpg" and written[3].name == "q2_1_same.jpg"
