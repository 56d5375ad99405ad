"""`search`: the stored images most like a query image, printed, copied or plotted."""

from __future__ import annotations

import argparse
from pathlib import Path

from utilities.cli.options import common_options, open_engine, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `search` sub-parser to `commands`."""
    search = commands.add_parser("search", parents=[common_options(), model], help="find the images most like IMAGE")
    search.add_argument("image", type=Path)
    search.add_argument("--top-k", type=positive, default=5)
    search.add_argument("--copy-to", type=Path, help="copy the result files into this folder")
    search.add_argument("--plot", type=Path, help="save a figure of the query and its results (PNG)")
    search.add_argument("--json", action="store_true", help="print the results as JSON")
    search.set_defaults(run=cmd_search)


def cmd_search(args: argparse.Namespace) -> int:
    """Search for `args.image` and print the results (and copy or plot them if asked)."""
    engine = open_engine(args)
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
