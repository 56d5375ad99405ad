"""Small real photo datasets for the demo and the tutorial, downloaded once and cached.

Imagenette (10 ImageNet classes, by fast.ai) at 160 px is the default: ~94 MB,
checked against its published MD5 before it is unpacked. Offline, pass a folder of
your own instead (every function that downloads takes one).
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from utilities.errors import ImageSearchError
from utilities.hashing import digest_file
from utilities.images.finding import find_images
from utilities.splits import class_folders, split_per_class

logger = logging.getLogger(__name__)

DEFAULT_CACHE = Path("notebooks") / "data"
"""Where downloads are kept, relative to the repository root (ignored by git)."""


@dataclass(frozen=True)
class Dataset:
    """A downloadable archive of images.

    Attributes:
        name: Folder name inside the archive.
        url: Where to download it.
        md5: Published MD5 of the archive.
    """

    name: str
    url: str
    md5: str


IMAGENETTE_160 = Dataset(
    name="imagenette2-160",
    url="https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",
    md5="e793b78cc4c9e9a4ccc0c1155377a412",
)

IMAGENETTE_CLASSES = {
    "n01440764": "tench",
    "n02102040": "English springer",
    "n02979186": "cassette player",
    "n03000684": "chain saw",
    "n03028079": "church",
    "n03394916": "French horn",
    "n03417042": "garbage truck",
    "n03425413": "gas pump",
    "n03445777": "golf ball",
    "n03888257": "parachute",
}
"""ImageNet class ids of Imagenette's folders and their names."""


def _download(url: str, target: Path, progress: bool) -> None:
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            with tqdm(total=total or None, unit="B", unit_scale=True, desc=target.name, disable=not progress) as bar:
                for block in iter(lambda: response.read(1 << 20), b""):
                    out.write(block)
                    bar.update(len(block))
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise ImageSearchError(
            f"cannot download {url}: {error}. Without internet, pass a folder of images instead "
            "(for example --images DIR, or the notebook's IMAGE_FOLDER parameter)."
        ) from error
    os.replace(partial, target)


def fetch_dataset(
    dataset: Dataset = IMAGENETTE_160, cache_dir: str | os.PathLike = DEFAULT_CACHE, progress: bool = True
) -> Path:
    """Download, check and unpack a dataset once; later calls reuse the folder.

    Args:
        dataset: Which archive.
        cache_dir: Folder that keeps the archive and the unpacked images.
        progress: Show a download progress bar.

    Returns:
        The unpacked folder (for Imagenette: with `train/` and `val/` inside).

    Raises:
        ImageSearchError: The download failed or its checksum did not match.

    Example:
        >>> root = fetch_dataset()  # doctest: +SKIP
        >>> sorted(p.name for p in root.iterdir())  # doctest: +SKIP
        ['noisy_imagenette.csv', 'train', 'val']
    """
    cache = Path(cache_dir)
    folder = cache / dataset.name
    if (folder / ".complete").exists():
        return folder
    cache.mkdir(parents=True, exist_ok=True)
    archive = cache / Path(dataset.url).name
    if not archive.exists():
        logger.info("downloading %s", dataset.url)
        _download(dataset.url, archive, progress)
    actual = digest_file(archive, "md5", usedforsecurity=False)
    if actual != dataset.md5:
        archive.unlink()
        raise ImageSearchError(
            f"checksum of {archive} is {actual}, expected {dataset.md5}: the download was "
            "corrupt and has been deleted; run again to retry"
        )
    if folder.exists():
        shutil.rmtree(folder)
    with tarfile.open(archive, "r:gz") as tar:
        tar.extractall(cache, filter="data")
    (folder / ".complete").write_text(dataset.md5)
    return folder


def first_per_class(folder: str | os.PathLike, per_class: int) -> list[Path]:
    """The first `per_class` images of each class sub-folder, in a stable order.

    Example:
        >>> len(first_per_class("../shared/data/imagenette-val", 2))  # doctest: +SKIP
        20
    """
    if not class_folders(folder):
        return find_images(folder)[: per_class * 10]
    return split_per_class(folder, per_class)[0]
