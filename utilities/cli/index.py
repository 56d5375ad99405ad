"""`index`: embed and insert the new images of a folder (on this machine, a shard of it, or on Ray)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive, shard


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `index` sub-parser to `commands`."""
    index = commands.add_parser(
        "index", parents=[common_options(), model], help="embed and insert new images of a folder"
    )
    index.add_argument("folder", type=Path)
    index.add_argument("--shard", type=shard, help="index only part I of N disjoint parts (for N machines)")
    index.add_argument("--failures", type=Path, help="write failed files and reasons to this CSV")
    index.add_argument("--prune", action="store_true", help="delete rows of files that are gone from FOLDER")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument(
        "--dims",
        type=positive,
        help="store vectors projected to this many dimensions (a PCA fitted on the first run, kept in Milvus)",
    )
    ray = index.add_argument_group("Ray (decode and embed on a cluster, writing to a Milvus server; [ray] extra)")
    ray.add_argument(
        "--ray",
        nargs="?",
        const="",
        metavar="ADDRESS",
        help="run on Ray: 'auto' joins the cluster started here with `ray start`, HOST:PORT another; "
        "no ADDRESS: $RAY_ADDRESS, or a local Ray started for this run",
    )
    ray.add_argument("--ray-actors", type=positive, default=1, help="actors holding a model (default 1)")
    ray.add_argument(
        "--ray-gpus-per-actor", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs, else 0)"
    )
    index.set_defaults(run=cmd_index)


def cmd_index(args: argparse.Namespace) -> int:
    """Index `args.folder` and print the report."""
    from utilities.images.finding import find_image_files
    from utilities.indexing.pipeline import shard_paths

    engine = open_engine(args)
    files = find_image_files(args.folder)
    failures = args.failures
    ray = None
    if args.ray is not None:
        from utilities.indexing.on_ray import RayOptions

        if args.shard:
            raise ValueError("--ray and --shard do not go together: Ray spreads the work itself")
        ray = RayOptions(address=args.ray or None, embed_actors=args.ray_actors, gpus_per_actor=args.ray_gpus_per_actor)
    if args.shard:
        files = shard_paths(files, *args.shard)
        # concurrent shards must not overwrite (or delete) each other's failure lists
        index, count = args.shard
        failures = failures or engine.failures_path.with_suffix(f".shard-{index}-of-{count}.csv")
    report = engine.index_files(files, prune_root=args.folder if args.prune else None, failures_path=failures, ray=ray)
    print(json.dumps(report.as_dict(), indent=2) if args.json else str(report))
    return 0
