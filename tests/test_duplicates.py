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
from utilities.ids import path_id, stored_path
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


def _outcome(report) -> tuple:
    """What a run found, to compare an incremental run with a full one."""
    pairs = sorted((p.a, p.b, round(p.cosine, 5), p.kind, p.verified, p.inliers) for p in report.pairs)
    groups = sorted((tuple(g.files), g.keeper, g.exact) for g in report.groups)
    return pairs, groups, report.rejected


def test_a_rerun_searches_only_what_changed_and_equals_a_full_run(
    indexed: ImageCollection, embedder, library, tmp_path: Path
) -> None:
    state, settings = tmp_path / "state.npz", {"threshold": LOW_THRESHOLD, "neighbours": 5, "workers": 1}
    first = find_duplicates(indexed, state_path=state, **settings)
    assert not first.incremental and first.searched == 14 and state.exists()
    again = find_duplicates(indexed, state_path=state, **settings)
    assert again.incremental and again.changed == 0 and again.searched == 0
    assert again.checks_reused > first.rejected > 0  # every check kept: the rejected ones and the copies
    assert _outcome(again) == _outcome(first)

    root = library["root"][0]
    (root / "moved").mkdir()
    moved = library["edited"][1].rename(root / "moved" / library["edited"][1].name)  # keeps its group
    library["exact"][1].unlink()  # a removed byte copy
    edited_copy(library["originals"][4], library["edited"][4], seed=99)  # the same path, new content
    added = edited_copy(library["originals"][0], root / "new" / "second_edit.jpg", seed=42)
    report = index_folder(root, indexed, embedder, batch_size=8, progress=False, prune=True)
    assert (report.added, report.updated, report.moved, report.removed) == (1, 1, 1, 1) and indexed.count() == 14

    incremental = find_duplicates(indexed, state_path=state, **settings)
    assert incremental.incremental and incremental.changed == 4  # one added, one changed, one moved, one removed
    assert 2 <= incremental.searched <= 14  # these random-weights vectors are all near one another
    full = find_duplicates(indexed, state_path=tmp_path / "full.npz", full=True, **settings)
    assert not full.incremental and full.searched == 14
    assert _outcome(incremental) == _outcome(full)
    groups = {path: set(group.files) for group in full.groups for path in group.files}
    assert stored_path(moved) in groups[stored_path(library["originals"][1])]
    assert stored_path(added) in groups[stored_path(library["originals"][0])]
    assert 0 < incremental.checks_reused < again.checks_reused  # pairs with the new or changed files were checked


def test_a_rerun_on_crowded_neighbourhoods_equals_a_full_run(store: ImageCollection, tmp_path: Path) -> None:
    """Clusters of more near rows than `neighbours`: rows added, removed, changed and moved push others
    out of each other's lists, and only the rows around them are searched again."""
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((4, 2048)).astype(np.float32)

    def near(centre: int, count: int) -> np.ndarray:
        return centres[centre] + 0.05 * rng.standard_normal((count, 2048)).astype(np.float32)

    vectors = np.vstack([near(0, 8), near(1, 8), near(2, 8), rng.standard_normal((60, 2048)).astype(np.float32)])
    paths = [f"/lib/{n:03d}.jpg" for n in range(len(vectors))]
    store.insert(paths, vectors, hashes=[f"h{n}" for n in range(len(vectors))])
    state, settings = tmp_path / "state.npz", {"threshold": 0.9, "neighbours": 5, "verify": False}
    first = find_duplicates(store, state_path=state, **settings)
    assert len(first.groups) == 3 and first.searched == 84

    store.insert(["/lib/new_a.jpg", "/lib/new_b.jpg", "/lib/new_c.jpg"], near(0, 3), hashes=["n1", "n2", "n3"])
    store.insert(["/lib/lone.jpg"], rng.standard_normal((1, 2048)).astype(np.float32), hashes=["n4"])
    store.delete([path_id(paths[8]), path_id(paths[9])])  # two rows of the second cluster
    store.insert([paths[16]], near(3, 1), hashes=["edited"])  # a row of the third cluster, changed
    moved = store.records([path_id(paths[20])], with_vectors=True)[0]
    store.delete([moved.id])
    store.insert(["/lib/moved/020.jpg"], moved.vector[None], hashes=[moved.content_hash])

    incremental = find_duplicates(store, state_path=state, **settings)
    assert incremental.incremental and incremental.changed == 8
    assert incremental.searched < 30, "only the clusters that changed, not the 60 lone rows"
    full = find_duplicates(store, state_path=tmp_path / "full.npz", full=True, **settings)
    assert full.searched == 86
    assert _outcome(incremental) == _outcome(full)
    assert "/lib/moved/020.jpg" in {path for group in full.groups for path in group.files}


PARTNERS = 20
"""Stored lone rows that each get a new row near them (cosine about 0.96)."""


def _lone_rows_and_clusters(rng: np.random.Generator, lone: int) -> tuple[list[str], np.ndarray]:
    """Paths and 128-d vectors: `lone` random rows (cosines within about 0.3 of 0), then 3 clusters of 6 rows
    (cosines about 0.98 within one)."""
    centres = rng.standard_normal((3, 128))
    clusters = [centre + 0.15 * rng.standard_normal((6, 128)) for centre in centres]
    vectors = np.vstack([rng.standard_normal((lone, 128)), *clusters]).astype(np.float32)
    return [f"/lib/{n:04d}.jpg" for n in range(len(vectors))], vectors


def _add_partners(store: ImageCollection, rng: np.random.Generator, vectors: np.ndarray) -> list[int]:
    """Insert a new row near each of the first `PARTNERS` rows and one into the first cluster; their ids."""
    partners = vectors[:PARTNERS] / np.linalg.norm(vectors[:PARTNERS], axis=1, keepdims=True)
    noise = rng.standard_normal(partners.shape)
    near = partners + 0.3 * noise / np.linalg.norm(noise, axis=1, keepdims=True)
    added = np.vstack([near, vectors[-18] + 0.15 * rng.standard_normal(128)]).astype(np.float32)
    names = [f"/lib/new/{n:02d}.jpg" for n in range(len(added))]
    store.insert(names, added, hashes=[f"new{n}" for n in range(len(added))])
    return [path_id(name) for name in names]


def _assert_a_rerun_equals_a_full_run(
    store: ImageCollection, new: list[int], paths: list[str], state: Path, tmp_path: Path
) -> None:
    settings = {"threshold": 0.9, "neighbours": 5, "verify": False}
    incremental = find_duplicates(store, state_path=state, **settings)
    full = find_duplicates(store, state_path=tmp_path / "full.npz", full=True, **settings)
    assert incremental.incremental and incremental.changed == len(new) and not full.incremental
    assert _outcome(incremental) == _outcome(full)
    assert incremental.searched == len(new) + PARTNERS + 6, "the new rows, their partners and one cluster"
    pairs = {frozenset((pair.a, pair.b)) for pair in full.pairs}
    assert all({partner, f"/lib/new/{n:02d}.jpg"} in pairs for n, partner in enumerate(paths[:PARTNERS]))


def test_a_rerun_under_hnsw_searches_the_rows_whose_own_search_finds_a_new_row(
    server_uri: str, collection_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An HNSW search from a new row misses stored rows near it (random vectors, a sparse graph, a short
    search), which find it by their own search: a full run pairs them, so the re-run must search them.

    The pairs to find do not hang on the index's recall, which varies from one search to the next
    while Milvus settles after a load or an insert: the clusters and the new rows are written after
    the index was built, into a segment that Milvus searches without it (exactly); the new rows'
    partners are in the indexed segment, but always find the new rows by their own search.
    With the old rule (searching only from the new rows) the re-run misses partner pairs."""
    from utilities.duplicates.incremental import rows_within_threshold, rows_within_threshold_exactly
    from utilities.milvus.vector_index import DEFAULT_SEARCH_PARAMS

    rng = np.random.default_rng(11)
    store = ImageCollection.open(server_uri, name=collection_name, dimension=128)
    try:
        paths, vectors = _lone_rows_and_clusters(rng, 2_000)  # a segment of 1,024 rows or more gets its index
        store.insert(paths[:2_000], vectors[:2_000], hashes=[f"h{n}" for n in range(2_000)])
        store.create_index("HNSW", M=4, efConstruction=8)  # seals them first
        assert store.wait_for_index(timeout=120)
        store.insert(paths[2_000:], vectors[2_000:], hashes=[f"h{n}" for n in range(2_000, len(paths))])
        monkeypatch.setitem(DEFAULT_SEARCH_PARAMS["HNSW"], "ef", 8)
        state = tmp_path / "state.npz"
        first = find_duplicates(store, threshold=0.9, neighbours=5, verify=False, state_path=state)
        assert not first.incremental and first.searched == len(paths) and len(first.groups) == 3

        new = _add_partners(store, rng, vectors)
        partners = {path_id(path) for path in paths[:PARTNERS]}
        by_search = rows_within_threshold(store, new, {}, 0.9, 5)
        assert by_search is not None and not partners <= by_search, "the search from the new rows missed none"
        assert partners | set(map(path_id, paths[-18:-12])) == rows_within_threshold_exactly(store, new, {}, 0.9)
        _assert_a_rerun_equals_a_full_run(store, new, paths, state, tmp_path)
    finally:
        store.drop()
        store.close()


CROWD = 6
"""New rows close to one another (cosine about 0.99) and to one stored lone row (about 0.95)."""


def _add_crowd(store: ImageCollection, rng: np.random.Generator, lone: np.ndarray) -> list[str]:
    """Insert `CROWD` new rows around a point near the stored vector `lone`; their paths.

    Each new row's `neighbours + 1` nearest are the crowd itself, so no search from the crowd finds the
    lone row; its own search finds them: a full run groups it with them."""
    unit = lone / np.linalg.norm(lone)
    noise = rng.standard_normal(unit.shape)
    centre = unit + 0.3 * noise / np.linalg.norm(noise)
    crowd = (centre + 0.05 * rng.standard_normal((CROWD, len(unit))) / np.sqrt(len(unit))).astype(np.float32)
    names = [f"/lib/crowd/{n}.jpg" for n in range(CROWD)]
    store.insert(names, crowd, hashes=[f"crowd{n}" for n in range(CROWD)])
    return names


def test_a_rerun_under_scann_finds_the_rows_near_a_new_row_by_a_scan_and_equals_a_full_run(
    server_uri: str, collection_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SCANN, which `AUTO` builds on a server above 20,000 short vectors, searches only the `nprobe`
    nearest of its lists: a search is approximate, so the rows near a new row are found by a scan of
    every stored vector, never by a search from it, and the re-run equals a full run.

    As under HNSW, the clusters and the new rows are written after the index was built, into a segment
    that Milvus searches without it; the lone rows and the new rows' partners are in the indexed segment,
    searched with one list of 64 (the most approximate SCANN search). A crowd of new rows next to a lone
    row never finds it by its own searches: only the lone row's search, which the re-run must make, puts
    it in their group."""
    from utilities.duplicates import incremental
    from utilities.milvus.vector_index import DEFAULT_SEARCH_PARAMS

    rng = np.random.default_rng(11)
    store = ImageCollection.open(server_uri, name=collection_name, dimension=128)
    try:
        paths, vectors = _lone_rows_and_clusters(rng, 2_000)  # a segment of 1,024 rows or more gets its index
        store.insert(paths[:2_000], vectors[:2_000], hashes=[f"h{n}" for n in range(2_000)])
        store.create_index("SCANN", nlist=64)  # seals them first
        assert store.wait_for_index(timeout=120) and store.index_type == "SCANN"
        assert not incremental.searches_exactly(store)
        store.insert(paths[2_000:], vectors[2_000:], hashes=[f"h{n}" for n in range(2_000, len(paths))])
        monkeypatch.setitem(DEFAULT_SEARCH_PARAMS["SCANN"], "nprobe", 1)
        state, settings = tmp_path / "state.npz", {"threshold": 0.9, "neighbours": 5, "verify": False}
        first = find_duplicates(store, state_path=state, **settings)
        assert not first.incremental and first.searched == len(paths)
        assert sorted(len(group.files) for group in first.groups) == [6, 6, 6]

        new = _add_partners(store, rng, vectors)
        crowd = _add_crowd(store, rng, vectors[PARTNERS])
        near = {path_id(path) for path in [*paths[: PARTNERS + 1], *paths[-18:-12]]}  # partners, lone row, cluster
        assert near == incremental.rows_within_threshold_exactly(store, [*new, *map(path_id, crowd)], {}, 0.9)

        def no_search(*args: object, **kwargs: object) -> None:
            raise AssertionError("under an approximate index the rows near a new row are found by a scan")

        monkeypatch.setattr(incremental, "rows_within_threshold", no_search)
        rerun = find_duplicates(store, state_path=state, **settings)
        full = find_duplicates(store, state_path=tmp_path / "full.npz", full=True, **settings)
        assert rerun.incremental and rerun.changed == len(new) + CROWD and not full.incremental
        assert _outcome(rerun) == _outcome(full)
        assert frozenset([paths[PARTNERS], *crowd]) in {frozenset(group.files) for group in full.groups}
        assert len(full.groups) == 3 + PARTNERS + 1
        assert rerun.searched == len(new) + CROWD + len(near)
        again = find_duplicates(store, state_path=state, **settings)
        assert again.incremental and again.changed == 0 and again.searched == 0
        assert _outcome(again) == _outcome(full)
    finally:
        store.drop()
        store.close()


def test_a_rerun_on_milvus_lite_still_searches_from_the_new_rows(
    tmp_path: Path, collection_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lite's searches are exact: the rows near a new row are found by searching from it, no vector scan."""
    from utilities.duplicates import incremental

    rng = np.random.default_rng(11)
    store = ImageCollection.open(str(tmp_path / "lite.db"), name=collection_name, dimension=128)
    try:
        paths, vectors = _lone_rows_and_clusters(rng, 300)
        store.insert(paths, vectors, hashes=[f"h{n}" for n in range(len(paths))])
        state = tmp_path / "state.npz"
        find_duplicates(store, threshold=0.9, neighbours=5, verify=False, state_path=state)
        new = _add_partners(store, rng, vectors)
        assert incremental.searches_exactly(store)
        scanned = incremental.rows_within_threshold_exactly(store, new, {}, 0.9)  # pages of 128 rows
        assert incremental.rows_within_threshold(store, new, {}, 0.9, 5) == scanned
        assert len(scanned) == PARTNERS + 6
        with monkeypatch.context() as short:  # the new cluster row has more rows near it than one search returns
            short.setattr(incremental, "MAX_SEARCH_LIMIT", 6)
            assert incremental.rows_within_threshold(store, new, {}, 0.9, 5) is None
            assert incremental.rows_near_changes(store, new, {}, 0.9, 5) == scanned

        def no_scan(*args, **kwargs):
            raise AssertionError("an exact search needs no scan")

        monkeypatch.setattr(incremental, "rows_within_threshold_exactly", no_scan)
        _assert_a_rerun_equals_a_full_run(store, new, paths, state, tmp_path)
    finally:
        store.close()


def test_checks_saved_under_another_rule_are_made_again(indexed: ImageCollection, tmp_path: Path) -> None:
    from utilities.duplicates.incremental import DuplicateState

    state, settings = tmp_path / "state.npz", {"threshold": LOW_THRESHOLD, "neighbours": 5, "workers": 1}
    first = find_duplicates(indexed, state_path=state, **settings)
    saved = DuplicateState.load(state)
    assert saved is not None and saved.checks and "inliers >= 16" in saved.check_rule
    saved.check_rule = "an older rule"
    saved.checks = {key: (True, 99, 1.0, 1.0, False, 0.0, 0.0) for key in saved.checks}  # what that rule had said
    saved.save(state)
    again = find_duplicates(indexed, state_path=state, **settings)
    assert again.incremental and again.searched == 0 and again.checks_reused == 0
    assert _outcome(again) == _outcome(first)


def test_a_saved_state_of_other_settings_or_another_collection_is_not_used(
    indexed: ImageCollection, tmp_path: Path
) -> None:
    state = tmp_path / "state.npz"
    find_duplicates(indexed, threshold=LOW_THRESHOLD, neighbours=5, verify=False, state_path=state)
    other = find_duplicates(indexed, threshold=0.5, neighbours=5, verify=False, state_path=state)
    assert not other.incremental and other.searched == 14
    state.write_bytes(b"not a state")
    assert not find_duplicates(indexed, threshold=0.5, neighbours=5, verify=False, state_path=state).incremental
    vectors = {r.id: r for r in indexed.records([r.id for p in indexed.iter_records() for r in p], with_vectors=True)}
    find_duplicates(indexed, threshold=0.5, neighbours=5, verify=False, state_path=state)
    rng = np.random.default_rng(0)
    for record in vectors.values():  # every file indexed again with another model: the same hashes
        record.vector[:] = rng.standard_normal(record.vector.shape).astype(np.float32)
    indexed.write(list(vectors.values()))
    rerun = find_duplicates(indexed, threshold=0.5, neighbours=5, verify=False, state_path=state)
    assert not rerun.incremental and rerun.searched == 14


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
    plotted = sorted(p.name for p in figures.glob("*.png"))  # and the list of them, to remove them next time
    assert plotted == [f"group_{n:04d}.png" for n in range(1, 7)] + ["nearest.png"]
    assert main(arguments) == 0  # the second run starts from the first one's state
    assert "incremental: 0 rows changed since the last search; 0 searched again" in capsys.readouterr().out
    assert main([*arguments, "--full", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["searched"] == 14
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


def test_a_photo_that_shares_only_a_pasted_region_is_not_a_copy(tmp_path: Path) -> None:
    """A region of one photo pasted into another (a logo, a sign, a collage) makes matches agree there only."""
    from PIL import Image

    from utilities.duplicates.verification import MIN_INLIERS, compare

    samples = sorted(SAMPLES.glob("*.jpg"))
    verdicts = []
    for base, source in ((a, b) for a in samples for b in samples if a != b):
        image, other = Image.open(base).convert("RGB"), Image.open(source).convert("RGB")
        (width, height), (other_w, other_h) = image.size, other.size
        region = other.crop((other_w * 3 // 10, other_h * 3 // 10, other_w * 6 // 10, other_h * 6 // 10))
        image.paste(region.resize((width * 3 // 10, height * 3 // 10)), (width // 20, height // 20))
        image.save(tmp_path / "collage.jpg", quality=90)
        verdicts.append(compare(str(tmp_path / "collage.jpg"), str(source)))
    assert not any(verdict.verified for verdict in verdicts)
    assert sum(verdict.inliers >= MIN_INLIERS for verdict in verdicts) >= 5  # the pasted region matched


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
