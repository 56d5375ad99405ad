"""Command line: `python -m utilities COMMAND` (see `--help` on each command).

Exit codes: 0 success (skipped bad images are reported, not failures), 2 usage
errors, 1 anything else, with a one-line message that says what to do.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from utilities.config import DEFAULT_COLLECTION, DEFAULT_LITE_PATH

logger = logging.getLogger("utilities.cli")

DEMO_COLLECTION = "demo_imagenette"


def _weights(value: str) -> str | None:
    return None if value.lower() in ("none", "random") else value


def _shard(value: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"shard {value!r} must look like I/N, for example 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"shard {value!r}: need 1 <= I <= N")
    return index, count


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return number


def _common_options(collection: str = DEFAULT_COLLECTION) -> argparse.ArgumentParser:
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


def _model_options() -> argparse.ArgumentParser:
    """Options of the commands that embed images."""
    from utilities.images.reader import DECODERS

    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--weights", default="imagenet", help="imagenet | none | PATH to a weights file")
    model.add_argument("--batch-size", type=_positive, default=32, help="images per model call")
    model.add_argument(
        "--decoder",
        choices=DECODERS,
        help="how to decode images: CPU threads, CPU processes, or nvJPEG on a CUDA GPU (needs torchvision); "
        "default: processes with 8+ cores, else threads",
    )
    return model


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every sub-command."""
    model = _model_options()
    parser = argparse.ArgumentParser(prog="python -m utilities", description="Image similarity search with Milvus.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = commands.add_parser(
        "index", parents=[_common_options(), model], help="embed and insert new images of a folder"
    )
    index.add_argument("folder", type=Path)
    index.add_argument("--shard", type=_shard, help="index only part I of N disjoint parts (for N machines)")
    index.add_argument("--failures", type=Path, help="write failed files and reasons to this CSV")
    index.add_argument("--prune", action="store_true", help="delete rows of files that are gone from FOLDER")
    index.add_argument("--json", action="store_true", help="print the summary as JSON")
    index.add_argument(
        "--dims",
        type=_positive,
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
    ray.add_argument("--ray-actors", type=_positive, default=1, help="actors holding a model (default 1)")
    ray.add_argument(
        "--ray-gpus-per-actor", type=float, help="GPUs per actor (default: 1 if the cluster has GPUs, else 0)"
    )

    search = commands.add_parser("search", parents=[_common_options(), model], help="find the images most like IMAGE")
    search.add_argument("image", type=Path)
    search.add_argument("--top-k", type=_positive, default=5)
    search.add_argument("--copy-to", type=Path, help="copy the result files into this folder")
    search.add_argument("--plot", type=Path, help="save a figure of the query and its results (PNG)")
    search.add_argument("--json", action="store_true", help="print the results as JSON")

    duplicates = commands.add_parser(
        "duplicates",
        parents=[_common_options()],
        help="exact and edited copies among the stored images (lists them; deletes nothing)",
    )
    duplicates.add_argument(
        "--exact-only",
        action="store_true",
        help="only files with the same content (no search; saved as ...duplicates.exact.json, not for the web page)",
    )
    duplicates.add_argument(
        "--threshold",
        type=float,
        help="cosine a near pair must reach to be checked (default 0.65)",
    )
    duplicates.add_argument("--neighbours", type=_positive, help="nearest rows searched for each row (default 10)")
    duplicates.add_argument(
        "--no-verify",
        action="store_true",
        help="keep every pair at the threshold, without the keypoint check (saved as ...duplicates.unchecked.json)",
    )
    duplicates.add_argument(
        "--full", action="store_true", help="search every row again, not only what changed since the last search"
    )
    duplicates.add_argument("--workers", type=_positive, help="processes for the keypoint check (default: one a core)")
    duplicates.add_argument(
        "--keep",
        choices=["original", "largest", "oldest"],
        default="original",
        help="which file of a group to keep (default: the original, found from the files: content, native pixels, "
        "camera metadata, JPEG generation, then the oldest)",
    )
    duplicates.add_argument(
        "--prefer",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="keep files under this folder first (repeatable), e.g. the master library over Downloads/",
    )
    duplicates.add_argument("--json", action="store_true", help="print the report as JSON")
    duplicates.add_argument("--csv", type=Path, help="write the pairs to this CSV (a, b, cosine, kind, verified)")
    duplicates.add_argument(
        "--plot", type=Path, help="write one figure per group and a histogram into this folder (replacing its last)"
    )
    acting = duplicates.add_mutually_exclusive_group()
    acting.add_argument(
        "--move-removable",
        type=Path,
        metavar="DIR",
        help="then move the files this search lists as removable into DIR (outside the indexed folder), "
        "keeping their paths; each is checked first, nothing is overwritten or deleted; DIR's manifest allows --undo",
    )
    acting.add_argument(
        "--undo", type=Path, metavar="MANIFEST", help="put back what a --move-removable moved (no search runs)"
    )
    duplicates.add_argument("--dry-run", action="store_true", help="with --move-removable: show the plan, move nothing")

    info = commands.add_parser("info", parents=[_common_options()], help="backend, collection, count, dimension, index")
    create_index = commands.add_parser(
        "create-index", parents=[_common_options()], help="build the vector index (by default the one for its size)"
    )
    create_index.add_argument(
        "--type",
        default="AUTO",
        type=str.upper,
        help="AUTO (default: by backend, row count and dimension), FLAT, IVF_FLAT, HNSW, IVF_SQ8, IVF_PQ, SCANN",
    )
    create_index.add_argument("--param", action="append", default=[], metavar="KEY=N", help="a build parameter")
    create_index.add_argument("--json", action="store_true", help="print the new index as JSON")
    info.add_argument("--json", action="store_true")

    export = commands.add_parser(
        "export-mapping", parents=[_common_options()], help="write the id-to-path mapping (csv/parquet)"
    )
    export.add_argument("file", type=Path)

    verify = commands.add_parser(
        "verify", parents=[_common_options()], help="check the saved mapping file against the collection"
    )
    verify.add_argument("--mapping", type=Path, help="mapping file (default: the one beside the collection)")
    verify.add_argument("--repair", action="store_true", help="rewrite the mapping from the collection if they differ")

    drop = commands.add_parser("drop", parents=[_common_options()], help="drop the collection (asks first)")
    drop.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    evaluate = commands.add_parser(
        "evaluate",
        parents=[_common_options(), model],
        help="retrieval quality on a labelled folder (class sub-folders)",
    )
    evaluate.add_argument("folder", type=Path)
    evaluate.add_argument("--per-class", type=_positive, default=20, help="database images per class")
    evaluate.add_argument("--queries-per-class", type=_positive, default=5, help="held-out queries per class")
    evaluate.add_argument("--top-k", type=_positive, default=10)
    evaluate.add_argument("--index", default="FLAT", help="FLAT, IVF_FLAT or HNSW (server)")
    evaluate.add_argument("--json", action="store_true")

    serve = commands.add_parser(
        "serve", parents=[_common_options(), model], help="the search web page and JSON API ([web] extra)"
    )
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=8000, help="default %(default)s")
    serve.add_argument("--max-upload-mb", type=float, default=20, help="largest accepted upload (default 20)")
    serve.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated host names the server answers to besides localhost and --host (e.g. photos.example.org)",
    )
    serve.add_argument(
        "--max-waiting-uploads",
        type=_positive,
        default=8,
        help="searches by upload that may wait for the model at once; more get a 503 (default %(default)s)",
    )
    serve.add_argument(
        "--token-file",
        type=Path,
        help="require the access token in this file (default: $UTILITIES_WEB_TOKEN if set, else no token)",
    )

    demo = commands.add_parser(
        "demo", parents=[_common_options(DEMO_COLLECTION), model], help="index a small photo set and search it"
    )
    demo.add_argument("--images", type=Path, help="use this folder (class sub-folders) instead of downloading")
    demo.add_argument("--output", type=Path, default=Path("results") / "demo", help="where plots and copies go")
    demo.add_argument("--per-class", type=_positive, default=20, help="database images per class")
    demo.add_argument("--queries", type=_positive, default=3, help="held-out query images")
    demo.add_argument("--top-k", type=_positive, default=5)
    return parser


def _engine(args: argparse.Namespace, with_model: bool = True) -> Any:
    from utilities.engine import ImageSearchEngine

    return ImageSearchEngine(
        uri=args.uri,
        token=args.token,
        collection_name=args.collection,
        weights=_weights(args.weights) if with_model else None,
        batch_size=getattr(args, "batch_size", 32),
        progress=sys.stderr.isatty() or bool(os.environ.get("UTILITIES_PROGRESS")),
        retry_seconds=args.retry_seconds,
        decoder=getattr(args, "decoder", None),
        dims=getattr(args, "dims", None),
    )


def _store(args: argparse.Namespace) -> Any:
    from utilities.milvus.collection import ImageCollection

    return ImageCollection.open(args.uri, args.token, args.collection, create=False, retry_seconds=args.retry_seconds)


def cmd_index(args: argparse.Namespace) -> int:
    from utilities.images.finding import find_image_files
    from utilities.indexing.pipeline import shard_paths

    engine = _engine(args)
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


def cmd_search(args: argparse.Namespace) -> int:
    engine = _engine(args)
    engine.open_existing()
    results = engine.search(args.image, top_k=args.top_k)
    written = engine.copy_results(results, args.copy_to) if args.copy_to else []
    if args.plot:
        engine.plot(args.image, results, outfile=args.plot)
    if args.json:
        print(results.assign(path=results["path"].astype(str)).to_json(orient="records", indent=2))
    else:
        print(results[["rank", "distance", "path"]].to_string(index=False))
        for line in [f"copied {len(written)} files to {args.copy_to}"] * bool(written) + (
            [f"plot saved to {args.plot}"] if args.plot else []
        ):
            print(line)
    return 0


def cmd_duplicates(args: argparse.Namespace) -> int:
    if args.dry_run and not args.move_removable:
        print("error: --dry-run goes with --move-removable DIR", file=sys.stderr)
        return 2
    engine = _engine(args, with_model=False)
    if args.undo:
        undone = engine.undo_move(args.undo)
        print(json.dumps(undone.as_dict(), indent=2) if args.json else undone)
        return 0
    report = engine.find_duplicates(
        threshold=args.threshold,
        neighbours=args.neighbours,
        verify=not args.no_verify,
        exact_only=args.exact_only,
        workers=args.workers,
        full=args.full,
        keep=args.keep,
        prefer=args.prefer,
    )
    written = [report.write_csv(args.csv)] if args.csv else []
    if args.plot:
        from utilities.duplicates.figures import plot_report

        written += plot_report(report, args.plot)
    moved = engine.move_removable(args.move_removable, args.dry_run, report) if args.move_removable else None
    if args.json:
        print(json.dumps({**report.as_dict(), **({"move": moved.as_dict()} if moved else {})}, indent=2))
    else:
        print(report)
        if written:
            shown = ", ".join(str(path) for path in written[:3]) + (" ..." if len(written) > 3 else "")
            print(f"wrote {len(written)} files: {shown}")
        if moved:
            print(moved)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    from utilities.config import resolve_target
    from utilities.milvus.connection import connect

    target = resolve_target(args.uri, args.token)
    details: dict[str, Any] = {"backend": "Milvus Lite" if target.is_lite else "Milvus server", "uri": target.shown}
    client, _ = connect(target.uri, target.token)
    details["collection"] = args.collection
    details["exists"] = bool(client.has_collection(args.collection))
    if details["exists"]:
        from utilities.milvus.projection_store import load_projection

        store = _store(args)
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
    store = _store(args)
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
    from utilities.catalog import mapping_from_collection, save_mapping

    mapping = mapping_from_collection(_store(args))
    print(f"wrote {len(mapping)} rows to {save_mapping(mapping, args.file)}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from utilities.catalog import default_mapping_path, verify_mapping
    from utilities.config import resolve_target

    store = _store(args)
    path = args.mapping or default_mapping_path(resolve_target(args.uri, args.token), args.collection)
    check = verify_mapping(store, path, repair=args.repair)
    print(check)
    return 0 if check.consistent or check.repaired else 1


def cmd_drop(args: argparse.Namespace) -> int:
    from utilities.duplicates.saved import remove_saved

    store = _store(args)
    if not args.yes:
        try:
            answer = input(f"Drop collection {store.name!r} with {store.count()} rows at {store.target.shown}? [y/N] ")
        except EOFError:
            answer = ""
        if answer.strip().lower() not in ("y", "yes"):
            print("not dropped (pass --yes to skip this question)", file=sys.stderr)
            return 1
    store.drop()
    remove_saved(store.target, store.name)  # the duplicate searches saved for it
    print(f"dropped {store.name}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from utilities.evaluation import evaluate

    engine = _engine(args)
    report = evaluate(
        args.folder,
        engine.embedder,
        uri=engine.target.uri,
        token=engine.target.token,
        database_per_class=args.per_class,
        queries_per_class=args.queries_per_class,
        top_k=args.top_k,
        index_type=args.index,
        progress=engine.progress,
    )
    if args.json:
        print(report.table().set_index("metric")["value"].to_json(indent=2))
    else:
        print(report)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from utilities.demo import run_demo

    summary = run_demo(
        _engine(args),
        images=args.images,
        output=args.output,
        per_class=args.per_class,
        queries=args.queries,
        top_k=args.top_k,
    )
    print(summary)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from utilities.errors import ImageSearchError

    try:
        import uvicorn
    except ImportError as error:
        raise ImageSearchError(f"serve needs uvicorn ({error}): pip install 'milvus-image-similarity[web]'") from error
    from utilities.web.app import create_app
    from utilities.web.guards import TOKEN_ENV, allowed_hosts, is_loopback, read_token

    token = read_token(args.token_file)
    if not is_loopback(args.host):
        print(
            f"warning: serving on {args.host}, beyond this machine: anyone who can reach port {args.port} sees every "
            "indexed image"
            + ("" if token else f"; set an access token ({TOKEN_ENV} or --token-file) to require one")
            + ". Add the names clients use with --allowed-hosts.",
            file=sys.stderr,
            flush=True,
        )
    hosts = allowed_hosts(args.host, [name for name in args.allowed_hosts.split(",") if name.strip()])
    app = create_app(
        _engine(args),
        max_upload_bytes=int(args.max_upload_mb * 1024 * 1024),
        hosts=hosts,
        token=token,
        max_waiting_uploads=args.max_waiting_uploads,
    )
    shown = f"http://{args.host}:{args.port}/" + ("  (open it once with ?token=YOUR_TOKEN)" if token else "")
    print(f"serving collection {args.collection!r} at {shown} (Ctrl-C stops)", flush=True)
    # no access log when a token is set: the first request's query string holds it
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info" if args.verbose else "warning",
        access_log=bool(args.verbose and not token),
    )
    return 0


COMMANDS = {
    "index": cmd_index,
    "search": cmd_search,
    "duplicates": cmd_duplicates,
    "create-index": cmd_create_index,
    "info": cmd_info,
    "export-mapping": cmd_export_mapping,
    "drop": cmd_drop,
    "verify": cmd_verify,
    "evaluate": cmd_evaluate,
    "demo": cmd_demo,
    "serve": cmd_serve,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.verbose:  # everything: the package's details, library warnings, TensorFlow's start-up lines
        logging.getLogger("utilities").setLevel(logging.DEBUG)
    else:  # only what was asked for (and progress bars): see utilities.quiet
        warnings.simplefilter("ignore")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import pymilvus  # noqa: F401 - its import sets up its own log handler; quiet it after that

        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)  # errors reach the user as one line below
    from utilities.config import resolve_target
    from utilities.errors import ImageSearchError

    try:
        return COMMANDS[args.command](args)
    except (ImageSearchError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except Exception as error:
        if type(error).__module__.startswith("pymilvus"):
            message = getattr(error, "message", None) or str(error)
            print(
                f"error: Milvus at {resolve_target(args.uri, args.token).shown} answered: "
                f"{message}. Check that the server is running and healthy (python -m utilities info), "
                "then run the same command again.",
                file=sys.stderr,
            )
            return 1
        raise
    except KeyboardInterrupt:
        print("interrupted: re-run the same command to resume (finished batches are kept)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
