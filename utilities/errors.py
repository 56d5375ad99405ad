"""The package's exceptions: one root, a few specific subclasses.

Every error raised on purpose by `utilities` derives from `ImageSearchError`, so a
caller can catch them all with one `except` clause and still tell them apart.
"""

from __future__ import annotations


class ImageSearchError(Exception):
    """Root of every error this package raises on purpose."""


class ImageLoadError(ImageSearchError):
    """An image file could not be read or decoded.

    Attributes:
        path: The file that failed.
        reason: A short human-readable reason.
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"cannot load image {path!r}: {reason}")
        self.path = path
        self.reason = reason


class CollectionMismatchError(ImageSearchError):
    """An existing collection does not have the schema this package expects."""


class CollectionNotFoundError(ImageSearchError):
    """The named collection does not exist in the Milvus instance."""


class MilvusUnavailableError(ImageSearchError):
    """The Milvus server or Milvus Lite file could not be reached or opened."""


class WeightsError(ImageSearchError):
    """Model weights could not be loaded."""
