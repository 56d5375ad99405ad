"""Importing Milvus Lite, with a clear error when it cannot be imported.

milvus-lite 2.5.x imports `pkg_resources` (from setuptools) just to read its own version.
Fresh Python 3.12+ virtual environments have no setuptools, and setuptools 81 and newer
(which TensorFlow's and PyTorch's installs pull in) no longer ship `pkg_resources`: the
import then fails and pymilvus reports only that "milvus-lite is required". When
`pkg_resources` is missing, `import_milvus_lite` lends milvus-lite a two-name stand-in
built on `importlib.metadata` for the duration of its import, then removes it again.

milvus-lite 3.x needs no such help, but is not used: measured on our 2-core machine with
5,000 rows of 2048-d vectors (pymilvus 2.6.17), a FLAT search took 1,082 ms at p50 against
6.6 ms with milvus-lite 2.5.1, `count(*)` 1.3 s, reading every row back 8.6 s, four threads
searching at once stayed blocked for minutes, and after flush, release and load it failed to read its
own data ("Failed to read all data for array ... file seems not fully written").
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import sys
import types
from typing import Any

from utilities.errors import MilvusUnavailableError

SUPPORTED_MILVUS_LITE = "milvus-lite>=2.4.10,<2.6"
"""The versions this package is tested with (see pyproject.toml)."""


def _pkg_resources_stand_in() -> types.ModuleType:
    """The two names milvus-lite 2.5.x takes from `pkg_resources`, on `importlib.metadata`."""
    module = types.ModuleType("pkg_resources")

    class DistributionNotFound(Exception):  # noqa: N818 - the name milvus-lite imports
        """No installed distribution of that name."""

    def get_distribution(name: str) -> Any:
        try:
            return types.SimpleNamespace(version=importlib.metadata.version(name))
        except importlib.metadata.PackageNotFoundError as error:
            raise DistributionNotFound(name) from error

    module.DistributionNotFound = DistributionNotFound  # type: ignore[attr-defined]
    module.get_distribution = get_distribution  # type: ignore[attr-defined]
    return module


def _pkg_resources_importable() -> bool:
    if "pkg_resources" in sys.modules:
        return sys.modules["pkg_resources"] is not None
    return importlib.util.find_spec("pkg_resources") is not None


def import_milvus_lite() -> types.ModuleType:
    """Import `milvus_lite` (before pymilvus does), or say exactly why it cannot be.

    Returns:
        The imported `milvus_lite` module.

    Raises:
        MilvusUnavailableError: It is not installed, or its import failed; the message
            gives the underlying error and the command that fixes it.

    Example:
        >>> import_milvus_lite().__name__  # doctest: +SKIP
        'milvus_lite'
    """
    if sys.modules.get("milvus_lite") is not None:
        return sys.modules["milvus_lite"]
    lend = not _pkg_resources_importable()
    missing = object()
    previous = sys.modules.get("pkg_resources", missing)
    if lend:
        sys.modules["pkg_resources"] = _pkg_resources_stand_in()
    try:
        return importlib.import_module("milvus_lite")
    except Exception as error:  # noqa: BLE001 - any failure inside its import means the same to the user
        platform = " Milvus Lite has no Windows build: use a Milvus server there." if sys.platform == "win32" else ""
        raise MilvusUnavailableError(
            f"Milvus Lite could not be imported ({type(error).__name__}: {error}), so a local .db file cannot be "
            f"opened. Install a supported version into this environment: pip install '{SUPPORTED_MILVUS_LITE}'. "
            f"Or use a Milvus server (uri='http://host:19530').{platform}"
        ) from error
    finally:
        if lend and previous is missing:
            del sys.modules["pkg_resources"]
        elif lend:
            sys.modules["pkg_resources"] = previous  # type: ignore[assignment]
