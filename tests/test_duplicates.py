"""Duplicates on Milvus Lite and the server: exact copies by hash, edited copies found by the stored
vectors and confirmed by keypoints, look-alikes rejected, candidates against brute force, the CLI."""

from __future__ import annotations

import csv
import json
import shutil
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import SAMPLES
from tests.images_factory import edited_copy
from utilities.cli import main
from utilities.duplicates.candidates import find_candidates
from utilities.duplicates.finder import find_duplicates
from utilities.ids import stored_path
from utilities.indexing.pipeline import index_folder
from utilities.milvus.collection import ImageCollection

LOW_THRESHOLD = 0.3
"""Random-weights vectors say little: let nearly every pair through, so that the keypoint check decides."""


@pytest.fixture
def library(tmp_path: Path) -> dict[str, list[Path]]:
    """6 photos, an edited copy of each, and byte-for-byte copies of two of them (deeper in the tree)."""
    originals, edited, exact = [], [], []
    for number, sample in enumerate(sorted(SAMPLES.glob("*.jpg"))):
        originals.append(Path(shutil.copy2(sample, (tmp_path / "lib").mkdir(exist_ok=True) or tmp_path / "lib")))
        edited.append(edited_copy(sample, tmp_path / "lib" / "edits" / f"{sample.stem}_edit.jpg", seed=number))
    for original in originals[:2]:
        target = tmp_path / "lib" / "backup" / "old" / original.name
        target.parent.mkdir(parents=True, exist_ok=True)
        exact.append(Path(shutil.copy2(original, target)))
    return {"originals": originals, "edited": edited, "exact": exact, "root": [tmp_path / "lib"]}


@pytest.fixture
def indexed(store: ImageCollection, embedder, library) -> ImageCollection:
    report = index_folder(library["root"][0], store, embedder, batch_size=8, progress=False)
    assert report.indexed == 14
    return store


def test_exact_and_edited_copies_are_grouped_and_look_alikes_are_not(indexed: ImageCollection, library) -> None:
    report = find_duplicates(indexed, threshold=LOW_THRESHOLD, neighbours=13, workers=2)
    expected = []
    for number, original in enumerate(library["originals"]):
        group = {stored_path(original), stored_path(library["edited"][number])}
        group |= {stored_path(library["exact"][number])} if number < 2 else set()
        expected.append(group)
    assert sorted(map(sorted, (set(g.files) for g in report.groups))) == sorted(map(sorted, expected))
    assert all(group.keeper in {stored_path(p) for p in library["originals"]} for group in report.groups)
    assert not any(group.exact for group in report.groups)  # each holds an edited copy too
    assert len(report.removable) == 8 and report.rows == 14 and report.verified
    exact_pairs = [pair for pair in report.pairs if pair.kind == "exact"]
    assert len(exact_pairs) == 2 and all(pair.cosine == 1.0 and pair.verified is None for pair in exact_pairs)
    near = [pair for pair in report.pairs if pair.kind == "near"]
    assert all(pair.verified and pair.inliers >= 16 for pair in near)
    assert report.rejected > 0  # look-alike candidates were there, and the check turned them down
    duplicates = report.duplicates_map()
    first = stored_path(library["originals"][0])
    assert sorted(duplicates[first]) == sorted(expected[0] - {first})


def test_exact_only_reads_no_vectors_and_finds_the_byte_copies(indexed: ImageCollection, library) -> None:
    report = find_duplicates(indexed, exact_only=True)
    assert [sorted(group.files) for group in report.groups] == sorted(
        sorted([stored_path(original), stored_path(copy)])
        for original, copy in zip(library["originals"][:2], library["exact"], strict=True)
    )
    assert all(group.exact for group in report.groups) and report.nearest == [] and report.threshold is None


def test_without_the_check_every_candidate_at_the_threshold_is_kept(indexed: ImageCollection) -> None:
    checked = find_duplicates(indexed, threshold=LOW_THRESHOLD, neighbours=13, workers=1)
    unchecked = find_duplicates(indexed, threshold=LOW_THRESHOLD, neighbours=13, verify=False)
    assert {(p.a, p.b) for p in checked.pairs} < {(p.a, p.b) for p in unchecked.pairs}
    assert unchecked.rejected == 0 and not unchecked.verified
    assert all(pair.verified is None for pair in unchecked.pairs)


@pytest.mark.parametrize("threshold", [0.5, 0.8, 0.95])
def test_candidates_are_what_brute_force_finds(indexed: ImageCollection, threshold: float) -> None:
    rows = [record for page in indexed.iter_records() for record in page]
    vectors = {r.id: v for r in indexed.records([r.id for r in rows], with_vectors=True) for v in [r.vector]}
    unit = {i: v / np.linalg.norm(v) for i, v in vectors.items()}
    truth = {(min(a, b), max(a, b)) for a, b in combinations(unit, 2) if float(unit[a] @ unit[b]) >= threshold}
    found = find_candidates(indexed, threshold, neighbours=13)
    assert set(found.near) == truth, f"{len(truth)} pairs by brute force"
    for (a, b), cosine in found.near.items():
        assert cosine == pytest.approx(float(unit[a] @ unit[b]), abs=1e-5)
    assert len(found.nearest) == 14


def test_a_missing_file_is_reported_and_the_rest_goes_on(indexed: ImageCollection, library) -> None:
    gone = library["edited"][3]
    gone.unlink()
    report = find_duplicates(indexed, threshold=LOW_THRESHOLD, neighbours=13, workers=1)
    assert stored_path(gone) in report.unreadable and "not found" in report.unreadable[stored_path(gone)]
    assert all(stored_path(gone) not in group.files for group in report.groups)
    assert len(report.groups) == 5


def test_bad_settings_are_refused(indexed: ImageCollection) -> None:
    with pytest.raises(ValueError, match="threshold 1.5 is not a cosine"):
        find_duplicates(indexed, threshold=1.5)
    with pytest.raises(ValueError, match="neighbours must be at least 1"):
        find_duplicates(indexed, neighbours=0)


def test_the_cli_prints_json_writes_the_csv_and_the_figures(
    tmp_path: Path, library, capsys: pytest.CaptureFixture
) -> None:
    common = ["--uri", str(tmp_path / "d.db"), "--collection", "dups"]
    assert main(["index", str(library["root"][0]), *common, "--weights", "none"]) == 0
    capsys.readouterr()
    pairs_csv, figures = tmp_path / "pairs.csv", tmp_path / "figures"
    arguments = ["duplicates", *common, "--threshold", str(LOW_THRESHOLD), "--neighbours", "13"]
    assert main([*arguments, "--json", "--csv", str(pairs_csv), "--plot", str(figures)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert len(printed["groups"]) == 6 and len(printed["removable"]) == 8
    assert all(isinstance(others, list) for others in printed["duplicates"].values())
    assert len(printed["duplicates"]) == 14
    with pairs_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(printed["pairs"]) and set(rows[0]) == {"a", "b", "cosine", "kind", "verified", "inliers"}
    assert sorted(p.name for p in figures.iterdir()) == [f"group_{n:04d}.png" for n in range(1, 7)] + ["nearest.png"]
    assert main(["duplicates", *common, "--exact-only"]) == 0
    text = capsys.readouterr().out
    assert "2 groups of copies (2 exact) among 14 images" in text and "keep " in text
    for path in (*library["originals"], *library["edited"], *library["exact"]):
        assert path.exists()  # nothing deleted or moved


def test_the_check_reads_a_file_again_once_it_changed(tmp_path: Path) -> None:
    from utilities.duplicates.verification import compare

    original, other = SAMPLES / "coffee.jpg", tmp_path / "other.jpg"
    edited_copy(original, other, seed=1)
    assert compare(str(original), str(other)).verified
    shutil.copy(SAMPLES / "rocket.jpg", other)  # the same path now holds another photo
    assert not compare(str(original), str(other)).verified


def test_small_images_are_checked_too(tmp_path: Path) -> None:
    from PIL import Image, ImageOps

    from tests.conftest import PHOTOS
    from utilities.duplicates.verification import compare

    photo = PHOTOS / "cat" / "cat_09.jpg"  # 198 x 160
    image = Image.open(photo).convert("RGB")
    width, height = image.size
    crop = image.crop((width // 20, height // 20, width - width // 20, height - height // 20))
    ImageOps.mirror(crop).resize((width * 4 // 5, height * 4 // 5)).save(tmp_path / "small.jpg", quality=70)
    verdict = compare(str(photo), str(tmp_path / "small.jpg"))
    assert verdict.verified and verdict.mirrored
