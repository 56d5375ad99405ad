from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PHOTOS, run_cli
from utilities.cli import main
from utilities.ids import stored_path
from utilities.images.finding import find_images
from utilities.indexing.pipeline import shard_paths
from utilities.milvus.collection import ImageCollection


def test_index_search_info_export_drop(
    backend: str, collection_name: str, photo_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    common = ["--uri", backend, "--collection", collection_name]
    assert main(["index", str(photo_folder), *common, "--weights", "none", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["indexed"], summary["already_present"], summary["failed"]) == (10, 0, [])

    query = sorted(photo_folder.rglob("*.jpg"))[3]
    plot, copies = tmp_path / "plot.png", tmp_path / "copies"
    assert (
        main(
            [
                "search",
                str(query),
                *common,
                "--weights",
                "none",
                "--top-k",
                "3",
                "--json",
                "--plot",
                str(plot),
                "--copy-to",
                str(copies),
            ]
        )
        == 0
    )
    results = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in results] == [1, 2, 3] and results[0]["path"] == stored_path(query)
    assert plot.stat().st_size > 1000 and len(list(copies.glob("*.jpg"))) == 3

    assert main(["info", *common, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["count"], info["dimension"], info["metric"], info["index_type"]) == (10, 2048, "COSINE", "FLAT")

    mapping_file = tmp_path / "mapping.parquet"
    assert main(["export-mapping", str(mapping_file), *common]) == 0
    assert len(pd.read_parquet(mapping_file)) == 10
    assert "wrote 10 rows" in capsys.readouterr().out

    assert main(["drop", *common, "--yes"]) == 0
    assert capsys.readouterr().out.startswith(f"dropped {collection_name}")
    assert main(["info", *common, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["exists"] is False


def test_each_shard_writes_only_its_part_and_two_cover_the_folder_once(
    backend: str, collection_name: str, photo_folder: Path
) -> None:
    from utilities.catalog import mapping_from_collection

    common = ["--uri", backend, "--collection", collection_name, "--weights", "none"]
    files = find_images(photo_folder)
    parts = [{stored_path(p) for p in shard_paths(files, index, 2)} for index in (1, 2)]
    assert parts[0] and parts[1] and not parts[0] & parts[1]  # both shards hold files (the test can fail)
    stored: list[set[str]] = []
    for index in (1, 2):
        assert main(["index", str(photo_folder), *common, "--shard", f"{index}/2"]) == 0
        store = ImageCollection.open(backend, name=collection_name, create=False)
        try:
            stored.append(set(mapping_from_collection(store)["path"]))
            if index == 2:
                assert store.count() == len(files) == 10
                store.drop()
        finally:
            store.close()
    assert stored[0] == parts[0]  # shard 1 wrote its part and nothing of the other's
    assert stored[1] == parts[0] | parts[1]


def test_shards_are_disjoint_and_complete() -> None:
    files = find_images(PHOTOS)
    parts = [set(shard_paths(files, i, 3)) for i in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(files) == len(set().union(*parts))
    assert all(len(p) > len(files) / 6 for p in parts)
    assert shard_paths(list(reversed(files)), 2, 3) == list(reversed(shard_paths(files, 2, 3)))


def test_demo_runs_offline(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    output = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--images",
            str(PHOTOS),
            "--weights",
            "none",
            "--per-class",
            "2",
            "--queries",
            "2",
            "--top-k",
            "3",
            "--uri",
            str(tmp_path / "demo.db"),
            "--output",
            str(output),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "indexed 20" in printed and "query_2.png" in printed
    assert (output / "query_1.png").exists() and len(list((output / "query_2").glob("*.jpg"))) == 3


def test_usage_errors_exit_2() -> None:
    assert run_cli("index").returncode == 2
    assert run_cli("index", "x", "--shard", "3/2").returncode == 2
    assert run_cli("search", "q.jpg", "--top-k", "0").returncode == 2


def test_help_lists_commands() -> None:
    done = run_cli("--help")
    assert done.returncode == 0
    for command in ("index", "search", "info", "export-mapping", "drop", "demo"):
        assert command in done.stdout


def test_unreachable_server_is_one_clear_line() -> None:
    done = run_cli("info", "--uri", "http://127.0.0.1:1")
    assert done.returncode == 1
    assert done.stderr.strip().count("\n") == 0
    assert "nothing answers at http://127.0.0.1:1" in done.stderr and "Traceback" not in done.stderr


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    done = run_cli("index", str(tmp_path / "absent"), "--uri", str(tmp_path / "m.db"), "--weights", "none")
    assert done.returncode == 1 and "absent" in done.stderr and "Traceback" not in done.stderr


def test_drop_without_yes_and_without_a_terminal_keeps_the_collection(tmp_path: Path) -> None:
    uri = str(tmp_path / "m.db")
    store = ImageCollection.open(uri, name="keep", dimension=4)
    store.close()
    done = run_cli("drop", "--uri", uri, "--collection", "keep")
    assert done.returncode == 1 and "--yes" in done.stderr
    reopened = ImageCollection.open(uri, name="keep", create=False)
    assert reopened.exists()
    reopened.close()


def test_search_of_a_missing_collection_says_so_and_creates_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "empty.db")
    done = run_cli(
        "search",
        str(sorted(PHOTOS.rglob("*.jpg"))[0]),
        "--uri",
        uri,
        "--collection",
        "nothing_here",
        "--weights",
        "none",
    )
    assert done.returncode == 1 and "nothing_here" in done.stderr and "does not exist" in done.stderr
    store = ImageCollection.open(uri, name="probe", dimension=4)
    try:
        assert "nothing_here" not in store.client.list_collections()
    finally:
        store.close()


MINIMAL_ARGUMENTS = {
    "index": ["photos/"],
    "search": ["query.jpg"],
    "info": [],
    "export-mapping": ["mapping.csv"],
    "verify": [],
    "drop": [],
    "evaluate": ["labelled/"],
    "demo": [],
}


@pytest.mark.parametrize("command", sorted(MINIMAL_ARGUMENTS))
def test_each_command_defaults_to_the_documented_collection(command: str, capsys: pytest.CaptureFixture) -> None:
    from utilities.cli import DEMO_COLLECTION, build_parser
    from utilities.config import DEFAULT_COLLECTION

    expected = DEMO_COLLECTION if command == "demo" else DEFAULT_COLLECTION
    args = build_parser().parse_args([command, *MINIMAL_ARGUMENTS[command]])
    assert args.collection == expected
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    assert f"(default: {expected})" in " ".join(capsys.readouterr().out.split())
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert f"`{DEFAULT_COLLECTION}`" in readme and f"`{DEMO_COLLECTION}`" in readme


def test_cli_index_then_python_engine_share_the_default_collection(tmp_path: Path, photo_folder: Path) -> None:
    from utilities.engine import ImageSearchEngine

    uri = str(tmp_path / "shared.db")
    done = run_cli("index", str(photo_folder), "--uri", uri, "--weights", "none")
    assert done.returncode == 0, done.stderr
    with ImageSearchEngine(uri=uri, weights=None, progress=False) as engine:
        assert engine.count() == 10
