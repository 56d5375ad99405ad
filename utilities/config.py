"""Where settings come from: keyword arguments first, environment variables second.

This is the only module that reads the environment.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LITE_PATH = Path("db") / "milvus.db"
"""Milvus Lite file used when no URI is given, relative to the working directory."""

DEFAULT_COLLECTION = "imagenet_collection"
"""Collection name used when none is given."""

URI_ENV = "MILVUS_URI"
TOKEN_ENV = "MILVUS_TOKEN"
CACHE_ENV = "UTILITIES_CACHE_DIR"
"""Where the package keeps what it remembers between commands (see `cache_dir`)."""


@dataclass(frozen=True)
class MilvusTarget:
    """Where to connect.

    Attributes:
        uri: A Milvus Lite file path (ends in `.db`) or a server URI such as
            `http://localhost:19530`.
        token: Authentication token (`user:password` or an API key), or `""`.
    """

    uri: str
    token: str = ""

    @property
    def is_lite(self) -> bool:
        """True when the URI names a local Milvus Lite file rather than a server."""
        return not self.uri.startswith(("http://", "https://", "tcp://", "grpc://", "unix:"))

    @property
    def shown(self) -> str:
        """The URI to print or log: any `user:password@` in it replaced by `***@` (see `masked_uri`)."""
        return masked_uri(self.uri)

    def __repr__(self) -> str:  # never print the token
        return f"MilvusTarget(uri={self.shown!r}, token={'***' if self.token else ''!r})"


def masked_uri(uri: str) -> str:
    """`uri` with the credentials in it (`user:password@`, `user@`) replaced by `***@`.

    Example:
        >>> masked_uri("http://root:Milvus@milvus.example:19530")
        'http://***@milvus.example:19530'
        >>> masked_uri("db/milvus.db")
        'db/milvus.db'
    """
    scheme, separator, rest = uri.partition("://")
    if not separator or "@" not in rest.split("/", 1)[0]:
        return uri
    authority, slash, path = rest.partition("/")
    return f"{scheme}://***@{authority.rsplit('@', 1)[1]}{slash}{path}"


def resolve_target(uri: str | os.PathLike | None = None, token: str | None = None) -> MilvusTarget:
    """Pick the Milvus URI and token from arguments, then environment, then defaults.

    Args:
        uri: Explicit URI or Lite file path. Falls back to `$MILVUS_URI`, then to
            `db/milvus.db`.
        token: Explicit token. Falls back to `$MILVUS_TOKEN`, then to no token.

    Returns:
        The resolved `MilvusTarget`.

    Example:
        >>> resolve_target("http://localhost:19530").is_lite
        False
    """
    chosen = uri if uri is not None else os.environ.get(URI_ENV) or DEFAULT_LITE_PATH
    chosen_token = token if token is not None else os.environ.get(TOKEN_ENV, "")
    return MilvusTarget(uri=os.fspath(chosen), token=chosen_token)


def cache_dir() -> Path:
    """The folder for what the package remembers between commands (today only the server check of
    `milvus.storage_probe`): `$UTILITIES_CACHE_DIR`, else `$XDG_CACHE_HOME/milvus-image-similarity`,
    else `~/.cache/milvus-image-similarity`. Not created here.
    """
    chosen = os.environ.get(CACHE_ENV, "").strip()
    if chosen:
        return Path(chosen).expanduser()
    base = os.environ.get("XDG_CACHE_HOME", "").strip() or Path.home() / ".cache"
    return Path(base).expanduser() / "milvus-image-similarity"
