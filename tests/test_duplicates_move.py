"""Moving the removable files of a duplicate report aside, and undoing it, on Milvus Lite and the server:
files checked again before they move, never written over nor deleted, rows following them with their
stored vectors, a move killed half-way undone with every file back once, and the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT, SAMPLES, mean_colour_embedder, run_cli
from tests.images_factory import edited_copy
from utilities.catalog import load_mapping
from utilities.cli import main
from utilities.engine import ImageSearchEngine
from utilities.ids import stored_path

COPIED = ["astronaut", "camera", "cat", "coffee"]
"""Samples with a byte-for-byte copy in `backups/` (astronaut a second one in `backups/old/`)."""


@pytest.fixture
def library(tmp_path: Path) -> Path:
    """`lib/`: 4 photos, byte copies of them in `backups/` (made with shutil.copy2), a second copy of one
    in `backups/old/`, and an edited copy of one (PIL) in `edits/`: 5 exact copies and 1 edited one."""
    root = tmp_path / "lib"
    for name in COPIED:
        for folder in ("photos", "backups"):
            (root / folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(SAMPLES / f"{name}.jpg", root / folder / f"{name}.jpg")
    (root / "backups" / "old").mkdir()
    shutil.copy2(SAMPLES / "astronaut.jpg", root / "backups" / "old" / "astronaut.jpg")
    edited_copy(SAMPLES / "coffee.jpg", root / "edits" / "coffee_edit.jpg", seed=1)
    return root


EXACT_COPIES = [
    "backups/astronaut.jpg",
    "backups/camera.jpg",
    "backups/cat.jpg",
    "backups/coffee.jpg",
    "backups/old/astronaut.jpg",
]


@pytest.fixture
def engine(backend: str, collection_name: str, library: Path):
    """An engine on a fresh collection holding the library (3-d mean-colour vectors: no model to build)."""
    opened = ImageSearchEngine(
        backend, collection_name=collection_name, embedder=mean_colour_embedder(), progress=False
    )
    assert opened.index_folder(library).indexed == 10
    yield opened
    opened.drop()
    opened.close()


def files(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` by its path below it, with its bytes."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*") if path.is_file()}


def rows(engine: ImageSearchEngine) -> dict[str, tuple]:
    """Every stored row by path: id, size, mtime, hash and the vector."""
    store = engine.store
    ids = [record.id for page in store.iter_records() for record in page]
    return {
        r.path: (r.id, r.file_size, r.mtime_ns, r.content_hash, tuple(np.round(r.vector, 6)))
        for r in store.records(ids, with_vectors=True)
    }


def under(folder: Path, names: list[str]) -> list[str]:
    return sorted(stored_path(folder / name) for name in names)


def test_move_then_undo_restores_every_file_byte_for_byte_and_every_row(
    engine: ImageSearchEngine, library: Path, tmp_path: Path
) -> None:
    report = engine.find_duplicates(workers=1)  # saved at engine.duplicates_path, the default to act on
    assert sorted(report.removable) == under(library, [*EXACT_COPIES, "edits/coffee_edit.jpg"])
    before_files, before_rows = files(library), rows(engine)
    aside = tmp_path / "aside"

    moved = engine.move_removable(aside)
    assert sorted(old for old, _ in moved.moved) == sorted(report.removable) and moved.skipped == {}
    after_rows = rows(engine)
    for name in [*EXACT_COPIES, "edits/coffee_edit.jpg"]:
        assert not (library / name).exists()
        assert (aside / name).read_bytes() == before_files[name]  # the same path below the root, the same bytes
        old, new = after_rows.get(stored_path(library / name)), after_rows[stored_path(aside / name)]
        assert old is None and new[1:] == before_rows[stored_path(library / name)][1:]  # same vector, hash, size, time
        assert new[0] != before_rows[stored_path(library / name)][0]  # the id of the new path
    assert len(after_rows) == 10 and engine.count() == 10
    mapping = load_mapping(engine.mapping_path)
    assert sorted(mapping["path"]) == sorted(after_rows)
    manifest = json.loads(moved.manifest.read_text())
    assert moved.manifest.parent == aside and len(manifest["moves"]) == 6
    assert {entry["status"] for entry in manifest["moves"]} == {"moved"}
    entry = next(e for e in manifest["moves"] if e["source"] == stored_path(library / "backups/cat.jpg"))
    assert entry["destination"] == stored_path(aside / "backups/cat.jpg")
    assert entry["keeper"] == stored_path(library / "photos/cat.jpg")
    assert entry["file_size"] == len(before_files["backups/cat.jpg"]) and len(entry["content_hash"]) == 32
    assert f"moved 6 files into {aside}" in str(moved)

    undone = engine.undo_move(moved.manifest)
    assert len(undone.moved) == 6 and undone.skipped == {} and undone.in_place == 0
    assert files(library) == before_files
    assert rows(engine) == before_rows
    assert sorted(load_mapping(engine.mapping_path)["path"]) == sorted(before_rows)
    assert sorted(path.name for path in aside.rglob("*") if path.is_file()) == sorted(
        [moved.manifest.name, ".duplicates-move.lock"]
    )
    again = engine.undo_move(moved.manifest)  # idempotent
    assert (len(again.moved), again.in_place, again.skipped) == (0, 6, {})
    assert files(library) == before_files and rows(engine) == before_rows


def test_a_file_changed_after_the_check_is_not_moved_and_says_why(
    engine: ImageSearchEngine, library: Path, tmp_path: Path
) -> None:
    report = engine.find_duplicates(exact_only=True)
    assert sorted(report.removable) == under(library, EXACT_COPIES)
    from PIL import Image

    Image.open(library / "backups/camera.jpg").save(library / "backups/camera.jpg", quality=40)  # other bytes
    same_size = library / "backups/astronaut.jpg"  # other bytes, the same size and modification time
    status, data = same_size.stat(), bytearray(same_size.read_bytes())
    data[len(data) // 2] ^= 0xFF
    same_size.write_bytes(bytes(data))
    os.utime(same_size, ns=(status.st_atime_ns, status.st_mtime_ns))
    touched = library / "backups/old/astronaut.jpg"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    (library / "photos/coffee.jpg").rename(library / "photos/coffee_renamed.jpg")  # the keeper of backups/coffee.jpg
    changed = {name: (library / name).read_bytes() for name in ("backups/camera.jpg", "backups/astronaut.jpg")}

    moved = engine.move_removable(tmp_path / "aside", report=report)
    assert moved.moved == [(stored_path(library / "backups/cat.jpg"), stored_path(tmp_path / "aside/backups/cat.jpg"))]
    reasons = {Path(path).relative_to(library).as_posix(): reason for path, reason in moved.skipped.items()}
    assert sorted(reasons) == [
        "backups/astronaut.jpg",
        "backups/camera.jpg",
        "backups/coffee.jpg",
        "backups/old/astronaut.jpg",
    ]
    assert reasons["backups/camera.jpg"].startswith("changed since it was indexed")
    assert reasons["backups/old/astronaut.jpg"].startswith("changed since it was indexed")
    assert reasons["backups/astronaut.jpg"].startswith("its content differs from its row")
    assert reasons["backups/coffee.jpg"].startswith(f"its keeper {stored_path(library / 'photos/coffee.jpg')} is gone")
    assert all((library / name).read_bytes() == data for name, data in changed.items())  # left as they were
    assert "skipped " + stored_path(library / "backups/camera.jpg") + ": changed" in str(moved)
    entries = {e["source"]: e for e in json.loads(moved.manifest.read_text())["moves"]}
    assert entries[stored_path(library / "backups/astronaut.jpg")]["status"] == "skipped"  # found at the last check


def test_a_dry_run_moves_nothing(engine: ImageSearchEngine, library: Path, tmp_path: Path) -> None:
    report = engine.find_duplicates(exact_only=True)
    before_files, before_rows = files(library), rows(engine)
    mapping_before = engine.mapping_path.read_bytes()
    aside = tmp_path / "aside"
    planned = engine.move_removable(aside, dry_run=True, report=report)
    assert sorted((m.source, m.destination) for m in planned.planned) == list(
        zip(under(library, EXACT_COPIES), under(aside, EXACT_COPIES), strict=True)
    )
    assert planned.moved == [] and planned.manifest is None and planned.skipped == {}
    assert not aside.exists() and files(library) == before_files and rows(engine) == before_rows
    assert engine.mapping_path.read_bytes() == mapping_before
    assert str(planned).startswith(f"dry run: 5 files would move into {aside}; nothing was changed")


def test_the_destination_is_never_written_over_and_nothing_is_deleted(
    engine: ImageSearchEngine, library: Path, tmp_path: Path
) -> None:
    report = engine.find_duplicates(exact_only=True)
    aside = tmp_path / "aside"
    (aside / "backups").mkdir(parents=True)
    (aside / "backups/camera.jpg").write_bytes(b"someone else's file")
    everything = Counter([*files(library).values(), *files(aside).values()])

    moved = engine.move_removable(aside, report=report)
    assert moved.skipped == {
        stored_path(library / "backups/camera.jpg"): f"{stored_path(aside / 'backups/camera.jpg')} exists already: "
        "not overwritten"
    }
    assert len(moved.moved) == 4 and (aside / "backups/camera.jpg").read_bytes() == b"someone else's file"
    assert (
        Counter(data for name, data in files(aside).items() if not name.startswith(("duplicates-move", ".")))
        + (Counter(files(library).values()))
        == everything
    )

    (library / "backups/cat.jpg").write_bytes(b"a new file where a moved one was")
    undone = engine.undo_move(moved.manifest)
    assert undone.skipped == {
        stored_path(library / "backups/cat.jpg"): "its original place is taken by another file: left at "
        f"{stored_path(aside / 'backups/cat.jpg')}"
    }
    assert len(undone.moved) == 3 and (library / "backups/cat.jpg").read_bytes() == b"a new file where a moved one was"
    assert (aside / "backups/cat.jpg").read_bytes() == (SAMPLES / "cat.jpg").read_bytes()
    assert (aside / "backups/camera.jpg").read_bytes() == b"someone else's file"
    assert stored_path(aside / "backups/cat.jpg") in rows(engine)  # the row stays with its file


MOVER = """
import errno, sys, time
from utilities.duplicates import moving, placing
from utilities.engine import ImageSearchEngine

uri, name, report, folder, mode, stop_at = sys.argv[1:]
moving.ROWS_PER_UPDATE = 1  # each file's row follows it at once: the kill finds rows moved too
steps = []


def step(what):
    steps.append(what)
    print(what, flush=True)
    if len(steps) == int(stop_at):
        time.sleep(600)  # killed here


sync, remove, link = placing._sync_file, placing._remove_source, placing._hard_link
placing._sync_file = lambda handle: (sync(handle), step("synced"))
placing._remove_source = lambda path: (step("removing"), remove(path))
if mode == "copy":  # as if the folder were on another filesystem: copies, synced, linked into place

    def other_filesystem(source, target):
        if not str(source).startswith(folder):
            raise OSError(errno.EXDEV, "another filesystem")
        link(source, target)

    placing._hard_link = other_filesystem
with ImageSearchEngine(uri, collection_name=name, weights=None, progress=False) as engine:
    print(engine.move_removable(folder, report=report), flush=True)
"""


@pytest.mark.parametrize(
    ("mode", "stop_at", "left"),
    [
        ("link", 2, "the second file under both names"),
        ("copy", 3, "a synced temporary copy of the second file"),
        ("copy", 4, "a complete copy of the second file beside its source"),
    ],
    ids=["linked-not-yet-removed", "copy-synced-not-linked", "copy-linked-source-not-removed"],
)
def test_a_move_killed_half_way_is_undone_with_every_file_back_once(
    engine: ImageSearchEngine, library: Path, tmp_path: Path, mode: str, stop_at: int, left: str
) -> None:
    engine.find_duplicates(exact_only=True)
    before_files, before_rows = files(library), rows(engine)
    aside, saved = tmp_path / "aside", engine.duplicates_report_path(exact_only=True)
    engine.close()  # a Lite file is open in one process at a time
    errors = tmp_path / "mover.err"
    with errors.open("w") as stderr:
        child = subprocess.Popen(
            [sys.executable, "-c", MOVER, engine.target.uri, engine.collection_name, str(saved), str(aside), mode,
             str(stop_at)],
            stdout=subprocess.PIPE, stderr=stderr, text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "3"},
        )  # fmt: skip
        watchdog = threading.Timer(240, child.kill)
        watchdog.start()
        steps = 0
        for line in child.stdout:
            steps += line.strip() in ("synced", "removing")
            if steps == stop_at:
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        watchdog.cancel()
    assert steps == stop_at, errors.read_text()[-3000:]
    manifests = sorted(aside.glob("duplicates-move-*.json"))
    assert len(manifests) == 1 and json.loads(manifests[0].read_text())["moves"][0]["status"] == "planned"
    moving_order = [entry["source"] for entry in json.loads(manifests[0].read_text())["moves"]]
    first, second = (Path(path).relative_to(library).as_posix() for path in moving_order[:2])
    assert not (library / first).exists() and (aside / first).read_bytes() == before_files[first]
    if stop_at == 3:
        assert not (aside / second).exists() and len(list((aside / second).parent.glob("*.moving"))) == 1, left
    else:
        assert (library / second).exists() and (aside / second).exists(), left
        assert os.path.samefile(library / second, aside / second) == (mode == "link"), left
    assert all((library / Path(path).relative_to(library)).exists() for path in moving_order[2:])

    undone = engine.undo_move(manifests[0])
    assert len(undone.moved) == 1 and undone.in_place == 4 and undone.skipped == {}
    assert files(library) == before_files  # every file back, byte for byte
    left_over = sorted(path.name for path in aside.rglob("*") if path.is_file())
    assert left_over == sorted([manifests[0].name, ".duplicates-move.lock"])  # no copy left, none doubled
    assert rows(engine) == before_rows
    assert sorted(load_mapping(engine.mapping_path)["path"]) == sorted(before_rows)


def test_the_cli_moves_with_a_dry_run_first_and_undoes(
    engine: ImageSearchEngine, library: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    before_files = files(library)
    uri, name, aside = engine.target.uri, engine.collection_name, tmp_path / "aside"
    engine.close()
    common = ["duplicates", "--uri", uri, "--collection", name, "--exact-only"]

    dry = run_cli(*common, "--move-removable", str(aside), "--dry-run", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert f"dry run: 5 files would move into {aside}" in dry.stdout
    assert f"  {stored_path(library / 'backups/cat.jpg')} -> {stored_path(aside / 'backups/cat.jpg')}" in dry.stdout
    assert not aside.exists() and files(library) == before_files

    done = run_cli(*common, "--move-removable", str(aside), "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert len(printed["removable"]) == 5 and len(printed["move"]["moved"]) == 5
    manifest = printed["move"]["manifest"]
    assert sorted(files(aside)) == sorted([*EXACT_COPIES, Path(manifest).name, ".duplicates-move.lock"])
    assert sorted(files(library)) == sorted(set(before_files) - set(EXACT_COPIES))

    undone = run_cli(
        "duplicates", "--uri", uri, "--collection", name, "--undo", printed["move"]["manifest"], cwd=tmp_path
    )
    assert undone.returncode == 0, undone.stderr
    assert undone.stdout.startswith(f"moved 5 files back from {aside}; 0 were in place already")
    assert files(library) == before_files

    assert main([*common, "--move-removable", str(library / "photos" / "aside")]) == 1
    assert f"is inside the indexed folder {stored_path(library / 'photos')}" in capsys.readouterr().err
    assert main(["duplicates", "--uri", uri, "--collection", name, "--undo", str(tmp_path / "none.json")]) == 1
    assert f"no move manifest at {tmp_path / 'none.json'}" in capsys.readouterr().err
    assert main([*common, "--dry-run"]) == 2
    assert "--dry-run goes with --move-removable" in capsys.readouterr().err
    assert files(library) == before_files


def test_without_a_saved_report_or_unchecked_it_refuses(engine: ImageSearchEngine, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no duplicate search is saved for this collection"):
        engine.move_removable(tmp_path / "aside")
    unchecked = engine.find_duplicates(verify=False)
    with pytest.raises(ValueError, match="without the keypoint check"):
        engine.move_removable(tmp_path / "aside", report=unchecked)
    assert not (tmp_path / "aside").exists()


@pytest.fixture
def lite(tmp_path: Path):
    """An engine on a fresh Milvus Lite file (`tmp_path/db/p.db`, collection `c`), for libraries of their own."""
    opened = ImageSearchEngine(
        str(tmp_path / "db" / "p.db"), collection_name="c", embedder=mean_colour_embedder(), progress=False
    )
    yield opened
    opened.close()


def only_group(engine: ImageSearchEngine) -> tuple[str, list[str]]:
    report = engine.find_duplicates(exact_only=True)
    assert len(report.groups) == 1, report
    return report.groups[0].keeper, report.groups[0].removable


def test_a_file_indexed_under_two_paths_is_never_moved_from_under_itself(
    lite: ImageSearchEngine, tmp_path: Path
) -> None:
    photos = tmp_path / "lib" / "photos"
    photos.mkdir(parents=True)
    shutil.copy2(SAMPLES / "cat.jpg", photos / "cat.jpg")
    (tmp_path / "lib" / "link").symlink_to(photos)  # the same folder under a second name (a mount, a path with '..')
    lite.index_folder(photos)
    lite.index_folder(tmp_path / "lib" / "link")
    keeper, removable = only_group(lite)
    assert (keeper, removable) == (stored_path(tmp_path / "lib/link/cat.jpg"), [stored_path(photos / "cat.jpg")])

    moved = lite.move_removable(tmp_path / "aside", report=lite.duplicates_report_path(exact_only=True))
    assert moved.moved == [] and moved.skipped[stored_path(photos / "cat.jpg")].startswith(
        "the same file as its keeper"
    )
    assert (photos / "cat.jpg").read_bytes() == (SAMPLES / "cat.jpg").read_bytes()

    from utilities.duplicates.move_planning import PlannedMove, check_file
    from utilities.hashing import file_hash

    status, digest = (photos / "cat.jpg").stat(), file_hash(photos / "cat.jpg")
    move = PlannedMove(
        *(stored_path(photos / "cat.jpg"), stored_path(tmp_path / "aside/cat.jpg"), keeper),
        *(status.st_size, status.st_mtime_ns, digest, status.st_size, status.st_mtime_ns, digest),
    )
    assert check_file(move).startswith("the same file as its keeper")  # checked again right before the move


def test_a_symbolic_link_is_never_kept_in_place_of_its_file(lite: ImageSearchEngine, tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    real = photos / "cat_2019_holiday.jpg"
    shutil.copy2(SAMPLES / "cat.jpg", real)
    (photos / "fav.jpg").symlink_to(real.name)  # a shorter name, the same time: it used to be kept
    shutil.copy2(SAMPLES / "coffee.jpg", photos / "coffee.jpg")
    lite.index_folder(photos)
    assert only_group(lite) == (stored_path(real), [stored_path(photos / "fav.jpg")])

    moved = lite.move_removable(tmp_path / "aside", report=lite.duplicates_report_path(exact_only=True))
    assert moved.moved == [] and real.read_bytes() == (SAMPLES / "cat.jpg").read_bytes()
    link_kept = {"threshold": None, "groups": [{"keeper": stored_path(photos / "fav.jpg"), "removable": [str(real)]}]}
    moved = lite.move_removable(tmp_path / "aside", report=link_kept)  # a report that keeps the link
    assert moved.moved == [] and moved.skipped[stored_path(real)].startswith("the same file as its keeper")
    assert real.read_bytes() == (SAMPLES / "cat.jpg").read_bytes() and (photos / "fav.jpg").exists()


def test_moving_twice_leaves_the_library_its_copy(engine: ImageSearchEngine, library: Path, tmp_path: Path) -> None:
    aside = tmp_path / "d"  # `d/backups/cat.jpg` is a shorter path than `lib/photos/cat.jpg`, with the same time
    first = engine.move_removable(aside, report=engine.find_duplicates(exact_only=True))
    assert len(first.moved) == 5
    again = engine.find_duplicates(exact_only=True)
    assert {group.keeper for group in again.groups} == set(under(library, [f"photos/{n}.jpg" for n in COPIED]))
    second = engine.move_removable(aside, report=again)
    assert second.moved == []
    library_files = files(library)
    for name in COPIED:
        assert library_files[f"photos/{name}.jpg"] == (SAMPLES / f"{name}.jpg").read_bytes()

    kept_aside = {  # a report that keeps the moved copy, acted on with the same folder or another one
        "threshold": None,
        "groups": [{"keeper": stored_path(aside / "backups/cat.jpg"), "removable": under(library, ["photos/cat.jpg"])}],
    }
    for folder, where in ((aside, f"is in {aside}"), (tmp_path / "elsewhere", "is in a folder of files moved aside")):
        moved = engine.move_removable(folder, report=kept_aside)
        assert moved.moved == [], moved
        assert moved.skipped[stored_path(library / "photos/cat.jpg")].startswith(
            f"its keeper {stored_path(aside / 'backups/cat.jpg')} {where}"
        )
    assert files(library) == library_files


def test_the_keeper_is_checked_again_and_nothing_changed_after_the_search_moves(
    engine: ImageSearchEngine, library: Path, tmp_path: Path
) -> None:
    import time

    report = engine.find_duplicates(exact_only=True)
    keeper = library / "photos/camera.jpg"  # other bytes, the same size and time: only its content hash tells
    status, data = keeper.stat(), bytearray(keeper.read_bytes())
    data[len(data) // 2] ^= 0xFF
    keeper.write_bytes(bytes(data))
    os.utime(keeper, ns=(status.st_atime_ns, status.st_mtime_ns))
    later = time.time_ns() + 10**9
    for name in ("backups/cat.jpg", "photos/astronaut.jpg"):  # other bytes, indexed again after the search
        edited = bytearray((library / name).read_bytes())
        edited[len(edited) // 3] ^= 0xFF
        (library / name).write_bytes(bytes(edited))
        os.utime(library / name, ns=(later, later))
    engine.index_folder(library)

    moved = engine.move_removable(tmp_path / "aside", report=report)
    reasons = {Path(path).relative_to(library).as_posix(): reason for path, reason in moved.skipped.items()}
    assert reasons["backups/camera.jpg"].startswith(f"its keeper {stored_path(keeper)} cannot be read or holds other")
    assert reasons["backups/cat.jpg"] == "modified after the duplicate search: search again"
    for name in ("backups/astronaut.jpg", "backups/old/astronaut.jpg"):
        assert reasons[name].startswith(f"its keeper {stored_path(library / 'photos/astronaut.jpg')} was modified")
    assert sorted(old for old, _ in moved.moved) == under(library, ["backups/coffee.jpg"])
    assert report.created is not None and report.created <= time.time()  # when the search finished


def test_undo_checks_the_bytes_and_the_database_and_goes_on_after_an_error(
    engine: ImageSearchEngine, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from utilities.duplicates import moving

    engine.find_duplicates(exact_only=True)
    before_files, before_rows = files(library), rows(engine)
    aside = tmp_path / "aside"
    moved = engine.move_removable(aside, report=engine.duplicates_report_path(exact_only=True))
    assert len(moved.moved) == 5
    (aside / "backups/cat.jpg").write_bytes(b"not what was moved")

    other = ImageSearchEngine(
        str(tmp_path / "other" / "o.db"), collection_name=engine.collection_name, embedder=mean_colour_embedder(),
        progress=False,
    )  # fmt: skip
    with other:
        other.index_folder(library / "photos")
        with pytest.raises(ValueError, match="moved files of the database"):
            other.undo_move(moved.manifest)
    assert files(aside).keys() >= set(EXACT_COPIES) - {"backups/cat.jpg"}

    place = moving.placing.place

    def failing(source: Path, target: Path, *rest: object) -> None:
        if Path(source).name == "camera.jpg":
            raise RuntimeError("the disk went away")
        place(source, target, *rest)

    monkeypatch.setattr(moving.placing, "place", failing)
    undone = engine.undo_move(moved.manifest)
    assert undone.skipped[stored_path(library / "backups/cat.jpg")].startswith(
        f"{stored_path(aside / 'backups/cat.jpg')} does not hold the bytes that were moved"
    )
    assert "the disk went away" in undone.skipped[stored_path(library / "backups/camera.jpg")]
    assert len(undone.moved) == 3 and not (library / "backups/cat.jpg").exists()
    assert (aside / "backups/cat.jpg").read_bytes() == b"not what was moved"
    monkeypatch.setattr(moving.placing, "place", place)
    (aside / "backups/cat.jpg").write_bytes(before_files["backups/cat.jpg"])
    os.utime(aside / "backups/cat.jpg", ns=(0, before_rows[stored_path(library / "backups/cat.jpg")][2]))
    again = engine.undo_move(moved.manifest)
    assert len(again.moved) == 2 and again.skipped == {}
    assert files(library) == before_files and rows(engine) == before_rows


def test_rows_follow_the_files_undone_before_an_interruption(
    engine: ImageSearchEngine, library: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from utilities.duplicates import moving

    before_rows = rows(engine)
    moved = engine.move_removable(tmp_path / "aside", report=engine.find_duplicates(exact_only=True))
    place, calls = moving.placing.place, []

    def interrupted(*arguments: object) -> None:
        calls.append(arguments)
        if len(calls) == 3:
            raise KeyboardInterrupt
        place(*arguments)

    monkeypatch.setattr(moving.placing, "place", interrupted)
    with pytest.raises(KeyboardInterrupt):
        engine.undo_move(moved.manifest)
    now = rows(engine)
    assert all(Path(path).exists() for path in now)  # each row names its file: the two moved back included
    assert sum(path.startswith(stored_path(library) + "/") for path in now) == 5 + 2
    monkeypatch.setattr(moving.placing, "place", place)
    engine.undo_move(moved.manifest)
    assert rows(engine) == before_rows


def test_the_manifest_is_on_disk_before_the_first_file_moves(
    engine: ImageSearchEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from utilities.duplicates import moving

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name the synced files")
    report = engine.find_duplicates(exact_only=True)
    aside, events = tmp_path / "aside", []
    aside.mkdir()
    fsync, place = os.fsync, moving.placing.place

    def synced(descriptor: int) -> None:
        events.append(("synced", os.readlink(f"/proc/self/fd/{descriptor}")))
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", synced)
    monkeypatch.setattr(moving.placing, "place", lambda *arguments: (events.append(("moved", "")), place(*arguments)))
    engine.move_removable(aside, report=report)
    first_move = events.index(("moved", ""))
    synced_first = [path for what, path in events[:first_move] if what == "synced"]
    assert any(Path(path).name.startswith(".duplicates-move-") for path in synced_first), events
    assert os.path.realpath(aside) in synced_first, events


def test_the_cli_takes_the_root_and_a_folder_below_it_that_holds_no_stored_file(
    engine: ImageSearchEngine, library: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    uri, name = engine.target.uri, engine.collection_name
    engine.close()
    common = ["duplicates", "--uri", uri, "--collection", name, "--exact-only"]
    aside = tmp_path / "aside"
    assert main([*common, "--move-removable", str(aside), "--root", str(tmp_path), "--dry-run", "--json"]) == 0
    planned = json.loads(capsys.readouterr().out)["move"]["planned"]
    assert sorted(move["destination"] for move in planned) == under(aside / "lib", EXACT_COPIES)
    assert main([*common, "--root", str(tmp_path)]) == 2
    assert "--root goes with --move-removable" in capsys.readouterr().err

    below = library / "moved"  # below the common root, in no folder of stored files
    assert main([*common, "--move-removable", str(below)]) == 0
    manifests = [path.name for path in below.glob("duplicates-move-*.json")]
    assert sorted(files(below)) == sorted([*EXACT_COPIES, ".duplicates-move.lock", *manifests])
    assert len(manifests) == 1 and not any((library / name).exists() for name in EXACT_COPIES)
    assert main([*common, "--move-removable", str(library / "photos/aside")]) == 1
    assert f"is inside the indexed folder {stored_path(library / 'photos')}" in capsys.readouterr().err
    assert main([*common, "--move-removable", str(tmp_path)]) == 1
    assert f"holds the indexed folder {stored_path(library)}" in capsys.readouterr().err


def test_plot_removes_and_replaces_only_its_own_figures(tmp_path: Path) -> None:
    from utilities.duplicates.figures import plot_report
    from utilities.duplicates.report import DuplicateGroup, DuplicateReport

    folder = tmp_path / "figures"
    folder.mkdir()
    (folder / "group_0002.png").write_bytes(b"a figure of someone else")
    (folder / "nearest.png").write_bytes(b"another one")
    group = DuplicateGroup([str(SAMPLES / "cat.jpg")] * 2, str(SAMPLES / "cat.jpg"), [str(SAMPLES / "cat.jpg")], True)
    written = plot_report(DuplicateReport("c", groups=[group]), folder)
    assert [path.name for path in written] == ["group_0001.png"]
    assert (folder / "group_0002.png").read_bytes() == b"a figure of someone else"
    assert (folder / "nearest.png").read_bytes() == b"another one"
    with pytest.raises(FileExistsError, match="not written by --plot"):
        plot_report(DuplicateReport("c", groups=[group] * 2), folder)
    assert (folder / "group_0002.png").read_bytes() == b"a figure of someone else"
