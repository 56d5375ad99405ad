"""`map`: a 2-D position for every stored image (UMAP or PCA of the stored vectors), saved with the collection."""

from __future__ import annotations

import argparse
import json
import os
import sys
from contextlib import closing
from pathlib import Path

from utilities.cli.options import common_options, open_store, positive


def register(commands: argparse._SubParsersAction, model: argparse.ArgumentParser) -> None:
    """Add the `map` sub-parser to `commands` (it embeds nothing: `model` is not used)."""
    from utilities.collection_map.layout import DEFAULT_SAMPLE, METHODS

    mapping = commands.add_parser(
        "map",
        parents=[common_options()],
        help="lay every stored image out in 2-D (for the web page's Map view, --json and --plot)",
    )
    mapping.add_argument(
        "--method",
        choices=METHODS,
        default="umap",
        help="umap: PCA to 50 dims, then UMAP (the [map] extra; PCA without it); pca: the first two "
        "principal components (default: %(default)s)",
    )
    mapping.add_argument(
        "--sample",
        type=positive,
        default=DEFAULT_SAMPLE,
        metavar="N",
        help="rows the layout is fitted on; the others are placed by it (default: %(default)s)",
    )
    mapping.add_argument(
        "--full", action="store_true", help="fit the layout again, not only place the rows added since the last map"
    )
    mapping.add_argument("--json", type=Path, metavar="OUT", help="write the positions to this JSON file")
    mapping.add_argument("--plot", type=Path, metavar="FILE", help="write a scatter coloured by class (PNG, SVG, PDF)")
    mapping.set_defaults(run=cmd_map)


def cmd_map(args: argparse.Namespace) -> int:
    """Map the collection, print what was done, write the JSON and the picture if asked."""
    from utilities.collection_map import map_collection

    shown = sys.stderr.isatty() or bool(os.environ.get("UTILITIES_PROGRESS"))
    with closing(open_store(args)) as store:
        found = map_collection(store, args.method, args.sample, args.full, progress=shown)
    print(found)
    if args.json:
        args.json.write_text(json.dumps(found.as_dict()), encoding="utf-8")
        print(f"wrote {args.json}")
    if args.plot:
        from utilities.collection_map.figure import plot_map

        plot_map(found, args.plot)
        print(f"wrote {args.plot}")
    return 0
