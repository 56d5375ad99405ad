"""Finding the copies in a whole collection: candidates from Milvus, a check of each, groups.

1. `candidates.find_candidates` reads the collection once: exact copies by content hash, and
   near copies by a k-NN search of every stored vector, scored again exactly.
2. Near pairs are checked by `verification.compare` (keypoints and a geometric fit) in worker
   processes, with a progress bar; exact copies need no check.
3. Pairs are joined into groups (connected components), and one file of each is kept
   (`report.keeper_rule`).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor

from tqdm.auto import tqdm

from utilities.duplicates.candidates import Candidates, find_candidates
from utilities.duplicates.report import DuplicateGroup, DuplicatePair, DuplicateReport, keeper_rule
from utilities.duplicates.verification import Verdict, compare_pairs, require_opencv
from utilities.milvus.collection import ImageCollection

DEFAULT_THRESHOLD = 0.7
"""Cosine a near pair must reach to be checked. Measured with a pretrained model (EfficientNet-Lite0,
480 Imagenette photos with edited and exact copies, `benchmarks/duplicates.py`): at 0.7 the
check gave precision 0.994 at recall 0.989; at 0.8 too many edited copies fell below the
threshold (recall 0.678); at 0.5-0.6 recall rose to 0.994 for precision 0.984 and 2.5-4.5 times
the time. The keypoint check decides; vectors alone do not separate copies from look-alikes."""

DEFAULT_NEIGHBOURS = 10
"""Nearest rows searched for each row."""

PAIRS_PER_TASK = 64
"""Pairs one worker checks at a time (sorted by their first file, whose keypoints it caches)."""


def _verify(pairs: list[tuple[str, str]], workers: int | None, progress: bool) -> list[Verdict]:
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


def _groups(candidates: Candidates, pairs: list[DuplicatePair], ids_of: dict[str, int]) -> list[DuplicateGroup]:
    """Connected components of the pairs, largest first, each with its keeper."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for pair in pairs:
        parent[root(ids_of[pair.a])] = root(ids_of[pair.b])
    members: dict[int, list[int]] = {}
    for node in list(parent):
        members.setdefault(root(node), []).append(node)
    groups = []
    for ids in members.values():
        records = [candidates.records[i] for i in ids]
        keeper = keeper_rule(records)
        hashes = {record.content_hash for record in records}
        groups.append(
            DuplicateGroup(
                files=sorted(record.path for record in records),
                keeper=keeper.path,
                removable=sorted(record.path for record in records if record.id != keeper.id),
                exact=len(hashes) == 1 and "" not in hashes,
            )
        )
    return sorted(groups, key=lambda group: (-len(group.files), group.files))


def find_duplicates(
    store: ImageCollection,
    threshold: float = DEFAULT_THRESHOLD,
    neighbours: int = DEFAULT_NEIGHBOURS,
    verify: bool = True,
    exact_only: bool = False,
    workers: int | None = None,
    progress: bool = False,
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

    Returns:
        A `DuplicateReport`.

    Raises:
        ValueError: `threshold` is not between -1 and 1, or `neighbours` is below 1.
        ImageSearchError: `verify` is on and OpenCV is missing.
    """
    if not -1.0 <= threshold <= 1.0:
        raise ValueError(f"threshold {threshold} is not a cosine similarity between -1 and 1 (e.g. 0.7)")
    if neighbours < 1:
        raise ValueError(f"neighbours must be at least 1, got {neighbours}")
    checking = verify and not exact_only
    if checking:
        require_opencv()
    started = time.perf_counter()
    total = store.count()
    with tqdm(total=total, desc="reading and searching", unit="row", disable=not progress) as bar:
        candidates = find_candidates(store, threshold, neighbours, exact_only, on_progress=bar.update)
    records = candidates.records
    pairs: list[DuplicatePair] = []
    for ids in candidates.exact:
        for other in ids[1:]:  # a chain is enough to make the group
            pairs.append(DuplicatePair(records[ids[0]].path, records[other].path, 1.0, "exact"))
    same_content = {(a, b) for ids in candidates.exact for a in ids for b in ids if a < b}
    near = sorted(
        (pair, cosine) for pair, cosine in candidates.near.items() if pair not in same_content
    )  # copies of one content are one exact group already
    report = DuplicateReport(
        collection=store.name,
        rows=len(records),
        threshold=None if exact_only else threshold,
        verified=checking,
        nearest=candidates.nearest,
    )
    if checking:
        order = sorted(range(len(near)), key=lambda n: records[near[n][0][0]].path)
        paths = [(records[near[n][0][0]].path, records[near[n][0][1]].path) for n in order]
        verdicts: list[Verdict | None] = [None] * len(near)
        for n, verdict in zip(order, _verify(paths, workers, progress), strict=True):
            verdicts[n] = verdict
    else:
        verdicts = [None] * len(near)
    for ((a, b), cosine), verdict in zip(near, verdicts, strict=True):
        if verdict is not None and verdict.error:
            path, _, reason = verdict.error.partition(": ")
            report.unreadable[path] = reason
        if verdict is not None and not verdict.verified:
            report.rejected += 1
            continue
        pairs.append(
            DuplicatePair(
                records[a].path,
                records[b].path,
                round(cosine, 6),
                "near",
                verified=None if verdict is None else True,
                inliers=0 if verdict is None else verdict.inliers,
            )
        )
    report.pairs = pairs
    ids_of = {record.path: record.id for record in records.values()}
    report.groups = _groups(candidates, pairs, ids_of)
    report.seconds = time.perf_counter() - started
    return report
