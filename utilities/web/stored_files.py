"""The files of stored rows, served only while they are still what was indexed, and opened safely.

A row's file is looked up by the row's id (never by a path from a request) and checked against the
row's file facts: a regular file of the stored size and modification time. `StoredFiles.open` then
opens it without following a swap: it opens the path, and refuses the file unless the opened one
is the very file (device and inode) that was checked. The image and the thumbnail routes both read
through it, so neither serves a file put in the path's place after the check.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from typing import Any, BinaryIO

from utilities.records import ImageRecord


class StoredFiles:
    """Rows' files by row id, checked against the rows' file facts (thread-safe).

    Args:
        store: The `ImageCollection` whose rows are served.
        cache_size: Rows whose path and file facts are kept in memory (each is read again once
            when its file does not match, in case the row changed since).

    Example:
        >>> files = StoredFiles(store)  # doctest: +SKIP
        >>> handle, status = files.open(row_id)  # doctest: +SKIP
        >>> with handle:  # doctest: +SKIP
        ...     first = handle.read(16)
    """

    def __init__(self, store: Any, cache_size: int = 20_000) -> None:
        self.store = store
        self._rows: OrderedDict[int, ImageRecord] = OrderedDict()
        self._lock = threading.Lock()
        self._cache_size = cache_size

    def check(self, row_id: int) -> tuple[str, os.stat_result]:
        """The file of row `row_id` and its `stat`, if it is still what was indexed.

        Still what was indexed: a regular file (a link is followed) of the row's stored size and
        modification time. Rows written without file facts (size 0, such as precomputed vectors)
        are served only if their path is a regular file and not a link.

        Raises:
            KeyError: No row has this id.
            FileNotFoundError: The file is gone, or is no longer what was indexed (the reason in words).
        """
        for attempt in range(2):  # a cached row may be older than the file: read it again once
            record = self._record(row_id, cached=attempt == 0)
            try:
                status = os.stat(record.path)
            except OSError:
                raise FileNotFoundError(f"the file of row {row_id} is gone from this machine") from None
            if not stat.S_ISREG(status.st_mode):
                raise FileNotFoundError(f"the file of row {row_id} is not a regular file")
            if not record.file_size and not record.mtime_ns:
                if os.path.islink(record.path):
                    raise FileNotFoundError(f"row {row_id} has no file facts to check, and its path is a link")
                return record.path, status
            if (status.st_size, status.st_mtime_ns) == (record.file_size, record.mtime_ns):
                return record.path, status
        raise FileNotFoundError(f"the file of row {row_id} changed since it was indexed: index its folder again")

    def open(self, row_id: int) -> tuple[BinaryIO, os.stat_result]:
        """The file of row `row_id`, checked (`check`) and open for reading, with its `stat`.

        The caller closes the file. What is open is the file that was checked: if another took
        its path in between (another device or inode), it is refused. Opening never blocks (a
        FIFO put in the path's place is refused, not waited on).

        Raises:
            KeyError: No row has this id.
            FileNotFoundError: As `check`, or the file was replaced while it was opened.
        """
        path, status = self.check(row_id)
        try:
            handle = open(path, "rb", opener=_without_blocking)  # noqa: SIM115 - the caller closes it
        except OSError:
            raise FileNotFoundError(f"the file of row {row_id} is gone from this machine") from None
        opened = os.fstat(handle.fileno())
        if (opened.st_dev, opened.st_ino) != (status.st_dev, status.st_ino):  # swapped since it was checked
            handle.close()
            raise FileNotFoundError(f"the file of row {row_id} changed while it was read")
        return handle, status

    def _record(self, row_id: int, cached: bool) -> ImageRecord:
        from utilities.milvus.rows import RECENT

        with self._lock:
            record = self._rows.get(row_id) if cached else None
        if record is not None:
            return record
        found = self.store.records([row_id], consistency=RECENT)
        if not found:
            raise KeyError(row_id)
        with self._lock:
            self._rows[row_id] = found[0]
            while len(self._rows) > self._cache_size:
                self._rows.popitem(last=False)
        return found[0]


def _without_blocking(path: str, flags: int) -> int:
    return os.open(path, flags | getattr(os, "O_NONBLOCK", 0))  # not on Windows, which has no FIFOs to fear
