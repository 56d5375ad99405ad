"""`evaluate`: retrieval quality on a labelled folder (one sub-folder per class), in a scratch collection."""

from __future__ import annotations

import argparse
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `evaluate` sub-parser to `commands`."""
    evaluate = commands.add_parser(
        "evaluate",
        parents=[common_options(), model],
        help="retrieval quality on a labelled folder (class sub-folders)",
    )
    evaluate.add_argument("folder", type=Path)
    evaluate.add_argument("--per-class", type=positive, default=20, help="database images per class")
    evaluate.add_argument("--queries-per-class", type=positive, default=5, help="held-out queries per class")
    evaluate.add_argument("--top-k", type=positive, default=10)
    evaluate.add_argument("--index", default="FLAT", help="FLAT, IVF_FLAT or HNSW (server)")
    evaluate.add_argument("--json", action="store_true")
    evaluate.set_defaults(run=cmd_evaluate)


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Evaluate retrieval on `args.folder` and print the metrics."""
    from utilities.evaluation import evaluate

    engine = open_engine(args)
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
