"""The commands that look after a collection: `info`, `create-index`, `export-mapping`, `verify`, `drop`.

None of them embeds images; each opens the collection the common options name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from utilities.cli.options import common_options, open_store


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the sub-parsers of this family to `commands`, in the order `--help` lists them."""
    info = commands.add_parser("info", parents=[common_options()], help="backend, collection, count, dimension, index")
    info.add_argument("--json", action="store_true")
    info.set_defaults(run=cmd_info)

    create_index = commands.add_parser(
        "create-index", parents=[common_options()], help="build the vector index (by default the one for its size)"
    )
    create_index.add_argument(
        "--type",
        default="AUTO",
        type=str.upper,
        help="AUTO (default: by backend, row count and dimension), FLAT, IVF_FLAT, HNSW, IVF_SQ8, IVF_PQ, SCANN",
    )
    create_index.add_argument("--param", action="append", default=[], metavar="KEY=N", help="a build parameter")
    create_index.add_argument("--json", action="store_true", help="print the new index as JSON")
    create_index.set_defaults(run=cmd_create_index)

    export = commands.add_parser(
        "export-mapping", parents=[common_options()], help="write the id-to-path mapping (csv/parquet)"
    )
    export.add_argument("file", type=Path)
    export.set_defaults(run=cmd_export_mapping)

    verify = commands.add_parser(
        "verify", parents=[common_options()], help="check the saved mapping file against the collection"
    )
    verify.add_argument("--mapping", type=Path, help="mapping file (default: the one beside the collection)")
    verify.add_argument("--repair", action="store_true", help="rewrite the mapping from the collection if they differ")
    verify.set_defaults(run=cmd_verify)

    drop = commands.add_parser("drop", parents=[common_options()], help="drop the collection (asks first)")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    drop.set_defaults(run=cmd_drop)


def cmd_info(args: argparse.Namespace) -> int:
    """Print the backend and the collection's facts (or, when it does not exist, the collections there are)."""
    from utilities.config import resolve_target
    from utilities.milvus.connection import connect

    target = resolve_target(args.uri, args.token)
    details: dict[str, Any] = {"backend": "Milvus Lite" if target.is_lite else "Milvus server", "uri": target.shown}
    client, _ = connect(target.uri, target.token)
    details["collection"] = args.collection
    details["exists"] = bool(client.has_collection(args.collection))
    if details["exists"]:
        from utilities.milvus.projection_store import load_projection

        store = open_store(args)
        projection = load_projection(store)
        summary = store.index_summary()
        details.update(count=summary.pop("rows"), dimension=store.dimension, metric=store.metric)
        if projection is not None:
            details["projection"] = (
                f"PCA from {projection.source_dimension} to {projection.dims} dims, fitted on {projection.fitted_on} "
                f"images ({100 * projection.explained:.1f}% of the variance)"
            )
        details.update(summary)
    else:
        from utilities.milvus.projection_store import SUFFIX

        details["collections"] = [name for name in client.list_collections() if not name.endswith(SUFFIX)]
    if args.json:
        print(json.dumps(details, indent=2, default=str))
    else:
        print("\n".join(f"{key:>12}: {value}" for key, value in details.items()))
    return 0


def cmd_create_index(args: argparse.Namespace) -> int:
    """Build the vector index `args.type` with the `--param` values, wait for it and print it."""
    store = open_store(args)
    try:
        params = {key: int(value) for key, _, value in (item.partition("=") for item in args.param)}
    except ValueError:
        raise SystemExit(f"--param takes KEY=N with a whole number N, got {args.param}") from None
    store.create_index(args.type, **params)
    complete = store.wait_for_index(progress=sys.stderr.isatty())
    index = store.index_summary()
    summary = {"collection": store.name, "rows": index.pop("rows"), "complete": complete, **index}
    if args.json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print(
            f"{store.name}: {summary['index_type']} {summary['index_params']} on {summary['rows']} rows, "
            f"~{summary['bytes_per_row']:,} bytes a row for the vectors"
            + ("" if complete else " (still building: searches use Milvus' interim index meanwhile)")
        )
    return 0


def cmd_export_mapping(args: argparse.Namespace) -> int:
    """Write the id-to-path mapping read from the collection to `args.file`."""
    from utilities.catalog import mapping_from_collection, save_mapping

    mapping = mapping_from_collection(open_store(args))
    print(f"wrote {len(mapping)} rows to {save_mapping(mapping, args.file)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the saved mapping against the collection (and repair it if asked); 1 if they differ."""
    from utilities.catalog import default_mapping_path, verify_mapping
    from utilities.config import resolve_target

    store = open_store(args)
    path = args.mapping or default_mapping_path(resolve_target(args.uri, args.token), args.collection)
    check = verify_mapping(store, path, repair=args.repair)
    print(check)
    return 0 if check.consistent or check.repaired else 1


def cmd_drop(args: argparse.Namespace) -> int:
    """Drop the collection and what was saved from it (duplicate searches, map, audit), after asking unless
    `--yes`."""
    from utilities.engine_parts.opening import remove_everything_saved

    store = open_store(args)
    if not args.yes:
        try:
            answer = input(f"Drop collection {store.name!r} with {store.count()} rows at {store.target.shown}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not dropped (pass --yes to skip this question)", file=sys.stderr)
            return 1
    store.drop()
    remove_everything_saved(store.target, store.name)
    print(f"dropped {store.name}")
    return 0
