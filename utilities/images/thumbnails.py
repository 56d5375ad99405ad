"""Small JPEG previews of stored images, made on the server and kept in a bounded cache."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict
from typing import BinaryIO

from PIL import Image

from utilities.images.decoding import load_image

THUMBNAIL_SIDE = 192
"""Longest side of a thumbnail, in pixels."""


def thumbnail_jpeg(path: str | os.PathLike | BinaryIO, side: int = THUMBNAIL_SIDE, quality: int = 85) -> bytes:
    """A JPEG of the image at `path` (or in a binary file open on it), its longest side at most `side` pixels.

    Raises:
        ImageLoadError: The file is gone or cannot be decoded (Pillow's decompression-bomb guard stays on).

    Example:
        >>> thumbnail_jpeg("photo.jpg")[:2]  # doctest: +SKIP
        b'\\xff\\xd8'
    """
    image = load_image(path, draft_size=side)
    image.thumbnail((side, side), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


class ThumbnailCache:
    """Thumbnails by row id, the most recently used `capacity` of them kept in memory (thread-safe).

    Args:
        capacity: Thumbnails kept (at ~10 KB each, 2,000 is about 20 MB).
        side: Longest side of each thumbnail.

    Example:
        >>> cache = ThumbnailCache(capacity=2)
        >>> len(cache)
        0
    """

    def __init__(self, capacity: int = 2000, side: int = THUMBNAIL_SIDE) -> None:
        self.capacity = capacity
        self.side = side
        self._items: OrderedDict[int, tuple[object, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row_id: int, path: str | BinaryIO, stamp: object = None) -> bytes:
        """The thumbnail of row `row_id`, whose file is `path` (made on a miss).

        Args:
            row_id: The row.
            path: Its file, or a binary file open on it (read only on a miss).
            stamp: What tells the file's version, for example `(size, mtime_ns)`: a thumbnail
                kept for another stamp is made again.
        """
        with self._lock:
            kept = self._items.get(row_id)
            if kept is not None and kept[0] == stamp:
                self._items.move_to_end(row_id)
                return kept[1]
        data = thumbnail_jpeg(path, self.side)
        with self._lock:
            self._items[row_id] = (stamp, data)
            self._items.move_to_end(row_id)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data

    def __len__(self) -> int:
        return len(self._items)
