"""Small JPEG previews of stored images, made on the server and kept in a bounded cache."""

from __future__ import annotations

import io
import os
import threading
from collections import OrderedDict

from PIL import Image

from utilities.images import load_image

THUMBNAIL_SIDE = 192
"""Longest side of a thumbnail, in pixels."""


def thumbnail_jpeg(path: str | os.PathLike, side: int = THUMBNAIL_SIDE, quality: int = 85) -> bytes:
    """A JPEG of the image at `path`, scaled so that its longest side is at most `side` pixels.

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
        self._items: OrderedDict[int, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row_id: int, path: str) -> bytes:
        """The thumbnail of row `row_id`, whose file is `path` (made on a miss)."""
        with self._lock:
            if row_id in self._items:
                self._items.move_to_end(row_id)
                return self._items[row_id]
        data = thumbnail_jpeg(path, self.side)
        with self._lock:
            self._items[row_id] = data
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data

    def __len__(self) -> int:
        return len(self._items)
