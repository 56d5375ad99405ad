"""Hashing a file's bytes in blocks (content hashes of images, checksums of downloads)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

BLOCK_BYTES = 1 << 20


def digest_file(path: str | os.PathLike, algorithm: str = "blake2b", **options: Any) -> str:
    """Hex digest of a file's bytes, read in 1 MiB blocks.

    Args:
        path: The file.
        algorithm: A `hashlib` name (`blake2b`, `md5`, ...).
        **options: Passed to the constructor (for example `digest_size=16` for BLAKE2b).

    Raises:
        OSError: The file cannot be read.
    """
    digest = hashlib.new(algorithm, **options)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(BLOCK_BYTES), b""):
            digest.update(block)
    return digest.hexdigest()


def file_hash(path: str | os.PathLike) -> str:
    """BLAKE2b-128 of a file's bytes, hex: the content hash stored with each image (empty if unreadable).

    Example:
        >>> len(file_hash(__file__))
        32
    """
    try:
        return digest_file(path, "blake2b", digest_size=16)
    except OSError:
        return ""


def hash_files(paths: Sequence[str], workers: int | None = None, progress: bool = False) -> dict[str, str]:
    """`file_hash` of many files, read and hashed in parallel threads (hashlib and file reads
    release the GIL), with an optional progress bar.

    Example:
        >>> list(hash_files([__file__]).values()) == [file_hash(__file__)]
        True
    """
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    hashes: dict[str, str] = {}
    with (
        ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 2) * 2)) as pool,
        tqdm(total=len(paths), desc="hashing", unit="file", disable=not progress) as bar,
    ):
        for path, digest in zip(paths, pool.map(file_hash, paths, chunksize=64), strict=True):
            hashes[path] = digest
            bar.update()
    return hashes
