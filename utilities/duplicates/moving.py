"""Acting on a duplicate report, safely: moving its removable files into a folder, and undoing it.

`move_removable` moves the files a report lists as removable (`groups[*].removable`) into a
folder DIR, each at its path below the indexed folder (`DIR/<path below the root>`, planned by
`move_planning.plan_moves`). `undo_move` puts them back. Nothing is ever deleted:

- each file is checked again just before it moves: its size, modification time and content hash
  must be those of its stored row (what the search compared), it must not be newer than the report,
  and its keeper must still be there as stored (size, time and content hash), not be the same file
  (one file indexed under two paths, or a link to it) and not lie in a folder of moved-aside files.
  Otherwise it stays where it is, reported as skipped with the reason;
- no file is ever written over: a destination that exists is skipped;
- a file moves as `placing.place` moves it: a hard link then the removal of the old name on one
  filesystem; a synced, checked copy linked into place, then the removal of the source, across
  filesystems;
- the manifest (`DIR/duplicates-move-<time>.json`: the database and collection, each planned move
  with the file's size, modification time, content hash and keeper) is written atomically and synced
  to disk before the first file moves, and again with each move's outcome at the end. Undo needs only
  the plan: it moves back each file found at its destination with the bytes that were moved (and
  whose original place is free), on the same database only, removes what a move stopped half-way
  left beside an intact source, and leaves the rest (reported). So it also repairs a move killed at
  any point, and running it twice changes nothing more. An entry that fails is reported, and the
  others are still undone;
- the collection follows the files: a moved file's row is written under its new path (and the id
  derived from it) with the same vector, hash, size and time, then its old row is deleted; no image
  is embedded. Undo does the reverse; the mapping file is patched with the same rows.

One move or undo at a time uses a folder (a lock file in it: `.duplicates-move.lock`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from utilities.atomic import replaced_atomically, sync_folder
from utilities.config import masked_uri
from utilities.duplicates import placing
from utilities.duplicates.move_planning import PlannedMove, Report, check_file, plan_moves
from utilities.duplicates.moved_aside import LOCK_NAME, MANIFEST_KIND
from utilities.errors import ImageSearchError
from utilities.hashing import file_hash
from utilities.ids import path_id
from utilities.locks import FileLock
from utilities.milvus.collection import ImageCollection

logger = logging.getLogger(__name__)

MANIFEST_VERSION = 2
"""2: the manifest records the `database` (an undo refuses another one)."""
ROWS_PER_UPDATE = 256
"""Files moved between two updates of their rows (a read of their vectors, a write, a delete)."""


@dataclass
class MoveResult:
    """What `move_removable` (or its dry run) or `undo_move` did.

    Attributes:
        action: `"move"`, `"dry run"` or `"undo"`.
        folder: The folder the files go to (undo: come back from).
        manifest: The manifest written (move) or read (undo); None for a dry run or when nothing was to move.
        planned: The moves planned (a dry run: the moves a real run would make now).
        moved: `(from, to)` of each file moved (undo: moved back).
        skipped: Files left where they are, with the reason.
        in_place: Undo: files already at their original place (never moved, or moved back before).
        cleaned: Temporary copies and second names that a stopped move left beside an intact source, removed.
        written_rows: `(id, path, file_size, mtime_ns)` of the rows written under the new paths.
        deleted_ids: Ids of the rows deleted (their files' rows now have the new paths).
        seconds: Wall time.
    """

    action: str
    folder: Path
    manifest: Path | None = None
    planned: list[PlannedMove] = field(default_factory=list)
    moved: list[tuple[str, str]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    in_place: int = 0
    cleaned: list[str] = field(default_factory=list)
    written_rows: list[tuple[int, str, int, int]] = field(default_factory=list, repr=False)
    deleted_ids: list[int] = field(default_factory=list, repr=False)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The result as plain JSON-ready data."""
        return {
            "action": self.action,
            "folder": str(self.folder),
            "manifest": None if self.manifest is None else str(self.manifest),
            "planned": [dataclasses.asdict(move) for move in self.planned],
            "moved": [{"from": old, "to": new} for old, new in self.moved],
            "skipped": self.skipped,
            "in_place": self.in_place,
            "cleaned": self.cleaned,
            "seconds": round(self.seconds, 3),
        }

    def __str__(self) -> str:
        if self.action == "dry run":
            lines = [f"dry run: {len(self.planned)} files would move into {self.folder}; nothing was changed"]
            lines += [f"  {move.source} -> {move.destination}" for move in self.planned]
        elif self.action == "undo":
            lines = [
                f"moved {len(self.moved)} files back from {self.folder}; {self.in_place} were in place already "
                f"({self.seconds:.1f} s)"
            ]
        else:
            lines = [f"moved {len(self.moved)} files into {self.folder} ({self.seconds:.1f} s)"]
        if self.manifest is not None and self.action == "move":
            lines.append(f"manifest: {self.manifest} (undo: python -m utilities duplicates --undo {self.manifest})")
        lines += [f"removed what a stopped move left: {path}" for path in self.cleaned]
        lines += [f"skipped {path}: {reason}" for path, reason in sorted(self.skipped.items())]
        return "\n".join(lines)


def move_removable(
    store: ImageCollection,
    report: Report,
    folder: str | os.PathLike,
    root: str | os.PathLike | None = None,
    dry_run: bool = False,
    progress: bool = False,
    mapping_path: str | os.PathLike | None = None,
) -> MoveResult:
    """Move the removable files of a duplicate report into `folder`, keeping their paths below the root.

    Args:
        store: The collection the report was made on.
        report: A `DuplicateReport`, a saved one as read from its JSON, or that file's path.
        folder: Where the files go (DIR); it must be outside the root.
        root: The indexed folder, whose layout is kept under `folder` (default: the deepest folder
            holding every stored file outside `folder`).
        dry_run: Only check and plan: nothing is moved or written.
        progress: Show progress bars.
        mapping_path: A mapping file to patch with the moved rows (`catalog.update_mapping`).

    Returns:
        A `MoveResult` (moved, skipped with reasons, the manifest).

    Raises:
        FileNotFoundError: `report` is a path and no report is saved there.
        ValueError: `folder` is inside the root, or `report` is not a duplicate report, or one made
            without the keypoint check.
        ImageSearchError: Another move or undo is using `folder`.
    """
    started = time.perf_counter()
    folder = Path(folder).expanduser().absolute()
    planned, skipped = plan_moves(store, report, folder, root)
    result = MoveResult("dry run" if dry_run else "move", folder, skipped=skipped)
    if dry_run:
        hashed: dict[tuple[str, int, int], str] = {}
        for move in tqdm(planned, desc="checking", unit="file", disable=not progress):
            reason = check_file(move, hashed)
            if reason:
                result.skipped[move.source] = reason
            else:
                result.planned.append(move)
        result.seconds = time.perf_counter() - started
        return result
    result.planned = planned
    if planned:
        with _folder_lock(folder):
            _move_planned(store, planned, result, progress)
    _patch_mapping(store, mapping_path, result, progress)
    result.seconds = time.perf_counter() - started
    return result


def undo_move(
    store: ImageCollection,
    manifest: str | os.PathLike,
    progress: bool = False,
    mapping_path: str | os.PathLike | None = None,
) -> MoveResult:
    """Put back every file a move (finished or stopped at any point) took, from its manifest alone.

    A file found at its destination goes back when its original place is free; one whose place is
    taken again stays, reported. Where a stopped move left the file under both names, or a complete
    copy beside its intact source, the second one is removed; temporary copies are removed only if
    their source is there. Rows go back to the original paths. Running it again changes nothing.

    Args:
        store: The collection of the move.
        manifest: The `duplicates-move-*.json` file the move wrote into its folder.
        progress: Show a progress bar.
        mapping_path: A mapping file to patch with the rows moved back.

    Raises:
        FileNotFoundError: No manifest there.
        ValueError: It is not a move manifest, or it was made on another database or collection.
        ImageSearchError: Another move or undo is using the folder.
    """
    started = time.perf_counter()
    path = Path(manifest).expanduser().absolute()
    document = read_manifest(path)
    database = document.get("database")  # absent from a version 1 manifest
    if database is not None and database != database_of(store):
        raise ValueError(
            f"{path} moved files of the database {database}, not {database_of(store)}: undo it with that one "
            f"(--uri {document.get('milvus') or database})"
        )
    if document["collection"] != store.name:
        raise ValueError(
            f"{path} moved files of collection {document['collection']!r}, not {store.name!r}: "
            f"undo it with that collection (--collection {document['collection']})"
        )
    result = MoveResult("undo", Path(document["destination"]), manifest=path)
    entries = [entry for entry in document["moves"] if entry.get("status") != "skipped"]  # those never moved
    rows = _RowMover(store, result)
    with (
        _folder_lock(result.folder),
        tqdm(total=len(entries), desc="moving back", unit="file", disable=not progress) as bar,
    ):
        try:
            folders = {Path(entry[end]).parent for entry in entries for end in ("source", "destination")}
            copies = placing.temporaries(folders)
            for entry in entries:
                source, target = Path(entry["source"]), Path(entry["destination"])
                try:
                    if _move_back(source, target, entry["content_hash"], result):
                        rows.follow(entry["destination"], entry["source"])
                        found = copies.get(target, []) + copies.get(source, [])
                        _remove_copies(source, entry["content_hash"], found, result)
                except Exception as error:  # noqa: BLE001 - reported; the other entries are still undone
                    logger.warning("could not undo the move of %s: %r", source, error)
                    result.skipped[str(source)] = f"could not be undone: {error!r}"
                bar.update()
        finally:
            rows.flush()
    _patch_mapping(store, mapping_path, result, progress)
    result.seconds = time.perf_counter() - started
    return result


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """A manifest written by `move_removable`.

    Raises:
        FileNotFoundError: No file there.
        ValueError: It is not a move manifest.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no move manifest at {path}: give the duplicates-move-*.json file that --move-removable "
            "wrote into its folder"
        )
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"{path} is not a move manifest: {error}") from error
    if not isinstance(document, dict) or document.get("kind") != MANIFEST_KIND or "moves" not in document:
        raise ValueError(f"{path} is not a move manifest written by --move-removable")
    return document


@contextmanager
def _folder_lock(folder: Path) -> Iterator[None]:
    lock = FileLock(folder / LOCK_NAME)
    if not lock.acquire(timeout=0):
        raise ImageSearchError(f"another move or undo is using {folder}: let it finish, then run this again")
    try:
        yield
    finally:
        lock.release()


def _move_planned(store: ImageCollection, planned: list[PlannedMove], result: MoveResult, progress: bool) -> None:
    """Write the manifest, move each file (checked again first), then let the rows follow."""
    result.manifest = _new_manifest_path(result.folder)
    document = {
        "kind": MANIFEST_KIND,
        "version": MANIFEST_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "database": database_of(store),
        "collection": store.name,
        "milvus": store.target.shown,
        "destination": str(result.folder),
        "moves": [{**dataclasses.asdict(move), "status": "planned"} for move in planned],
    }
    _write_manifest(result.manifest, document)
    rows = _RowMover(store, result)
    hashed: dict[tuple[str, int, int], str] = {}
    try:
        with tqdm(total=len(planned), desc="moving", unit="file", disable=not progress) as bar:
            try:
                for move, entry in zip(planned, document["moves"], strict=True):
                    reason = check_file(move, hashed) or _place(move)
                    entry["status"] = "skipped" if reason else "moved"
                    if reason:
                        entry["reason"] = result.skipped[move.source] = reason
                    else:
                        result.moved.append((move.source, move.destination))
                        rows.follow(move.source, move.destination)
                    bar.update()
            finally:
                rows.flush()
    except BaseException:
        logger.error("the move stopped: undo it with python -m utilities duplicates --undo %s", result.manifest)
        raise
    document["finished"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    _write_manifest(result.manifest, document)


def _place(move: PlannedMove) -> str | None:
    """Move one checked file; None when it moved, otherwise why it stays."""
    try:
        placing.place(move.source, move.destination, move.content_hash)
    except FileExistsError:
        return f"{move.destination} exists already: not overwritten"
    except OSError as error:
        return f"could not be moved: {error}"
    return None


def _move_back(source: Path, target: Path, content_hash: str, result: MoveResult) -> bool:
    """Undo one planned move; True when the file is at its original place afterwards."""
    if os.path.lexists(target) and not os.path.lexists(source) and file_hash(target) != content_hash:
        result.skipped[str(source)] = (
            f"{target} does not hold the bytes that were moved (its content hash differs from the manifest's): "
            "left there"
        )
        return False
    if os.path.lexists(source) and os.path.lexists(target):
        if not placing.leftover_at(target, source, content_hash):
            result.skipped[str(source)] = f"its original place is taken by another file: left at {target}"
            return False
        target.unlink()  # the same file under a second name, or a complete copy of the intact source
        result.cleaned.append(str(target))
        result.in_place += 1
    elif os.path.lexists(target):
        try:
            placing.place(target, source)
        except OSError as error:
            result.skipped[str(source)] = f"could not be moved back from {target}: {error}"
            return False
        result.moved.append((str(target), str(source)))
    elif os.path.lexists(source):
        result.in_place += 1
    else:
        result.skipped[str(source)] = f"found neither there nor at {target}"
        return False
    return True


def _remove_copies(source: Path, content_hash: str, copies: list[Path], result: MoveResult) -> None:
    """Remove the temporary copies a stopped move left of a file, once it is at its place with its bytes."""
    if not copies:
        return
    if file_hash(source) != content_hash:
        logger.warning("kept %s: %s no longer holds the bytes that were moved", ", ".join(map(str, copies)), source)
        return
    for copy in copies:
        copy.unlink()
        result.cleaned.append(str(copy))


class _RowMover:
    """Gives the rows of moved files their new paths, `ROWS_PER_UPDATE` files at a time.

    A file's row is read with its vector, written under the new path (its id derives from the path)
    with the same vector, hash, size and time, then the old row is deleted: stopped in between, both
    rows exist, and the next move or undo of the file finishes the job. A file whose old row is gone
    (moved already) is left as it is, so following a move twice is harmless.
    """

    def __init__(self, store: ImageCollection, result: MoveResult) -> None:
        self.store = store
        self.result = result
        self.pending: list[tuple[str, str]] = []

    def follow(self, old: str, new: str) -> None:
        """Note that the file at `old` is now at `new`; the rows are written once enough are noted."""
        self.pending.append((old, new))
        if len(self.pending) >= ROWS_PER_UPDATE:
            self.flush()

    def flush(self) -> None:
        """Write the noted files' rows under their new paths and delete the old ones."""
        pending, self.pending = self.pending, []
        if not pending:
            return
        old_ids = [path_id(old) for old, _ in pending]
        stored = {record.id: record for record in self.store.records(old_ids, with_vectors=True)}
        records = [
            dataclasses.replace(stored[path_id(old)], id=path_id(new), path=new)
            for old, new in pending
            if path_id(old) in stored
        ]
        self.store.write(records)
        gone = sorted({path_id(old) for old, _ in pending} & set(stored))
        self.store.delete(gone)
        self.result.written_rows += [(row.id, row.path, row.file_size, row.mtime_ns) for row in records]
        self.result.deleted_ids += gone


def _new_manifest_path(folder: Path) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    for number in itertools.count(1):
        candidate = folder / f"{MANIFEST_KIND}-{stamp}{'' if number == 1 else f'-{number}'}.json"
        if not candidate.exists():
            return candidate
    raise AssertionError("unreachable")


def database_of(store: ImageCollection) -> str:
    """The database of `store`, as a manifest records it: the Lite file's resolved path, or the server's
    URI without credentials (as `provenance.Source` records it)."""
    target = store.target
    return str(Path(target.uri).expanduser().resolve()) if target.is_lite else masked_uri(target.uri)


def _write_manifest(path: Path, document: dict[str, Any]) -> None:
    """Write the manifest atomically, synced to disk (the file, then its new name in the folder)."""
    with replaced_atomically(path) as temporary, temporary.open("w", encoding="utf-8") as handle:
        handle.write(json.dumps(document, indent=1))
        handle.flush()
        os.fsync(handle.fileno())  # the bytes are on disk before the name replaces the last manifest
    sync_folder(path.parent)


def _patch_mapping(
    store: ImageCollection, mapping_path: str | os.PathLike | None, result: MoveResult, progress: bool
) -> None:
    """Patch the mapping file with the rows written and deleted, as an indexing run does."""
    if mapping_path is None or not (result.written_rows or result.deleted_ids):
        return
    from utilities import catalog

    catalog.update_mapping(store, mapping_path, result.written_rows, result.deleted_ids, progress=progress)
