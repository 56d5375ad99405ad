"""Copies across splits: a test image whose copy (exact, or edited) sits in train.

The candidates are those `duplicates` finds (`duplicates.candidates.find_candidates`: one read of the
collection, exact copies by content hash, near ones by a k-NN search of the stored vectors through
Milvus, scored again exactly); only pairs whose two files are in different splits are kept here. Near
pairs are checked as `duplicates` checks them (`duplicates.verification.compare`, in worker processes):
keypoints, a geometric fit, then the two laid over each other. A near pair stands for the same pair
between exact copies of either file, and each pair of contents is checked once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

from utilities.audit.report import Leak
from utilities.audit.splits import Place
from utilities.duplicates.candidates import Candidates
from utilities.duplicates.finder import verify_pairs  # the check in worker processes, with a bar
from utilities.duplicates.verification import Verdict


@dataclass
class LeakSearch:
    """The leaks found, and what the check turned down or could not read.

    Attributes:
        leaks: Pairs across splits, exact copies first, then near ones by cosine.
        rejected: Near pairs across splits that the check found not to be copies.
        unreadable: Files the check could not read, with the reason.
    """

    leaks: list[Leak] = field(default_factory=list)
    rejected: int = 0
    unreadable: dict[str, str] = field(default_factory=dict)


def _across(places: dict[int, Place], first: int, second: int) -> bool:
    """Whether the two rows are in two different splits."""
    a, b = places.get(first), places.get(second)
    return a is not None and b is not None and None not in (a.split, b.split) and a.split != b.split


def _leak(candidates: Candidates, places: dict[int, Place], rows: tuple[int, int], **found: object) -> Leak:
    """The `Leak` between two rows, the one whose (split, path) sorts first as `a`."""
    first, second = sorted(rows, key=lambda row: (places[row].split, candidates.records[row].path))
    return Leak(a=candidates.records[first].path, b=candidates.records[second].path, **found)  # type: ignore[arg-type]


def exact_leaks(candidates: Candidates, places: dict[int, Place]) -> list[Leak]:
    """Pairs of rows with the same content in different splits (identical bytes: verified without a check)."""
    return [
        _leak(candidates, places, pair, kind="exact", cosine=1.0, verified=True)
        for ids in candidates.exact
        for pair in combinations(ids, 2)
        if _across(places, *pair)
    ]


def near_pairs(candidates: Candidates, places: dict[int, Place]) -> dict[tuple[int, int], float]:
    """The candidates' near pairs in different splits and of different contents, each standing also for the
    same pair between exact copies of either file (copies share a vector: a search lists one of them)."""
    copies = {row: ids for ids in candidates.exact for row in ids}
    records = candidates.records
    pairs: dict[tuple[int, int], float] = {}
    for (a, b), cosine in candidates.near.items():
        for first in copies.get(a, [a]):
            for second in copies.get(b, [b]):
                same = records[first].content_hash and records[first].content_hash == records[second].content_hash
                if _across(places, first, second) and not same:
                    key = (min(first, second), max(first, second))
                    pairs[key] = max(cosine, pairs.get(key, -1.0))
    return pairs


def _contents(candidates: Candidates, pair: tuple[int, int]) -> tuple[str, str]:
    """What a check is made once for: the pair's two content hashes (paths where a hash is unknown), sorted."""
    first, second = (candidates.records[row].content_hash or candidates.records[row].path for row in pair)
    return (first, second) if first <= second else (second, first)


def _check_order(candidates: Candidates, pair: tuple[int, int]) -> tuple[str, str]:
    """The two paths in content-hash order (as `duplicates` checks a pair: the check is not quite symmetric)."""
    first, second = sorted((candidates.records[row] for row in pair), key=lambda r: (r.content_hash, r.path))
    return first.path, second.path


def find_leaks(
    candidates: Candidates,
    places: dict[int, Place],
    verify: bool = True,
    workers: int | None = None,
    progress: bool = False,
) -> LeakSearch:
    """Exact and near copies across splits, the near ones checked.

    Args:
        candidates: What `duplicates.candidates.find_candidates` found (near pairs at its threshold).
        places: Each row's split and class, by id.
        verify: Check near pairs with keypoints (OpenCV); False keeps each with `verified` None.
        workers: Processes for the check (default: one a core).
        progress: Show a progress bar for the check.

    Returns:
        The `LeakSearch`, leaks sorted most certain first.
    """
    found = LeakSearch(leaks=exact_leaks(candidates, places))
    near = near_pairs(candidates, places)
    contents = {pair: _contents(candidates, pair) for pair in near}
    to_check: dict[tuple[str, str], tuple[int, int]] = {}
    for pair, key in contents.items():
        to_check.setdefault(key, pair)
    verdicts: dict[tuple[str, str], Verdict] = {}
    if verify:
        checked = verify_pairs([_check_order(candidates, pair) for pair in to_check.values()], workers, progress)
        verdicts = dict(zip(to_check, checked, strict=True))
    for verdict in verdicts.values():
        if verdict.error:
            found.unreadable[verdict.error_path] = verdict.error
    for pair, cosine in near.items():
        verdict = verdicts.get(contents[pair])
        if verdict is not None and not verdict.verified:
            found.rejected += 1
            continue
        verified = None if verdict is None else True
        found.leaks.append(_leak(candidates, places, pair, kind="near", cosine=round(cosine, 6), verified=verified))
    found.leaks.sort(key=lambda leak: (leak.kind != "exact", -leak.cosine, leak.a, leak.b))
    return found
