"""Groups of copies from checked pairs: one file kept in each, and only its own copies listed as removable.

Being a copy is not transitive (an edited copy of an edited copy can be too far from the first), so
pairs are only the start:

1. Verified pairs (the same content hash, or a keypoint check that found one picture) are joined
   into clusters.
2. In each cluster the keeper is chosen (`keeper.choose`: by default the original).
3. A file is removable only when it was checked against that keeper itself (the same content hash,
   or a check of that very pair, run now if the search did not make it) and is nearly all found
   inside the keeper (`verification.Verdict.contains`). Other files are `related` to the keeper
   (they share a region, or a chain of checks linked them), never removable.
4. The files left over are grouped again the same way among themselves.

Without the check (`verify=False`) a group also holds the unchecked candidates linked to its keeper,
but only exact copies of the keeper are removable.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from utilities.duplicates import keeper as keeping
from utilities.duplicates.moved_aside import KeeperRank
from utilities.duplicates.report import DuplicateGroup, DuplicatePair, RelatedPair
from utilities.duplicates.verification import Verdict, compare
from utilities.records import ImageRecord

logger = logging.getLogger(__name__)


@dataclass
class PairChecks:
    """Keypoint verdicts by ordered pair of paths, with the rest checked on demand.

    Attributes:
        known: Verdicts of the search's checks, `(first path, second path) -> Verdict`.
        enabled: Whether pairs not in `known` may be checked now (False when the run skips the check).
        saved: Checks kept from the last run, by the two content hashes sorted (`state.Check`,
            its coverages in that order): a pair asked for again is not checked again.
        hashes: Each path's content hash, to find a pair in `saved`.
        made: Pairs checked on demand.
    """

    known: dict[tuple[str, str], Verdict] = field(default_factory=dict)
    enabled: bool = True
    saved: dict[tuple[str, str], tuple] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    made: int = 0

    def __contains__(self, pair: object) -> bool:
        return pair in self.known

    def __call__(self, first: str, second: str) -> Verdict:
        """The verdict on `first` and `second`, oriented so that `covered_a` is `first`'s (a copy whose
        blank fills were not measured is checked again)."""
        if (second, first) in self.known and (first, second) not in self.known:
            return flipped(self(second, first))
        verdict = self.known.get((first, second))
        if verdict is not None and (verdict.fill_a >= 0 or not verdict.verified or not self.enabled):
            return verdict
        if not self.enabled:
            return Verdict(False, error="the keypoint check was skipped (verify=False)")
        if verdict is None:
            verdict = self._kept(first, second)
        if verdict is None or (verdict.verified and verdict.fill_a < 0):
            # in the order a search's check takes them (content hash, then path): the check is not quite
            # symmetric, and a run that reuses it must see what a full run would
            ordered = sorted((first, second), key=lambda path: (self.hashes.get(path, ""), path))
            verdict = compare(*ordered)
            self.made += 1
            if ordered[0] != first:
                verdict = flipped(verdict)
        self.known[(first, second)] = verdict
        return verdict

    def _kept(self, first: str, second: str) -> Verdict | None:
        """The check of this pair's two contents kept from the last run, oriented (None if none)."""
        hash_first, hash_second = self.hashes.get(first, ""), self.hashes.get(second, "")
        if not hash_first or not hash_second:
            return None
        kept = self.saved.get(tuple(sorted((hash_first, hash_second))))
        if kept is None or len(kept) < 7:
            return None
        verdict = verdict_of(kept)
        return verdict if hash_first <= hash_second else flipped(verdict)


def flipped(verdict: Verdict) -> Verdict:
    """The verdict with its two images swapped."""
    return replace(
        verdict,
        covered_a=verdict.covered_b,
        covered_b=verdict.covered_a,
        fill_a=verdict.fill_b,
        fill_b=verdict.fill_a,
    )


def verdict_of(kept: tuple) -> Verdict:
    """A verdict from a check kept in the state (`state.Check`)."""
    verified, inliers, covered_a, covered_b, related, fill_a, fill_b = kept[:7]
    return Verdict(
        bool(verified),
        int(inliers),
        covered_a=float(covered_a),
        covered_b=float(covered_b),
        related=bool(related),
        fill_a=float(fill_a),
        fill_b=float(fill_b),
    )


def _clusters(ids: Sequence[int], links: Sequence[tuple[int, int]]) -> list[list[int]]:
    """Connected components (of 2 or more) of `ids` joined by `links`."""
    parent = {node: node for node in ids}

    def root(node: int) -> int:
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for a, b in links:
        if a in parent and b in parent:
            parent[root(a)] = root(b)
    members: dict[int, list[int]] = {}
    for node in ids:
        members.setdefault(root(node), []).append(node)
    return [sorted(group) for group in members.values() if len(group) > 1]


@dataclass
class Grouping:
    """The groups and the related pairs of one report."""

    groups: list[DuplicateGroup] = field(default_factory=list)
    related: list[RelatedPair] = field(default_factory=list)


def group_copies(
    records: dict[int, ImageRecord],
    pairs: Sequence[DuplicatePair],
    checks: PairChecks,
    policy: str = "original",
    prefer: Sequence[str | os.PathLike] = (),
    on_cluster: Callable[[], None] | None = None,
) -> Grouping:
    """Groups of copies, each with its keeper and the removable files contained in it (see the module's notes).

    Args:
        records: The collection's rows, by id.
        pairs: Pairs found: exact ones (one content) and near ones that the check verified (or, when the
            check was skipped, every candidate: then only exact copies of a keeper are removable).
        checks: The verdicts known, and the checker for pairs asked now.
        policy: Keeper policy (`keeper.POLICIES`).
        prefer: Folders whose files are kept first.
        on_cluster: Called after each cluster (a progress bar).
    """
    ids_of = {record.path: record.id for record in records.values()}
    links = [(ids_of[pair.a], ids_of[pair.b]) for pair in pairs]
    linked: dict[int, list[int]] = {}
    for a, b in links:
        linked.setdefault(a, []).append(b)
    result = Grouping()
    pending = _clusters(sorted({node for link in links for node in link}), links)
    ranks = KeeperRank()
    while pending:
        cluster = pending.pop()
        members = [records[node] for node in cluster]
        group, left = _one_group(members, checks, policy, prefer, result.related, ranks)
        if group is not None:
            result.groups.append(group)
        staying = set(left)
        pending += _clusters(left, [(a, b) for a in left for b in linked.get(a, ()) if b in staying])
        if on_cluster is not None:
            on_cluster()
    result.groups.sort(key=lambda group: (-len(group.files), group.files))
    result.related.sort(key=lambda pair: (pair.a, pair.b))
    return result


def _one_group(
    members: list[ImageRecord],
    checks: PairChecks,
    policy: str,
    prefer: Sequence[str | os.PathLike],
    related: list[RelatedPair],
    ranks: KeeperRank | None = None,
) -> tuple[DuplicateGroup | None, list[int]]:
    """The group around one cluster's keeper, and the ids of the members not in it."""
    ranks = ranks or KeeperRank()
    contents: dict[str, list[ImageRecord]] = {}
    for record in members:  # files without a hash are their own content
        contents.setdefault(record.content_hash or f"row {record.id}", []).append(record)
    standing = {key: _first_copy(copies, ranks) for key, copies in contents.items()}
    choice = keeping.choose(list(standing.values()), checks, policy, prefer)
    kept_content = next(key for key, record in standing.items() if record.id == choice.record.id)
    keeper = _kept_among(contents[kept_content], choice.record, prefer, ranks)
    removable = [record for record in contents[kept_content] if record.id != keeper.id]
    unchecked: list[ImageRecord] = []
    left: list[int] = []
    for key, record in standing.items():
        if key == kept_content:
            continue
        if not checks.enabled and (record.path, keeper.path) not in checks and (keeper.path, record.path) not in checks:
            unchecked += contents[key]  # a candidate the run chose not to check: shown, never removable
            continue
        verdict = checks(record.path, keeper.path)
        if verdict.verified and verdict.contains(True):
            removable += contents[key]
            continue
        related.append(_related(record, keeper, verdict))
        left += [copy.id for copy in contents[key]]
    if not removable and not unchecked:
        return None, left
    files = [keeper, *removable, *unchecked]
    return (
        DuplicateGroup(
            files=sorted(record.path for record in files),
            keeper=keeper.path,
            removable=sorted(record.path for record in removable),
            exact=len({record.content_hash for record in files}) == 1 and bool(keeper.content_hash),
            keeper_reason=choice.reason if len(standing) > 1 else _exact_reason(contents[kept_content], prefer),
        ),
        left,
    )


def _first_copy(copies: list[ImageRecord], ranks: KeeperRank | None = None) -> ImageRecord:
    """The copy of one content that stands for it: the oldest, then the shortest path; a file in a folder
    of moved-aside files, or a symbolic link, only when no other copy is there (`moved_aside.KeeperRank`)."""
    if len(copies) == 1:
        return copies[0]
    ranks = ranks or KeeperRank()
    return min(copies, key=lambda record: (ranks.rank(record.path), record.mtime_ns, len(record.path), record.path))


def _kept_among(
    copies: list[ImageRecord],
    chosen: ImageRecord,
    prefer: Sequence[str | os.PathLike],
    ranks: KeeperRank | None = None,
) -> ImageRecord:
    """Of identical files, the one under a preferred folder if any (unless only moved-aside files or
    symbolic links are there while `chosen` is neither), else `chosen`."""
    if prefer:
        ranks = ranks or KeeperRank()
        preferred = [record for record in copies if keeping.is_under(record.path, prefer)]
        if preferred and chosen not in preferred:
            first = _first_copy(preferred, ranks)
            if ranks.rank(first.path) <= ranks.rank(chosen.path):
                return first
    return chosen


def _exact_reason(copies: list[ImageRecord], prefer: Sequence[str | os.PathLike]) -> str:
    if prefer and any(keeping.is_under(record.path, prefer) for record in copies):
        return "identical files: under a preferred folder, then the oldest, then the shortest path"
    return "identical files: the oldest, then the shortest path"


def shared_regions(checks: PairChecks, listed: Sequence[RelatedPair]) -> list[RelatedPair]:
    """The checked pairs that share a region only (`Verdict.related`) and are not `listed` yet."""
    seen = {frozenset((pair.a, pair.b)) for pair in listed}
    found = []
    for (first, second), verdict in sorted(checks.known.items()):
        if verdict.related and frozenset((first, second)) not in seen:
            seen.add(frozenset((first, second)))
            reason = f"shares a region only ({verdict.covered_a:.0%} of it in the other, {verdict.covered_b:.0%} back)"
            found.append(RelatedPair(first, second, reason, verdict.covered_a, verdict.covered_b, verdict.inliers))
    return found


def _related(record: ImageRecord, keeper: ImageRecord, verdict: Verdict) -> RelatedPair:
    """Why `record` is not removable in favour of `keeper`."""
    if verdict.error:
        reason = f"not checked: {verdict.error_path + ': ' if verdict.error_path else ''}{verdict.error}"
    elif verdict.verified:
        reason = f"a copy that shows more than the kept file ({verdict.covered_a:.0%} of it is inside)"
    elif verdict.related:
        reason = f"shares a region only ({verdict.covered_a:.0%} of it in the kept file, {verdict.covered_b:.0%} back)"
    elif verdict.inliers == 0 and verdict.matches == 0 and not verdict.covered_a:
        reason = "linked through other files only (not checked against the kept file)"
    else:
        reason = "linked through other files only (its check against the kept file failed)"
    return RelatedPair(
        a=record.path,
        b=keeper.path,
        reason=reason,
        covered_a=verdict.covered_a,
        covered_b=verdict.covered_b,
        inliers=verdict.inliers,
    )
