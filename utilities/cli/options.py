"""What the commands share: argument types, the option groups every command or every embedding
command takes, and opening the engine or the collection those options name."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from utilities.config import DEFAULT_COLLECTION, DEFAULT_LITE_PATH


def weights(value: str) -> str | None:
    """`--weights`: `none` or `random` mean no pretrained weights."""
    return None if value.lower() in ("none", "random") else value


def shard(value: str) -> tuple[int, int]:
    """`--shard I/N`: part I of N, counted from 1."""
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard {value!r} must look like I/N, for example 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"shard {value!r}: need 1 <= I <= N")
    return index, count


def positive(value: str) -> int:
    """A whole number of at least 1."""
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def common_options(collection: str = DEFAULT_COLLECTION) -> argparse.ArgumentParser:
    """Options every command takes. A new parent per command: argparse shares a parent's option
    objects between the commands built from it, so one command's `set_defaults` would change all."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--uri", help=f"Milvus Lite file or server URI (default: $MILVUS_URI or {DEFAULT_LITE_PATH})")
    common.add_argument("--token", help="server token (default: $MILVUS_TOKEN)")
    common.add_argument("--collection", default=collection, help="collection name (default: %(default)s)")
    common.add_argument(
        "--retry-seconds",
        type=float,
        default=None,
        help="how long to keep retrying while a server does not answer (default: 60; 0: fail at once)",
    )
    common.add_argument("-v", "--verbose", action="store_true", help="log details")
    return common


def model_options() -> argparse.ArgumentParser:
    """Options of the commands that embed images."""
    from utilities.images.reader import DECODERS

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--weights", default="imagenet", help="imagenet | none | PATH to a weights file")
    model.add_argument("--batch-size", type=positive, default=32, help="images per model call")
    model.add_argument(
        "--decoder",
        choices=DECODERS,
        help="how to decode images: CPU threads, CPU processes, or nvJPEG on a CUDA GPU (needs torchvision); "
        "default: processes with 8+ cores, else threads",
    )
    return model


def open_engine(args: argparse.Namespace, with_model: bool = True) -> Any:
    """The `ImageSearchEngine` the parsed options name (without a model when `with_model` is false)."""
    from utilities.engine import ImageSearchEngine

    return ImageSearchEngine(
        uri=args.uri,
        token=args.token,
        collection_name=args.collection,
        weights=weights(args.weights) if with_model else None,
        batch_size=getattr(args, "batch_size", 32),
        progress=sys.stderr.isatty() or bool(os.environ.get("UTILITIES_PROGRESS")),
        retry_seconds=args.retry_seconds,
        decoder=getattr(args, "decoder", None),
        dims=getattr(args, "dims", None),
    )


def open_store(args: argparse.Namespace) -> Any:
    """The existing collection the parsed options name (`ImageCollection`; never creates one)."""
    from utilities.milvus.collection import ImageCollection

    return ImageCollection.open(args.uri, args.token, args.collection, create=False, retry_seconds=args.retry_seconds)
