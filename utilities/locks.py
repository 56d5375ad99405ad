"""Exclusive locks held on small files of their own, which are never deleted.

Two locks use this: the Milvus Lite owner lock (one process per Lite file, held while a
connection is open) and the mapping lock (one writer of a mapping file at a time). Where
`fcntl` does not exist (Windows) locking does nothing.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import IO, Any

POLL_SECONDS = 0.25


class FileLock:
    """An exclusive lock on `path` (created if needed).

    Args:
        path: The lock file.
        per_process: POSIX record locks (`lockf`), which belong to the process: every
            handle of one process shares them, as Milvus Lite shares one file between
            the collections of a process. Otherwise `flock`, which excludes every other
            open handle, threads of the same process included.

    Example:
        >>> with FileLock(Path(tempfile.mkdtemp()) / "x.lock"):  # doctest: +SKIP
        ...     pass
    """

    def __init__(self, path: str | os.PathLike, per_process: bool = False) -> None:
        self.path = Path(path)
        self.per_process = per_process
        self._handle: IO[str] | None = None

    def acquire(self, timeout: float | None = None) -> bool:
        """Take the lock, waiting at most `timeout` seconds (None: as long as it takes).

        Returns:
            True once held; False when `timeout` passed first.
        """
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a")  # noqa: SIM115 - held until release()
        lock: Any = fcntl.lockf if self.per_process else fcntl.flock
        if timeout is None:
            lock(handle, fcntl.LOCK_EX)
            self._handle = handle
            return True
        started = time.monotonic()
        while True:
            try:
                lock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                self._handle = handle
                return True
            except OSError:
                if time.monotonic() - started >= timeout:
                    handle.close()
                    return False
                time.sleep(POLL_SECONDS)

    def release(self) -> None:
        """Let go of the lock (closing the handle releases it)."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._handle is not None

    def __enter__(self) -> FileLock:
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def lock_path_beside(path: str | os.PathLike, suffix: str) -> Path:
    """`.<name><suffix>` in the folder of `path` (absolute): where its lock lives.

    Example:
        >>> lock_path_beside("/data/db/milvus.db", ".owner.lock").as_posix()
        '/data/db/.milvus.db.owner.lock'
    """
    target = Path(path).expanduser().absolute()
    return target.with_name(f".{target.name}{suffix}")
