"""What a duplicate report tells people to remove: only copies found inside their group's kept file, and
the original kept (enlarged, re-encoded and mirrored copies included); collages, side-by-sides and
padded photos related, never removable. Real photos (`tests/data/samples`), real Milvus Lite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageEnhance, ImageOps

from tests.conftest import SAMPLES
from tests.images_factory import edited_copy
from utilities.duplicates.finder import find_duplicates
from utilities.duplicates.grouping import PairChecks, group_copies
from utilities.duplicates.keeper import blank_corners, choose, is_enlargement, is_reencoded_from
from utilities.duplicates.report import DuplicatePair
from utilities.duplicates.verification import SIDE, Verdict, compare, grey
from utilities.ids import stored_path
from utilities.indexing.pipeline import index_folder
from utilities.milvus.collection import ImageCollection
from utilities.records import ImageRecord

LOW_THRESHOLD = 0.3
"""Random-weights vectors say little: let nearly every pair through, so that the check decides."""


def _photo(name: str) -> Image.Image:
    return Image.open(SAMPLES / f"{name}.jpg").convert("RGB")


def _save(image: Image.Image, path: Path, quality: int = 85, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=quality)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path


def _collage(left: Image.Image, right: Image.Image) -> Image.Image:
    """The left half of one photo beside the right half of another, at the first one's size."""
    width, height = left.size
    right = right.resize(left.size)
    made = Image.new("RGB", left.size)
    made.paste(left.crop((0, 0, width // 2, height)), (0, 0))
    made.paste(right.crop((width // 2, 0, width, height)), (width // 2, 0))
    return made


def _side_by_side(first: Image.Image, second: Image.Image) -> Image.Image:
    width, height = first.size
    made = Image.new("RGB", (2 * width, height))
    made.paste(first, (0, 0))
    made.paste(second.resize(first.size), (width, 0))
    return made


def _record(path: Path, row: int) -> ImageRecord:
    status = path.stat()
    return ImageRecord(row, str(path), status.st_size, status.st_mtime_ns)


def test_a_collage_passes_the_keypoints_of_both_parts_but_is_a_copy_of_neither(tmp_path: Path) -> None:
    photo_a, photo_d = _photo("astronaut"), _photo("coffee")
    a, d = _save(photo_a, tmp_path / "a.jpg"), _save(photo_d.resize(photo_a.size), tmp_path / "d.jpg")
    collage = _save(_collage(photo_a, photo_d), tmp_path / "collage.jpg")
    for part in (a, d):
        verdict = compare(str(collage), str(part))
        assert verdict.inliers >= 16 and verdict.related and not verdict.verified
        assert verdict.covered_a < 0.6
    assert not compare(str(a), str(d)).verified


def test_the_chain_through_a_collage_makes_no_group_and_lists_nothing_unique(tmp_path: Path) -> None:
    """The defect reproduced: A~collage and D~collage passed, so A, the collage and D made one group and
    two of them were removable. Now the chain is reported as related and nothing of it is removable."""
    photo_a, photo_d = _photo("astronaut"), _photo("coffee")
    paths = [
        _save(photo_a, tmp_path / "a.jpg"),
        _save(_collage(photo_a, photo_d), tmp_path / "collage.jpg"),
        _save(photo_d.resize(photo_a.size), tmp_path / "d.jpg"),
    ]
    records = {row: _record(path, row) for row, path in enumerate(paths)}
    chain = [
        DuplicatePair(str(paths[0]), str(paths[1]), 0.9, "near"),
        DuplicatePair(str(paths[1]), str(paths[2]), 0.9, "near"),
    ]
    grouping = group_copies(records, chain, PairChecks())
    assert grouping.groups == []
    assert len(grouping.related) >= 2 and {pair.a for pair in grouping.related} | {
        pair.b for pair in grouping.related
    } == {str(path) for path in paths}
    assert any("shares a region only" in pair.reason for pair in grouping.related)


@pytest.fixture
def tricky(tmp_path: Path) -> dict[str, Path]:
    """Two photos, an edited copy of the first, a collage of both, a side-by-side of both, a padded copy."""
    photo_a, photo_d = _photo("astronaut"), _photo("camera")
    width, height = photo_a.size
    root = tmp_path / "lib"
    return {
        "a": _save(photo_a, root / "a.jpg", 80),
        "d": _save(photo_d.resize(photo_a.size), root / "d.jpg", 80),
        "a_crop": _save(photo_a.crop((30, 30, width - 20, height - 25)), root / "edits" / "a_crop.jpg", 95),
        "collage": _save(_collage(photo_a, photo_d), root / "made" / "collage.jpg", 90),
        "side_by_side": _save(_side_by_side(photo_a, photo_d), root / "made" / "side_by_side.jpg", 90),
        "padded": _save(ImageOps.expand(photo_a, border=width // 6, fill=(0, 0, 0)), root / "made" / "padded.jpg", 95),
    }


def test_only_copies_inside_the_kept_file_are_removable_end_to_end(
    store: ImageCollection, embedder, tricky: dict[str, Path]
) -> None:
    index_folder(tricky["a"].parent, store, embedder, batch_size=8, progress=False)
    report = find_duplicates(store, threshold=LOW_THRESHOLD, neighbours=5, workers=1)
    shown = {name: stored_path(path) for name, path in tricky.items()}
    # the padded copy's border is blank: nothing in it is lost with it, and the photo is kept
    assert [(group.keeper, group.removable) for group in report.groups] == [
        (shown["a"], sorted([shown["a_crop"], shown["padded"]]))
    ]
    for name in ("d", "collage", "side_by_side"):
        assert shown[name] not in report.removable and shown[name] not in report.duplicates_map()
    related = {frozenset((pair.a, pair.b)): pair.reason for pair in report.related}
    for name in ("collage", "side_by_side"):
        assert "shares a region only" in related[frozenset((shown[name], shown["a"]))]
    assert "related" in report.as_dict() and report.groups[0].keeper_reason


def test_the_original_is_kept_over_enlarged_reencoded_and_mirrored_copies(tmp_path: Path) -> None:
    """The copies have more bytes than the original, and the enlarged one more pixels; names are random
    and every copy has the original's modification time: the files alone must give the answer."""
    photo = _photo("coffee")
    width, height = photo.size
    stamp = 1_700_000_000_000_000_000
    original = _save(photo, tmp_path / "x81.jpg", 75, stamp)
    source = Image.open(original).convert("RGB")
    copies = [
        _save(
            source.resize((int(width * 1.25), int(height * 1.25)), Image.Resampling.BICUBIC),
            tmp_path / "b07.jpg",
            95,
            stamp,
        ),
        _save(source, tmp_path / "a13.jpg", 97, stamp),
        _save(ImageOps.mirror(source), tmp_path / "c55.jpg", 95, stamp),
    ]
    assert all(path.stat().st_size > original.stat().st_size for path in copies)
    records = [_record(path, row) for row, path in enumerate([*copies, original])]
    choice = choose(records, PairChecks())
    assert choice.record.path == str(original), choice.reason
    assert choose(records, PairChecks(), policy="largest").record.path != str(original)  # what bytes alone say


def test_the_enlargement_and_reencoding_tests_point_the_right_way(tmp_path: Path) -> None:
    photo = _photo("cat")
    width, height = photo.size
    original = _save(photo, tmp_path / "o.jpg", 80)
    source = Image.open(original).convert("RGB")
    enlarged = _save(
        source.resize((int(width * 1.3), int(height * 1.3)), Image.Resampling.LANCZOS), tmp_path / "e.jpg", 90
    )
    shrunk = _save(
        source.resize((int(width / 1.3), int(height / 1.3)), Image.Resampling.LANCZOS), tmp_path / "s.jpg", 90
    )
    assert is_enlargement(str(enlarged), str(original), 1.3)
    assert not is_enlargement(str(original), str(shrunk), 1.3)
    better = _save(source, tmp_path / "q97.jpg", 97)
    worse = _save(source, tmp_path / "q50.jpg", 50)
    assert is_reencoded_from(str(better), str(original)) and not is_reencoded_from(str(original), str(better))
    assert is_reencoded_from(str(worse), str(original)) and not is_reencoded_from(str(original), str(worse))


def test_one_noisy_pair_does_not_put_the_original_inside_a_copy() -> None:
    """Shares of small photos move by a few grid cells: the original, lacking 0.05 of one copy (noise)
    but nothing of the two others, stays; the crop, lacking 0.2 of each of the three, goes."""
    # (share of the first file the second lacks, share of the second the first lacks)
    lost = {("o", "b"): (0.0, 0.05), ("o", "d"): (0.0, 0.0), ("o", "c"): (0.2, 0.0), ("b", "d"): (0.0, 0.0)}
    lost |= {("b", "c"): (0.2, 0.0), ("d", "c"): (0.2, 0.0)}

    def check(first: str, second: str) -> Verdict:
        key = (Path(first).name, Path(second).name)
        a, b = lost[key] if key in lost else lost[key[::-1]][::-1]
        return Verdict(True, 100, 100, covered_a=1 - a, covered_b=1 - b, fill_a=0.0, fill_b=0.0)

    times = {"c": 0, "o": 1, "b": 2, "d": 3}  # the crop is the oldest: the content step must drop it
    records = [ImageRecord(row, f"/nowhere/{name}", 1000, times[name]) for row, name in enumerate("bcdo")]
    choice = choose(records, check)
    assert Path(choice.record.path).name == "o" and "holds the others' content" in choice.reason


def test_flat_edges_another_copy_also_shows_are_picture_not_border() -> None:
    """A photo on a white background (flat edges over 0.25 of it) beside a crop that keeps most of that
    background: only the 0.10 found outside the crop is border. A padded copy's flat edges (0.43), found
    0.39 outside the photo (the check leaves out a band along the photo's edge), are all border."""
    from utilities.duplicates.keeper import _borders, _Facts

    fills = {("shot", "crop"): (0.10, 0.0), ("padded", "photo"): (0.39, 0.0)}

    def check(first: str, second: str) -> Verdict:
        a, b = fills[(first, second)]
        return Verdict(True, 100, 100, covered_a=1 - a, covered_b=1.0, fill_a=a, fill_b=b)

    shot, crop = _Facts(ImageRecord(0, "shot", 1, 1), picture_share=0.75), _Facts(ImageRecord(1, "crop", 1, 1))
    assert _borders([shot, crop], check) == [0.10, 0.0]
    padded, photo = _Facts(ImageRecord(0, "padded", 1, 1), picture_share=0.57), _Facts(ImageRecord(1, "photo", 1, 1))
    assert _borders([padded, photo], check) == [pytest.approx(0.43), 0.0]


def test_a_copy_turned_a_fraction_of_a_degree_is_not_taken_for_a_jpeg_saved_again(tmp_path: Path) -> None:
    """Turned 0.4 degrees, the copy lies within `ALIGNED_LEVELS` of the original, and saving either with
    the other's tables comes back about as far: neither direction is evidence."""
    original = _save(_photo("rocket"), tmp_path / "o.jpg", 75)
    source = Image.open(original).convert("RGB")
    turned = _save(source.rotate(0.4, resample=Image.Resampling.BILINEAR), tmp_path / "t.jpg", 90)
    assert not is_reencoded_from(str(original), str(turned))
    assert not is_reencoded_from(str(turned), str(original))


def test_a_brightened_copy_with_clipped_highlights_is_found_saved_again(tmp_path: Path) -> None:
    """Brightened 1.4x, the copy's highlights are clipped at 255: the levels are fitted on the pixels
    clipped in neither file, so the original brightened comes back as the copy."""
    original = _save(_photo("astronaut"), tmp_path / "o.jpg", 75)
    source = Image.open(original).convert("RGB")
    brighter = _save(ImageEnhance.Brightness(source).enhance(1.4), tmp_path / "b.jpg", 95)
    assert is_reencoded_from(str(brighter), str(original))
    assert not is_reencoded_from(str(original), str(brighter))


def test_a_copy_turned_half_a_degree_on_its_canvas_is_not_kept(tmp_path: Path) -> None:
    """Turned 0.5 degrees, the copy's blank triangles are too small for `blank_corners`, but its 4 corner
    pixels hold one fill colour where the original shows picture; saved at a higher quality with the
    original's time, nothing else tells them apart."""
    original = _save(_photo("astronaut"), tmp_path / "o.jpg", 75)
    stamp = original.stat().st_mtime_ns
    source = Image.open(original).convert("RGB")
    turned = _save(source.rotate(0.5, resample=Image.Resampling.BILINEAR), tmp_path / "t.jpg", 90, stamp)
    assert blank_corners(str(turned)) == 0 and turned.stat().st_size > original.stat().st_size
    choice = choose([_record(turned, 0), _record(original, 1)], PairChecks())
    assert choice.record.path == str(original) and "turned" in choice.reason


def test_a_preferred_folder_keeps_its_file(tmp_path: Path) -> None:
    master = _save(_photo("rocket"), tmp_path / "library" / "rocket.jpg", 80, 2_000_000_000_000_000_000)
    (tmp_path / "Downloads").mkdir()
    download = Path(shutil.copy2(master, tmp_path / "Downloads" / "rocket.jpg"))
    os.utime(download, ns=(1_000_000_000_000_000_000,) * 2)  # the download looks older
    records = {
        row: ImageRecord(row, str(path), path.stat().st_size, path.stat().st_mtime_ns, content_hash="same")
        for row, path in enumerate([download, master])
    }
    pair = [DuplicatePair(str(download), str(master), 1.0, "exact")]
    assert group_copies(records, pair, PairChecks()).groups[0].keeper == str(download)
    kept = group_copies(records, pair, PairChecks(), prefer=[tmp_path / "library"]).groups[0]
    assert kept.keeper == str(master) and kept.removable == [str(download)] and "preferred" in kept.keeper_reason


def test_each_orientation_is_judged_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mirrored copy (18 of 20 matches agree) must not lose to an unmirrored look (20 of 100), which the
    old rule judged alone because it had more inliers."""
    import cv2
    import numpy as np

    from utilities.duplicates import verification

    rng = np.random.default_rng(0)
    half = (rng.random((64, 32)) * 255).astype(np.uint8)
    symmetric = np.ascontiguousarray(cv2.resize(np.hstack([half, half[:, ::-1]]), (256, 256)))
    fits = {False: verification._Fit(20, 100, np.eye(2, 3)), True: verification._Fit(18, 20, np.eye(2, 3))}
    monkeypatch.setattr(verification, "_fit", lambda cv2, first, second: fits[second == "mirrored"])
    features = (symmetric, "as is", "mirrored")
    verdict = verification.judge(cv2, features, features)
    assert verdict.verified and verdict.mirrored and verdict.inliers == 18


def test_an_unreadable_file_whose_name_holds_a_colon_is_reported_by_its_whole_path(
    store: ImageCollection, embedder, tmp_path: Path
) -> None:
    good = _save(_photo("cat"), tmp_path / "lib" / "good.jpg")
    broken = _save(_photo("cat").crop((10, 10, 400, 300)), tmp_path / "lib" / "scan: page 2.jpg")
    index_folder(tmp_path / "lib", store, embedder, batch_size=8, progress=False)
    broken.write_bytes(good.read_bytes()[:200])  # unreadable since it was indexed
    verdict = compare(str(good), str(broken))
    assert not verdict.verified and verdict.error_path == str(broken) and verdict.error
    report = find_duplicates(store, threshold=-1.0, neighbours=1, workers=1)
    assert list(report.unreadable) == [stored_path(broken)]


def test_large_photos_are_checked_at_the_side_the_docs_give(tmp_path: Path) -> None:
    big = _save(_photo("astronaut").resize((2000, 1500)), tmp_path / "big.jpg")
    assert max(grey(big).shape) == SIDE


@pytest.mark.parametrize(("name", "seed"), [("camera", 1), ("rocket", 7)])
def test_a_thumbnails_turned_shrunk_copy_is_found_inside_it(tmp_path: Path, name: str, seed: int) -> None:
    """A 224 px photo and its edited copy (about 150 px, turned, re-encoded): cells nearly flat in both
    images, one just under `FLAT_DEVIATION` and the other just over, are the same wall, not a mismatch."""
    thumbnail = _save(ImageOps.fit(_photo(name), (224, 224)), tmp_path / "thumbnail.jpg", 90)
    copy = edited_copy(thumbnail, tmp_path / "copy.jpg", seed=seed)
    verdict = compare(str(copy), str(thumbnail))
    assert verdict.verified and verdict.contains(True)


def test_a_large_group_compares_only_a_bounded_number_of_files(tmp_path: Path) -> None:
    photo = Image.open(_save(_photo("cat"), tmp_path / "source.jpg", 80)).convert("RGB")
    paths = [_save(photo, tmp_path / f"copy_{n:02d}.jpg", 60 + n) for n in range(20)]
    records = [_record(path, row) for row, path in enumerate(paths)]
    checks = PairChecks()
    choice = choose(records, checks)
    assert checks.made <= 12 * 11 // 2 * 2  # the pairs of the 12 candidates, each asked at most by two steps
    assert "among the 12 with the most pixels" in choice.reason


def test_a_copy_checked_without_its_fills_is_checked_again_through_the_cache(tmp_path: Path) -> None:
    """A verified verdict whose blank fills were not measured (-1) cannot say which file holds more of
    the picture: the cache checks the pair again (counted in `made`) instead of the keeper doing it."""
    photo = _save(_photo("astronaut"), tmp_path / "photo.jpg")
    crop = _photo("astronaut")
    crop = _save(crop.crop((0, 0, crop.width * 3 // 4, crop.height * 3 // 4)), tmp_path / "crop.jpg")
    unmeasured = compare(str(photo), str(crop))
    unmeasured = type(unmeasured)(True, unmeasured.inliers, covered_a=unmeasured.covered_a, covered_b=1.0)
    assert unmeasured.fill_a < 0
    checks = PairChecks(known={(str(photo), str(crop)): unmeasured})
    reverse = checks(str(crop), str(photo))
    assert checks.made == 1 and reverse.fill_a >= 0 and reverse.fill_b >= 0
    assert reverse.contains(True) and not reverse.contains(False)  # the crop is inside the photo, not the reverse
    assert checks(str(photo), str(crop)).fill_a >= 0 and checks.made == 1
