"""The web server's limits (upload size, neighbours per request, uploads waiting for the model) and
the words of the errors that enforce them."""

from __future__ import annotations

MAX_UPLOAD_BYTES = 20 * 1024 * 1024
"""Largest accepted upload (20 MB): bigger requests get a 413, as soon as the cap is passed."""

MULTIPART_OVERHEAD = 64 * 1024
"""What a request body may hold beyond the upload itself (the multipart form's other parts)."""

MAX_K = 100
"""Most neighbours one request may ask for."""

MAX_WAITING_UPLOADS = 8
"""Uploads that may wait for the model at once; more get a 503 with `Retry-After`. Measured with
`benchmarks/web_load.py` (8 clients, 2-core machine): with 4, a client that backed off after a
503 kept losing its turn to the others (26 requests retried 198 times, the slowest waited 37 s);
8 leaves room for a few busy clients and still holds at most 9 of the server's threads."""

RETRY_AFTER_SECONDS = 2
"""What a 503 for a busy model tells the client to wait."""


def too_large(limit: int) -> str:
    """The 413's message for an upload cap of `limit` bytes, in MB, KB or bytes (`size_text`: never "0 MB").

    Example:
        >>> too_large(256 * 1024)
        'the upload is larger than 256 KB: choose a smaller image'
    """
    return f"the upload is larger than {size_text(limit)}: choose a smaller image"


def size_text(count: int) -> str:
    """`count` bytes in the largest unit that keeps it at 1 or more, with at most one decimal.

    Example:
        >>> [size_text(n) for n in (20 * 1024 * 1024, 1536 * 1024, 256 * 1024, 1000)]
        ['20 MB', '1.5 MB', '256 KB', '1000 bytes']
    """
    for unit, scale in (("MB", 1024 * 1024), ("KB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f}".removesuffix(".0") + f" {unit}"
    return f"{count} bytes"
