"""Finding the copies in a whole collection: candidates from Milvus, a check of each, groups.

1. `candidates.find_candidates` reads the collection once: exact copies by content hash, and
   near copies by a k-NN search of every stored vector, scored again exactly.
2. Near pairs are checked by `verification.compare` (keypoints and a geometric fit) in worker
   processes, with a progress bar; exact copies need no check.
3. Verified pairs are joined into groups around one kept file each, the original by default
   (`grouping`, `keeper`); only files checked against that kept file and found inside it are
   removable.

With a `state_path`, a later run searches and checks only what changed (`incremental`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

from utilities.duplicates.candidates import Candidates, find_candidates
from utilities.duplicates.grouping import PairChecks, flipped, group_copies, shared_regions, verdict_of
from utilities.duplicates.incremental import update_candidates
from utilities.duplicates.keeper import POLICIES as KEEP_POLICIES
from utilities.duplicates.provenance import Source, probe_cosines
from utilities.duplicates.report import DuplicatePair, DuplicateReport
from utilities.duplicates.state import DuplicateState, state_applies
from utilities.duplicates.verification import Verdict, check_rule, compare_pairs, require_opencv
from utilities.milvus.collection import ImageCollection
from utilities.records import ImageRecord

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.65
"""Cosine a near pair must reach to be checked. Measured with a pretrained model (EfficientNet-Lite0,
Imagenette photos with edited and exact copies, `benchmarks/duplicates.py`): on 3,200 images the
check gave precision 0.998 at recall 0.983 at 0.65; recall 0.968 at 0.7 (31 of the 1,200 edited
copies' vectors were below 0.7) in 0.59 times the time, 0.987 at 0.6 in 1.4 times. The keypoint
check decides; vectors alone do not separate copies from look-alikes (precision 0.09
at 0.65)."""

DEFAULT_NEIGHBOURS = 10
"""Nearest rows searched for each row."""

PAIRS_PER_TASK = 64
"""Pairs one worker checks at a time (sorted by their first file, whose keypoints it caches)."""


def verify_pairs(pairs: list[tuple[str, str]], workers: int | None, progress: bool) -> list[Verdict]:
    """`verification.compare` of each pair, in worker processes, in the order given."""
    if not pairs:
        return []
    workers = workers or max(1, (os.cpu_count() or 1))
    tasks = [pairs[start : start + PAIRS_PER_TASK] for start in range(0, len(pairs), PAIRS_PER_TASK)]
    verdicts: list[Verdict] = []
    with tqdm(total=len(pairs), desc="checking pairs", unit="pair", disable=not progress) as bar:
        if workers == 1 or len(tasks) == 1:
            for task in tasks:
                verdicts += compare_pairs(task)
                bar.update(len(task))
            return verdicts
        with ProcessPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            for task, done in zip(tasks, pool.map(compare_pairs, tasks), strict=True):
                verdicts += done
                bar.update(len(task))
    return verdicts


def _read_records(store: ImageCollection, progress: bool) -> dict[int, ImageRecord]:
    """Every row without its vector, by id."""
    records: dict[int, ImageRecord] = {}
    with tqdm(total=store.count(), desc="reading rows", unit="row", disable=not progress) as bar:
        for page in store.iter_records():
            records.update((record.id, record) for record in page)
            bar.update(len(page))
    return records


def _previous_state(
    store: ImageCollection, source: Source, state_path: str | os.PathLike, threshold: float, neighbours: int
) -> DuplicateState | None:
    """The saved state, if it was made on this collection as it is now (`source`, and the probe of its
    vectors) with these settings (`state.state_applies`)."""
    state = DuplicateState.load(state_path)
    if state is None or not state_applies(state, store, source, threshold, neighbours):
        return None
    return state


def find_duplicates(
    store: ImageCollection,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: bool = True,
    exact_only: bool = False,
    workers: int | None = None,
    progress: bool = False,
    state_path: str | os.PathLike | None = None,
    full: bool = False,
    keep: str = "original",
    prefer: Sequence[str | os.PathLike] = (),
) -> DuplicateReport:
    """Find exact and near copies among the collection's images, from its stored hashes and vectors.

    Args:
        store: The collection.
        threshold: Cosine a near pair must reach (on the stored vectors) to be a candidate.
        neighbours: Nearest rows searched for each row.
        verify: Check each near candidate with keypoints (needs OpenCV); False keeps every
            candidate at the threshold.
        exact_only: Only files with the same content (no vectors read, no search, no check).
        workers: Processes for the check (default: one a core).
        progress: Show progress bars.
        state_path: Where the state for the next run is kept (`state.DuplicateState`). When a
            state made with the same settings is there, only what changed since is searched and
            checked (`incremental.update_candidates`): the result is that of a full run.
        full: Search every row even if a saved state could be used (the state is written anew).
        keep: Which file of a group to keep (`keeper.POLICIES`; default the original).
        prefer: Folders whose files are kept first.

    Returns:
        A `DuplicateReport`.

    Raises:
        ValueError: `threshold` is not between -1 and 1, `neighbours` is below 1, or `keep` is unknown.
        ImageSearchError: `verify` is on and OpenCV is missing.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine similarity between -1 and 1 (e.g. 0.65)")
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1, got {neighbours}")
    if keep not in KEEP_POLICIES:
        raise ValueError(f"unknown keeper policy {keep!r}: choose one of {', '.join(KEEP_POLICIES)}")
    checking = verify and not exact_only
    if checking:
        require_opencv()
    started = time.perf_counter()
    keeping = state_path is not None and not exact_only
    identity = Source.of(store) if keeping else None
    previous = None if not keeping or full else _previous_state(store, identity, state_path, threshold, neighbours)
    updated = None
    if previous is not None:
        records = _read_records(store, progress)
        with tqdm(desc="searching what changed", unit="row", disable=not progress) as bar:
            updated = update_candidates(store, records, previous, threshold, neighbours, on_progress=bar.update)
    if updated is not None:
        candidates, changes, searched = updated
    else:
        previous, changes = None, None
        with tqdm(total=store.count(), desc="reading and searching", unit="row", disable=not progress) as bar:
            candidates = find_candidates(store, threshold, neighbours, exact_only, on_progress=bar.update)
        searched = 0 if exact_only else len(candidates.records)
    records = candidates.records
    pairs: list[DuplicatePair] = []
    for ids in candidates.exact:
        for other in ids[1:]:  # a chain is enough to make the group
            pairs.append(DuplicatePair(records[ids[0]].path, records[other].path, 1.0, "exact"))
    near = sorted(_near_pairs(candidates).items())
    report = DuplicateReport(
        collection=store.name,
        rows=len(records),
        threshold=None if exact_only else threshold,
        verified=checking,
        nearest=list(candidates.nearest.values()),
        searched=searched,
        incremental=previous is not None,
        changed=0 if changes is None else changes.count,
    )
    saved_checks = previous.checks if previous is not None else {}
    if saved_checks and previous.check_rule != check_rule():
        logger.info("the saved keypoint checks were made under another rule: checking again")
        saved_checks = {}
    verdicts: list[Verdict | None] = [None] * len(near)
    if checking:
        to_check = []
        for n, ((a, b), _) in enumerate(near):
            kept = saved_checks.get(_check_key(records[a], records[b]))
            if kept is not None and len(kept) >= 7:
                verdicts[n] = verdict_of(kept)
            else:
                to_check.append(n)
        report.checks_reused = len(near) - len(to_check)
        ordered = {n: _check_order(records[near[n][0][0]], records[near[n][0][1]]) for n in to_check}
        to_check.sort(key=lambda n: ordered[n])
        paths = [ordered[n] for n in to_check]
        for n, verdict in zip(to_check, verify_pairs(paths, workers, progress), strict=True):
            verdicts[n] = verdict
    copies = {ids[0]: ids for ids in candidates.exact}
    checks = PairChecks(
        enabled=checking,
        saved=saved_checks if checking else {},
        hashes={record.path: record.content_hash for record in records.values()},
    )
    for ((a, b), cosine), verdict in zip(near, verdicts, strict=True):
        if verdict is not None:
            checks.known[_check_order(records[a], records[b])] = verdict
        if verdict is not None and not verdict.verified:
            report.rejected += 1
            continue
        for first, second in ((x, y) for x in copies.get(a, [a]) for y in copies.get(b, [b])):
            pairs.append(  # the pair, and the same pair for each exact copy of either file
                DuplicatePair(
                    records[min(first, second)].path,
                    records[max(first, second)].path,
                    round(cosine, 6),
                    "near",
                    verified=None if verdict is None else True,
                    inliers=0 if verdict is None else verdict.inliers,
                )
            )
    report.pairs = pairs
    with tqdm(desc="choosing what to keep", unit="group", disable=not progress) as bar:
        grouping = group_copies(records, pairs, checks, keep, prefer, on_cluster=bar.update)
    report.groups, report.keep = grouping.groups, keep
    report.related = sorted(
        grouping.related + shared_regions(checks, grouping.related), key=lambda pair: (pair.a, pair.b)
    )
    report.checks_on_demand = checks.made
    for verdict in checks.known.values():
        if verdict.error and verdict.error_path:
            report.unreadable[verdict.error_path] = verdict.error
    if keeping:
        _save_state(store, identity, state_path, threshold, neighbours, candidates, checks)
    report.seconds = time.perf_counter() - started
    report.created = time.time()
    return report


def _near_pairs(candidates: Candidates) -> dict[tuple[int, int], float]:
    """The near candidate pairs, each exact copy standing for its group's first row.

    Copies of one content have one vector, so which of them a search returns among its nearest
    rows is a tie that Milvus breaks as it likes; standing for one another, they give the same pairs
    every run. Pairs within one content are left out: the exact group holds them already.
    """
    first = {row: ids[0] for ids in candidates.exact for row in ids}
    pairs: dict[tuple[int, int], float] = {}
    for (a, b), cosine in candidates.near.items():
        a, b = first.get(a, a), first.get(b, b)
        if a != b:
            pairs.setdefault((min(a, b), max(a, b)), cosine)
    return pairs


def _check_order(first: ImageRecord, second: ImageRecord) -> tuple[str, str]:
    """The two paths in the order the keypoint check takes them: by content hash, then path.

    The check is not quite symmetric (its inlier count depends on which image is mirrored), and a
    kept check is found again by the two hashes: checking in hash order makes it the same check
    whatever the rows' ids, so a moved file's pair gets the verdict a full run would give it.
    """
    a, b = sorted((first, second), key=lambda record: (record.content_hash, record.path))
    return a.path, b.path


def _check_key(first: ImageRecord, second: ImageRecord) -> tuple[str, str] | None:
    """What a keypoint check is kept under: the two content hashes, sorted (None if one is unknown)."""
    if not first.content_hash or not second.content_hash:
        return None
    return tuple(sorted((first.content_hash, second.content_hash)))  # type: ignore[return-value]


def _save_state(
    store: ImageCollection,
    source: Source,
    state_path: str | os.PathLike,
    threshold: float,
    neighbours: int,
    candidates: Candidates,
    checks: PairChecks,
) -> None:
    """Keep what the next run needs: hashes, candidate lists, best cosines, the checks that read both files,
    what the search was made on (`source`) and the probe of the stored vectors (whatever the run found)."""
    records = candidates.records
    state = DuplicateState(
        source=source,
        threshold=threshold,
        neighbours=neighbours,
        metric=store.metric,
        hashes={row: record.content_hash for row, record in records.items()},
        found_by=candidates.found_by,
        nearest=candidates.nearest,
        check_rule=check_rule(),
        probe=probe_cosines(store, records),
    )
    hashes = {record.path: record.content_hash for record in records.values()}
    for (first, second), verdict in sorted(  # the search's checks (in hash order) first, then those made while grouping
        checks.known.items(), key=lambda item: hashes.get(item[0][0], "") > hashes.get(item[0][1], "")
    ):
        if verdict.error or not hashes.get(first) or not hashes.get(second) or hashes[first] == hashes[second]:
            continue
        if hashes[first] > hashes[second]:
            first, second, verdict = second, first, flipped(verdict)
        state.checks.setdefault(
            (hashes[first], hashes[second]),
            (
                verdict.verified,
                verdict.inliers,
                verdict.covered_a,
                verdict.covered_b,
                verdict.related,
                verdict.fill_a,
                verdict.fill_b,
            ),
        )
    state.save(state_path)
