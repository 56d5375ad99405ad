from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from utilities.catalog import default_mapping_path, load_mapping, mapping_from_collection, save_mapping
from utilities.config import MilvusTarget
from utilities.ids import path_id
from utilities.milvus.collection import ImageCollection


def test_mapping_is_rebuilt_from_the_collection(store: ImageCollection) -> None:
    paths = [f'/photos/{i:03d}, "odd" name.jpg' for i in range(2500)]  # more than one page
    store.insert(paths, np.random.default_rng(0).random((2500, 2048), dtype=np.float32), file_sizes=list(range(2500)))
    mapping = mapping_from_collection(store)
    assert list(mapping.columns) == ["id", "path", "file_size", "mtime_ns"]
    assert mapping["path"].tolist() == sorted(paths)
    assert (mapping["id"] == [path_id(p) for p in mapping["path"]]).all()
    assert mapping.loc[mapping["path"] == paths[7], "file_size"].item() == 7


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_save_and_load_round_trip(store: ImageCollection, tmp_path: Path, suffix: str) -> None:
    paths = ["/a, b.jpg", '/quote".jpg', "/ünï.jpg"]
    store.insert(paths, np.ones((3, 2048), np.float32))
    mapping = mapping_from_collection(store)
    loaded = load_mapping(save_mapping(mapping, tmp_path / f"map{suffix}"))
    assert loaded["path"].tolist() == mapping["path"].tolist()
    assert loaded["id"].tolist() == mapping["id"].tolist()


def test_default_mapping_path_sits_beside_the_lite_file(tmp_path: Path) -> None:
    assert default_mapping_path(MilvusTarget(str(tmp_path / "m.db")), "c") == tmp_path / "c.mapping.csv"
    assert default_mapping_path(MilvusTarget("http://h:19530"), "c") == Path("db/h_19530_c.mapping.csv")


def test_verify_finds_and_repairs_a_damaged_mapping(store: ImageCollection, tmp_path: Path) -> None:
    from utilities.catalog import verify_mapping

    paths = [f"/photos/{i}.jpg" for i in range(6)]
    store.insert(paths, np.ones((6, 2048), np.float32))
    mapping_file = save_mapping(mapping_from_collection(store), tmp_path / "m.csv")
    assert verify_mapping(store, mapping_file).consistent
    damaged = load_mapping(mapping_file).iloc[1:].copy()  # one row lost
    damaged.loc[len(damaged) + 10] = [123, "/photos/ghost.jpg", 0, 0]  # one row that is not in Milvus
    damaged.loc[damaged.index[0], "path"] = "/photos/renamed.jpg"  # one wrong path
    save_mapping(damaged, mapping_file)
    check = verify_mapping(store, mapping_file)
    assert (len(check.missing_from_file), check.stale_in_file, len(check.wrong_path)) == (1, [123], 1)
    assert not check.consistent and not check.repaired
    repaired = verify_mapping(store, mapping_file, repair=True)
    assert repaired.repaired and verify_mapping(store, mapping_file).consistent


def test_verify_command_exit_codes(tmp_path: Path) -> None:
    from utilities.cli import main

    uri = str(tmp_path / "v.db")
    store = ImageCollection.open(uri, name="v", dimension=2048)
    store.insert(["/photos/a.jpg"], np.ones((1, 2048), np.float32))
    store.close()
    assert main(["verify", "--uri", uri, "--collection", "v"]) == 1  # no mapping file yet
    assert main(["verify", "--uri", uri, "--collection", "v", "--repair"]) == 0
    assert main(["verify", "--uri", uri, "--collection", "v"]) == 0
    assert (tmp_path / "v.mapping.csv").exists()
