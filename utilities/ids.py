"""Stable ids for images: the same path always gets the same id.

Ids are derived from the stored path string, not from insertion order, so
separate runs, resumed runs and machines indexing disjoint shards never collide.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_ID_MASK = (1 << 63) - 1


def stored_path(path: str | os.PathLike) -> str:
    """The form of a path kept in Milvus: absolute, with forward slashes.

    Symbolic links are kept as named (not resolved), so the stored path is the one
    the user sees in their folder.

    Example:
        >>> stored_path("/data/cats/a.jpg")
        '/data/cats/a.jpg'
        >>> stored_path("/data//cats/./a.jpg/")
        '/data/cats/a.jpg'
    """
    if isinstance(path, str) and _is_stored_form(path):
        return path  # already what pathlib would give: 0.3 µs instead of 4 a file, at millions of files
    return Path(path).expanduser().absolute().as_posix()


def _is_stored_form(path: str) -> bool:
    """Whether `path` is an absolute POSIX path that pathlib would leave as it is (no `//`, `/./`, trailing `/`)."""
    return (
        os.sep == "/"
        and path.startswith("/")
        and not path.startswith("//")
        and "//" not in path
        and "/./" not in path
        and not path.endswith(("/", "/."))
    )


def path_id(path: str) -> int:
    """A non-negative 63-bit INT64 id from a stored path string (BLAKE2b).

    Example:
        >>> path_id("/data/cats/a.jpg") == path_id("/data/cats/a.jpg")
        True
    """
    digest = hashlib.blake2b(path.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") & _ID_MASK
