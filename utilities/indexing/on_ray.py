"""Indexing on a Ray cluster: Ray Data decodes in CPU tasks and embeds in an actor pool.

The driver plans as `indexing.pipeline.index_paths` does (same incremental rules, same ids, same
report). Only the files left to embed go through Ray:

1. `decode_rows`, in CPU tasks anywhere in the cluster: read, hash and decode each file;
2. `EmbedAndWrite`, in a pool of actors holding one model each (one GPU each where the
   cluster has GPUs): embed the batch and upsert it into the Milvus server, then hand back
   only the paths and failures.

Vectors never travel to the driver, so its memory is bounded by batches, not by the folder.
A batch counts as done only once its rows are written: when Ray retries a task or restarts
an actor that died (Ray Data restarts them by default), the batch is written again under the
same ids, and upserts keep one row per file. A re-run after a crash writes only the rest.

Every node must see the files at the same absolute paths (the ids and stored paths come from
them), and reach the Milvus server. Milvus Lite is refused: a Lite file admits one process.
Needs the `[ray]` extra (`pip install "ray[data]"`); Ray is imported only here.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from utilities.embeddings import Embedder
from utilities.errors import ImageLoadError, ImageSearchError
from utilities.hashing import file_hash
from utilities.ids import path_id
from utilities.images.decoding import decode_for_model
from utilities.images.reader import LoadFailure
from utilities.indexing.pipeline import finish_run, prepare_run
from utilities.indexing.report import IndexReport
from utilities.milvus.collection import ImageCollection
from utilities.records import ImageRecord

__all__ = ["EmbedAndWrite", "RayOptions", "RayUnavailableError", "decode_rows", "index_paths_on_ray", "ray_options"]

logger = logging.getLogger(__name__)


class RayUnavailableError(ImageSearchError):
    """Ray cannot be used for this run: not installed, or the target is a Milvus Lite file."""


@dataclass(frozen=True)
class RayOptions:
    """How an indexing run uses Ray.

    Attributes:
        address: The cluster: None connects to `$RAY_ADDRESS` or starts a local Ray in this
            process; `"auto"` joins the cluster started on this machine with `ray start`;
            `"HOST:PORT"` joins that one. Ignored when Ray is already initialised.
        embed_actors: Actors holding a model (one per GPU is the usual choice).
        gpus_per_actor: GPUs per actor; None gives 1 when the cluster has GPUs, else 0.
        cpus_per_actor: CPUs reserved per actor.
        decode_batch_size: Files per decoding task (None: the run's batch size).
        decode_resources: Custom resources each decoding task needs (to pin them to some nodes).
        embed_resources: Custom resources each actor needs.
        separate_decoding: Decode in CPU tasks of their own, beside the actors. None: when the
            actors have GPUs (or `decode_resources` place decoding elsewhere). Otherwise Ray Data
            fuses decoding into the actors: on a 2-core machine, where the model already uses every
            core, fused measured 0.82-0.86 of the single-process speed and separate 0.76-0.86
            (`benchmarks/results/ray-indexing.md`).

    Example:
        >>> RayOptions(address="auto", embed_actors=4).embed_actors
        4
    """

    address: str | None = None
    embed_actors: int = 1
    gpus_per_actor: float | None = None
    cpus_per_actor: float = 1.0
    decode_batch_size: int | None = None
    decode_resources: dict[str, float] = field(default_factory=dict)
    embed_resources: dict[str, float] = field(default_factory=dict)
    separate_decoding: bool | None = None


def ray_options(choice: RayOptions | bool | str) -> RayOptions:
    """`RayOptions` from what a caller passed: True (defaults), an address, or options.

    Example:
        >>> ray_options("auto").address
        'auto'
    """
    if isinstance(choice, RayOptions):
        return choice
    if choice is True:
        return RayOptions()
    if isinstance(choice, str):
        return RayOptions(address=choice)
    raise TypeError(f"ray must be True, a cluster address or RayOptions, not {choice!r}")


def _ray() -> Any:
    try:
        import ray
        import ray.data  # noqa: F401 - the Data library is an extra of Ray
    except ImportError as error:
        raise RayUnavailableError(
            f"Ray Data is not installed ({error}): pip install 'milvus-image-similarity[ray]' "
            "(or pip install 'ray[data]'), or index without Ray"
        ) from error
    return ray


def connect(address: str | None = None) -> Any:
    """Initialise Ray once per process (joining `address`; see `RayOptions.address`) and return the module."""
    ray = _ray()
    if not ray.is_initialized():
        ray.init(
            address=address,
            logging_level=logging.WARNING,
            runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
        )
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # the run shows one bar of its own
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray


def _node_id() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()


def decode_rows(batch: dict[str, np.ndarray], image_size: int) -> dict[str, np.ndarray]:
    """Ray task: read, hash and decode a batch of files.

    Args:
        batch: Columns `path`, `size`, `mtime_ns` (from the driver's plan).
        image_size: Side of the square model input.

    Returns:
        The same columns plus `image` (uint8; zeros where decoding failed), `hash`,
        `reason` (empty unless the file failed) and `decode_node`.
    """
    paths = [str(path) for path in batch["path"]]
    images = np.zeros((len(paths), image_size, image_size, 3), dtype=np.uint8)
    reasons, hashes = [], []
    for row, path in enumerate(paths):
        try:
            images[row] = decode_for_model(path, image_size)
            hashes.append(file_hash(path))  # the bytes were just read: hashed from the page cache
            reasons.append("")
        except (ImageLoadError, OSError) as error:
            hashes.append("")
            reasons.append(getattr(error, "reason", str(error)) or type(error).__name__)
    return {
        **batch,
        "image": images,
        "hash": np.array(hashes, dtype=object),
        "reason": np.array(reasons, dtype=object),
        "decode_node": np.array([_node_id()] * len(paths), dtype=object),
    }


class EmbedAndWrite:
    """Ray actor: embed decoded batches and upsert them into the Milvus server.

    It returns only what the driver reports (paths, failures, where the work ran), once the
    rows are written, so a batch lost with its actor is retried, never half-counted.

    Args:
        embedder: Any picklable `Embedder` (a `ResNet50Embedder` travels as its settings and
            builds its model in the actor).
        uri: The Milvus server.
        token: Its token, if any.
        collection: The collection (it must exist: the driver creates it).
        retry_seconds: How long writes keep retrying while the server is unreachable.
    """

    def __init__(
        self, embedder: Embedder, uri: str, token: str | None, collection: str, retry_seconds: float | None
    ) -> None:
        self.embedder = embedder
        self.store = ImageCollection.open(
            uri, token, collection, dimension=embedder.dimension, create=False, retry_seconds=retry_seconds
        )
        self.node = _node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Embed and write the rows that decoded; return `path`, `reason`, `decode_node`, `embed_node`."""
        decoded = np.array([reason == "" for reason in batch["reason"]], dtype=bool)
        if decoded.any():
            vectors = self.embedder.embed_batch(batch["image"][decoded])
            rows = np.flatnonzero(decoded)
            records = [
                ImageRecord(
                    path_id(str(batch["path"][row])),
                    str(batch["path"][row]),
                    int(batch["size"][row]),
                    int(batch["mtime_ns"][row]),
                    str(batch["hash"][row]),
                    vector,
                )
                for row, vector in zip(rows, vectors, strict=True)
            ]
            self.store.write(records)
        return {
            "path": batch["path"],
            "reason": batch["reason"],
            "decode_node": batch["decode_node"],
            "embed_node": np.array([self.node] * len(decoded), dtype=object),
        }


def decode_memory(files: int, image_size: int) -> int:
    """Bytes a separate decoding task reserves: its decoded batch, four times over for Pillow's buffers.

    Besides keeping Ray from packing more decoding tasks on a node than its memory holds, the
    reservation keeps Ray Data from fusing decoding into the embedding actors (it fuses only
    operators whose resources are equal), where each batch would be decoded in turn with the
    model instead of beside it: what a GPU needs.

    Example:
        >>> decode_memory(32, 224)
        19267584
    """
    return 4 * files * image_size * image_size * 3


def _gpus_per_actor(ray: Any, options: RayOptions) -> float:
    if options.gpus_per_actor is not None:
        return float(options.gpus_per_actor)
    return 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def index_paths_on_ray(
    paths: Sequence[str | os.PathLike],
    store: ImageCollection,
    embedder: Embedder,
    options: RayOptions | None = None,
    batch_size: int = 32,
    progress: bool = True,
    prune_root: str | os.PathLike | None = None,
    retry_seconds: float | None = None,
) -> IndexReport:
    """Bring the collection up to date with the given files, decoding and embedding on Ray.

    Same rules and report as `indexing.pipeline.index_paths`; the report also counts the images
    decoded and embedded on each Ray node (`decode_nodes`, `embed_nodes`).

    Args:
        paths: Image files, at the same absolute paths on every node.
        store: The collection, opened by the driver on the Milvus server every node writes to.
        embedder: The model for the actors (picklable; see `EmbedAndWrite`).
        options: Cluster, actors, GPUs and resources (`RayOptions()` by default).
        batch_size: Images per model call and per write.
        progress: Show a progress bar.
        prune_root: Delete rows under this folder whose files are gone.
        retry_seconds: How long the actors' writes keep retrying while the server is unreachable.

    Returns:
        An `IndexReport`.

    Raises:
        RayUnavailableError: Ray Data is not installed, or the collection is in a Milvus Lite file.
        CollectionMismatchError: The embedder's dimension differs from the collection's.

    Example:
        >>> report = index_paths_on_ray(find_images("photos"), store, ResNet50Embedder())  # doctest: +SKIP
    """
    target = store.target
    if target.is_lite:
        raise RayUnavailableError(
            f"Ray indexing writes from several processes, and the Milvus Lite file {target.uri!r} admits "
            "only one: use a Milvus server (--uri http://HOST:19530, or MILVUS_URI), or index without Ray"
        )
    options = options or RayOptions()
    ray = connect(options.address)
    started = time.perf_counter()
    run = prepare_run(paths, store, embedder, progress)
    report = run.report
    if run.to_embed:
        gpus = _gpus_per_actor(ray, options)
        separate = options.separate_decoding
        if separate is None:
            separate = gpus > 0 or bool(options.decode_resources)
        decode_batch = options.decode_batch_size or batch_size
        rows = [{"path": path, "size": s, "mtime_ns": m} for path in run.to_embed for s, m in [run.plan.stats[path]]]
        dataset = (
            ray.data.from_items(rows)
            .map_batches(
                decode_rows,
                fn_kwargs={"image_size": embedder.image_size},
                batch_size=decode_batch,
                num_cpus=1,
                memory=decode_memory(decode_batch, embedder.image_size) if separate else None,
                resources=options.decode_resources or None,
            )
            .map_batches(
                EmbedAndWrite,
                fn_constructor_args=(embedder, target.uri, target.token, store.name, retry_seconds),
                batch_size=batch_size,
                compute=ray.data.ActorPoolStrategy(size=options.embed_actors),
                num_cpus=options.cpus_per_actor,
                num_gpus=gpus,
                resources=options.embed_resources or None,
            )
        )
        decode_nodes: Counter[str] = Counter()
        embed_nodes: Counter[str] = Counter()
        with tqdm(total=len(rows), desc="indexing on Ray", unit="img", disable=not progress) as bar:
            for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
                written = [str(path) for path, reason in zip(batch["path"], batch["reason"], strict=True) if not reason]
                report.failed += [
                    LoadFailure(str(path), str(reason))
                    for path, reason in zip(batch["path"], batch["reason"], strict=True)
                    if reason
                ]
                run.count_written(written)
                decode_nodes.update(str(node) for node in batch["decode_node"])
                embed_nodes.update(str(node) for node in batch["embed_node"])
                bar.update(len(batch["path"]))
        report.decode_nodes, report.embed_nodes = dict(decode_nodes), dict(embed_nodes)
    return finish_run(run, store, prune_root, progress, started)
