"""Planning an indexing run: which files are new, changed or unchanged, and which new ones are stored already.

Planning goes in steps of `PLAN_FILES_PER_STEP` files, each looked up by id in one read, so that
`indexing.pipeline.index_paths` can decode and embed the files of the first steps while later steps are
still being planned (`iter_planned_steps`, run in a thread beside the model).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from tqdm.auto import tqdm

from utilities.hashing import file_hash, hash_files
from utilities.ids import path_id
from utilities.milvus.collection import ImageCollection
from utilities.milvus.rows import RECENT
from utilities.records import ImageRecord

__all__ = [
    "COPY_LOOKUP_FILES",
    "LOOKUPS_IN_FLIGHT",
    "PLAN_FILES_PER_STEP",
    "Plan",
    "PlannedStep",
    "find_stored_copies",
    "iter_planned_steps",
    "iter_sorted_steps",
    "plan_run",
    "reuse_stored_vectors",
    "sort_step",
]

PLAN_FILES_PER_STEP = 10_000
"""Files stat'ed and looked up by id per step of planning (one request to Milvus each)."""

LOOKUPS_IN_FLIGHT = 2
"""Planning's reads waiting on Milvus at a time, while this thread stats the files of the next step."""

COPY_LOOKUP_FILES = 10_000
"""New files hashed and looked up by content together: one Strong request of hashes (~0.4 s on a Milvus 2.3
server whatever its size), so new files scattered over many steps wait for each other instead of costing a
request per step."""


@dataclass
class Plan:
    """What a run does with each file, decided before it is decoded.

    Attributes:
        stats: `(size, mtime_ns)` of every file planned so far.
        hashes: Content hashes computed so far (of the new files; each file is read once).
        new: Files with no row yet: embedded, or given the vector of a stored copy.
        changed: Files whose size or modification time differ from their row: embedded again.
        unchanged: How many files match their row: skipped.
        stored_rows: Rows in the collection when the run was planned (an exact count).
    """

    stats: dict[str, tuple[int, int]]
    stored_rows: int = 0
    hashes: dict[str, str] = field(default_factory=dict)
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def record(self, path: str, vector: np.ndarray) -> ImageRecord:
        """The row to write for `path` (hashing it now if the plan has not yet)."""
        size, mtime_ns = self.stats.get(path, (0, 0))
        digest = self.hashes.get(path) or file_hash(path)  # changed files were not hashed yet
        return ImageRecord(path_id(path), path, size, mtime_ns, digest, vector)


@dataclass
class PlannedStep:
    """What one step of planning settled, and what it leaves to embed.

    Attributes:
        to_embed: Files to decode and embed (new ones without a stored copy, and changed ones).
        changed: The changed files among `to_embed`.
        unchanged: Files skipped: their rows match.
        added: New files given the vector of a stored copy (a copy of the file).
        moved: New files given the vector of a stored copy whose file is gone (its row was deleted).
        copied: The files given a stored copy's vector (their rows are written already).
        deleted: Ids of the rows deleted: copies whose file is gone.
    """

    to_embed: list[str]
    changed: list[str] = field(default_factory=list)
    unchanged: int = 0
    added: int = 0
    moved: int = 0
    copied: list[str] = field(default_factory=list)
    deleted: list[int] = field(default_factory=list)

    @property
    def settled(self) -> int:
        """Files this step finished without embedding them."""
        return self.unchanged + self.added + self.moved

    @property
    def files(self) -> int:
        """Files this step planned: those it settled and those it leaves to embed."""
        return self.settled + len(self.to_embed)


def file_stats(path: str | os.PathLike) -> tuple[int, int]:
    """`(size, mtime_ns)` of a file, `(0, 0)` if it cannot be read."""
    try:
        status = os.stat(path)
    except OSError:
        return 0, 0
    return int(status.st_size), int(status.st_mtime_ns)


def iter_sorted_steps(
    plan: Plan, paths: Sequence[str], ids: Sequence[int], store: ImageCollection
) -> Iterator[tuple[list[str], list[str], list[str]]]:
    """Sort the files step by step into the plan; yield each step's `(files, new, changed)`, in order.

    With no row stored (`plan.stored_rows == 0`) every file is new and nothing is read. Otherwise
    each step is looked up by id in one read of the rows' sizes and times
    (`ImageCollection.file_stats`), `LOOKUPS_IN_FLIGHT` at a time, while this thread stats the
    files of the next step.

    Reading every row in pages instead was measured slower up to 100,000 rows on the server
    (unchanged re-run 98 and 65 µs/file against 28 by id, `benchmarks/results/scale-server-read-all-rows.md`);
    at 1,281,167 sealed rows, two lookups in flight read 8.4-10.7 µs/row and pages 9.4-9.9
    (`benchmarks/results/scale-server-imagenet-planning.md`).
    """
    pending: deque[tuple[list[str], list[int], Future[dict[int, tuple[int, int]]]]] = deque()
    with ThreadPoolExecutor(LOOKUPS_IN_FLIGHT, thread_name_prefix="planning") as pool:
        for start in range(0, len(paths), PLAN_FILES_PER_STEP):
            part = list(paths[start : start + PLAN_FILES_PER_STEP])
            part_ids = list(ids[start : start + PLAN_FILES_PER_STEP])
            if plan.stored_rows:
                # Session consistency (`milvus.rows.RECENT`): the Strong count of the plan has
                # brought the server up to date, and a row written since by another process that
                # looks missing only costs an upsert of the same id.
                pending.append((part, part_ids, pool.submit(store.file_stats, part_ids, RECENT)))
            plan.stats.update(zip(part, map(file_stats, part), strict=True))
            if not plan.stored_rows:
                plan.new.extend(part)
                yield part, part, []
            last = start + PLAN_FILES_PER_STEP >= len(paths)
            while len(pending) >= LOOKUPS_IN_FLIGHT or (pending and last):
                done_paths, done_ids, lookup = pending.popleft()
                yield done_paths, *sort_step(plan, done_paths, done_ids, lookup.result())


def sort_step(
    plan: Plan, paths: Sequence[str], ids: Sequence[int], stored: dict[int, tuple[int, int]]
) -> tuple[list[str], list[str]]:
    """Sort one step of files (stat'ed already) into the plan's new, changed and unchanged.

    Args:
        plan: The plan to add to.
        paths: The step's files.
        ids: Their ids.
        stored: `(file_size, mtime_ns)` of their stored rows, by id (from `ImageCollection.file_stats`).

    Returns:
        The step's `(new, changed)` files.
    """
    new: list[str] = []
    changed: list[str] = []
    for path, file_id in zip(paths, ids, strict=True):
        stat = stored.get(file_id)
        if stat is None:
            new.append(path)
        elif stat == plan.stats[path]:
            plan.unchanged += 1
        else:
            changed.append(path)
    plan.new.extend(new)
    plan.changed.extend(changed)
    return new, changed


def plan_run(
    paths: Sequence[str], store: ImageCollection, progress: bool = False, ids: list[int] | None = None
) -> Plan:
    """Sort files into new, changed and unchanged by their rows' size and modification time.

    One exact count comes first (Strong: after a server restart a fresh client's Session read can
    run ahead of the server's replay of its log and see no rows). With no row stored every file
    is new and nothing more is read (a first run into an empty collection); otherwise see
    `iter_sorted_steps`.

    Args:
        paths: Stored paths (`ids.stored_path`), each once.
        store: The collection.
        progress: Show a tqdm bar.
        ids: `ids.path_id` of each path, if the caller has them already.
    """
    plan = Plan(stats={}, stored_rows=store.count())
    ids = [path_id(path) for path in paths] if ids is None else ids
    with tqdm(total=len(paths), desc="planning", unit="file", disable=not progress) as bar:
        for files, _new, _changed in iter_sorted_steps(plan, paths, ids, store):
            bar.update(len(files))
    return plan


def find_stored_copies(
    plan: Plan, new: Sequence[str], store: ImageCollection, progress: bool = False
) -> dict[str, ImageRecord]:
    """For each new file whose content is already stored (under another path), that row, with its vector.

    Hashes the files in parallel (kept in `plan.hashes` for the write). Reads only.
    When the collection was empty (`plan.stored_rows == 0`), no copy can exist: nothing is hashed
    here, and each file is hashed as its row is written, in a writer thread, beside the model
    (`Plan.record`), instead of in a pass before the first batch.
    """
    if not new or plan.stored_rows == 0:
        return {}
    hashes = hash_files(list(new), progress=progress)
    plan.hashes.update(hashes)
    by_hash = {record.content_hash: record for record in store.records_by_hash(list(hashes.values()), True)}
    return {path: by_hash[hashes[path]] for path in new if hashes[path] in by_hash}


def reuse_stored_vectors(
    copies: dict[str, ImageRecord], plan: Plan, store: ImageCollection, current: set[int]
) -> tuple[int, int, list[int]]:
    """Write each new file with its stored copy's vector, and delete the copies whose file is gone.

    Args:
        copies: From `find_stored_copies`.
        plan: The run's plan (sizes, times and hashes of the new files).
        store: The collection.
        current: Ids of every file of this run (never deleted).

    Returns:
        `(added, moved, deleted)`: files that got a copy's vector but whose copy stays, files
        whose copy was deleted because its file is gone (a moved or renamed file), and the
        deleted copies' ids.
    """
    if not copies:
        return 0, 0, []
    store.write([plan.record(path, copy.vector) for path, copy in copies.items()])
    gone = {copy.id for copy in copies.values() if not os.path.exists(copy.path)} - current
    store.delete(sorted(gone))
    moved = sum(1 for copy in copies.values() if copy.id in gone)
    return len(copies) - moved, moved, sorted(gone)


def iter_planned_steps(
    plan: Plan, paths: Sequence[str], ids: Sequence[int], store: ImageCollection, current: set[int]
) -> Iterator[PlannedStep]:
    """Plan the run step by step: yield what each step leaves to embed, in the order of `paths`.

    Changed files come out with their step. New files wait until `COPY_LOOKUP_FILES` of them (or
    the last step) are hashed and looked up by content together; those found stored get the
    copy's vector at once (`reuse_stored_vectors`), the others come out to be embedded. In an
    empty collection no copy can exist, and new files come out with their step.

    Args:
        plan: A plan holding the collection's row count (`Plan(stats={}, stored_rows=store.count())`).
        paths: Stored paths, each once.
        ids: Their ids.
        store: The collection.
        current: Ids of every file of this run (never deleted as a moved file's old row).
    """
    waiting: list[str] = []
    for files, new, changed in iter_sorted_steps(plan, paths, ids, store):
        step = PlannedStep(to_embed=list(changed), changed=changed, unchanged=len(files) - len(new) - len(changed))
        waiting.extend(new)
        if len(waiting) >= COPY_LOOKUP_FILES or not plan.stored_rows:
            step = _with_new_files(step, waiting, plan, store, current)
            waiting = []
        yield step
    if waiting:
        yield _with_new_files(PlannedStep(to_embed=[]), waiting, plan, store, current)


def _with_new_files(
    step: PlannedStep, new: list[str], plan: Plan, store: ImageCollection, current: set[int]
) -> PlannedStep:
    copies = find_stored_copies(plan, new, store)
    step.added, step.moved, step.deleted = reuse_stored_vectors(copies, plan, store, current)
    step.copied = list(copies)
    step.to_embed = [path for path in new if path not in copies] + step.to_embed
    return step
