"""`IndexReport`: what an indexing run did, for people (`str`), programs (`as_dict`) and files (`write_failures`)."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

from utilities.images.reader import LoadFailure


@dataclass
class IndexReport:
    """What an indexing run did.

    Attributes:
        added: New files embedded (or given the vector of an identical file) and written.
        updated: Files whose size or modification time changed: embedded again, their row replaced.
        moved: Files found under a new path with the content of a row whose file is gone:
            the row now has the new path, and nothing was embedded.
        unchanged: Files already stored with the same size and modification time: skipped.
        removed: Rows deleted because their file is gone (with `prune`).
        failed: Files that could not be used, with reasons.
        seconds: Wall time of the run.
        collection: Collection name.
        decode_nodes: Runs on Ray: images decoded on each Ray node (by node id).
        embed_nodes: Runs on Ray: images embedded and written on each Ray node.
        written_rows: `(id, path, file_size, mtime_ns)` of each row the run wrote (for patching
            the mapping file instead of rebuilding it: `catalog.update_mapping`).
        deleted_ids: Ids of the rows the run deleted (moved files' old rows, pruned rows).
    """

    added: int = 0
    updated: int = 0
    moved: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0
    collection: str = ""
    decode_nodes: dict[str, int] = field(default_factory=dict)
    embed_nodes: dict[str, int] = field(default_factory=dict)
    written_rows: list[tuple[int, str, int, int]] = field(default_factory=list, repr=False)
    deleted_ids: list[int] = field(default_factory=list, repr=False)

    @property
    def indexed(self) -> int:
        """Rows written in this run: added + updated + moved."""
        return self.added + self.updated + self.moved

    @property
    def already_present(self) -> int:
        """Same as `unchanged`."""
        return self.unchanged

    @property
    def total(self) -> int:
        """Files considered: indexed + unchanged + failed."""
        return self.indexed + self.unchanged + len(self.failed)

    def as_dict(self) -> dict[str, object]:
        """The counts and failures as plain data (for JSON)."""
        return {
            "collection": self.collection,
            "indexed": self.indexed,
            "added": self.added,
            "updated": self.updated,
            "moved": self.moved,
            "unchanged": self.unchanged,
            "already_present": self.unchanged,
            "removed": self.removed,
            "failed": [{"path": f.path, "reason": f.reason} for f in self.failed],
            "seconds": round(self.seconds, 3),
            **({"decode_nodes": self.decode_nodes, "embed_nodes": self.embed_nodes} if self.embed_nodes else {}),
        }

    def __str__(self) -> str:
        lines = [
            f"{self.collection}: indexed {self.indexed} (added {self.added}, updated {self.updated}, "
            f"moved {self.moved}), already present {self.unchanged}, removed {self.removed}, "
            f"failed {len(self.failed)} ({self.seconds:.1f} s)"
        ]
        if self.embed_nodes:
            lines.append(f"  on Ray: decoded on {len(self.decode_nodes)} nodes, embedded on {len(self.embed_nodes)}")
        lines += [f"  failed: {f.path}: {f.reason}" for f in self.failed[:20]]
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more (see the failure report)")
        return "\n".join(lines)

    def write_failures(self, path: str | os.PathLike) -> Path:
        """Write the failed files and reasons to a CSV file (`path`, `reason`)."""
        destination = Path(path)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with destination.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path", "reason"])
            writer.writerows((f.path, f.reason) for f in self.failed)
        return destination
